"""HIN service provider settings: writing development ones, and the key pairs they use.

The settings live in ``SAML_SETTINGS_DIR`` in python3-saml's own format (``settings.json``,
``advanced_settings.json``, ``certs/sp.key`` and ``certs/sp.crt``), so that operations can
drop in the HIN federation's values without touching code. Whatever the files say, Relais
refuses to run the service provider with weaker security than
:data:`app.config.saml_trust.REQUIRED_SECURITY` (loading and checking them is that module's).
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from flask import Flask, current_app
from flask.cli import AppGroup
from onelogin.saml2.constants import OneLogin_Saml2_Constants as C  # type: ignore[import-untyped]

from app.config.saml_trust import (
    DEV_MARK_OID,
    DEV_MARK_VALUE,
    DEV_ORGANIZATION,
)

#: The security block written for development (and a sound start for production).
ADVANCED_SETTINGS: dict[str, Any] = {
    "strict": True,
    "debug": False,
    "security": {
        "nameIdEncrypted": False,
        "authnRequestsSigned": True,
        "logoutRequestSigned": True,
        "logoutResponseSigned": True,
        "signMetadata": False,
        # HIN signs the assertion; the whole message may or may not be signed as well.
        "wantMessagesSigned": False,
        "wantAssertionsSigned": True,
        "wantAssertionsEncrypted": False,
        "wantNameId": True,
        "wantNameIdEncrypted": False,
        "wantAttributeStatement": True,
        "requestedAuthnContext": False,
        "allowRepeatAttributeName": False,
        "rejectDeprecatedAlgorithm": True,
        "signatureAlgorithm": C.RSA_SHA256,
        "digestAlgorithm": C.SHA256,
    },
}


def sp_urls(public_base_url: str) -> dict[str, str]:
    """The service provider's own addresses under the portal's public base URL."""
    base = public_base_url.rstrip("/")
    return {
        "entity_id": f"{base}/auth/hin/metadata",
        "acs": f"{base}/auth/hin/acs",
        "sls": f"{base}/auth/hin/logout",
    }


# --- keys -------------------------------------------------------------------------------------


def generate_keypair(common_name: str, *, years: int = 10) -> tuple[str, str]:
    """A new RSA 3072 key and a self-signed *development* certificate for it, both in PEM."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    name = x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64]),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, DEV_ORGANIZATION),
    ])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=365 * years))
        .add_extension(x509.UnrecognizedExtension(DEV_MARK_OID, DEV_MARK_VALUE), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return key_pem, cert.public_bytes(serialization.Encoding.PEM).decode()


def write_new_file(path: Path, content: str, mode: int = 0o600) -> bool:
    """Write ``content`` to ``path`` only if it does not exist yet (never overwrites).

    Written to a temporary file first and linked into place, so that a concurrent writer
    never sees half a file and exactly one writer wins.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(content)
        try:
            os.link(temporary, path)
        except FileExistsError:
            return False
        return True
    finally:
        temporary.unlink(missing_ok=True)


def ensure_keypair(directory: Path, stem: str, common_name: str) -> tuple[str, str]:
    """``<stem>.key`` and ``<stem>.crt`` in ``directory``, generated on first use (0600)."""
    key_path, cert_path = directory / f"{stem}.key", directory / f"{stem}.crt"
    if not key_path.is_file():
        key_pem, cert_pem = generate_keypair(common_name)
        # The certificate first: a key without its certificate would be unusable.
        write_new_file(directory / f"{stem}.pending-crt", cert_pem)
        if write_new_file(key_path, key_pem):
            os.replace(directory / f"{stem}.pending-crt", cert_path)
        else:
            (directory / f"{stem}.pending-crt").unlink(missing_ok=True)
    # Another process may have won the race: wait for its certificate to land.
    for _ in range(100):
        if cert_path.is_file():
            break
        time.sleep(0.05)
    return key_path.read_text(encoding="utf-8"), cert_path.read_text(encoding="utf-8")


def pem_body(pem: str) -> str:
    """The base64 body of a PEM certificate, as SAML settings and metadata carry it."""
    return "".join(line for line in pem.strip().splitlines() if "-----" not in line)


# --- development settings -------------------------------------------------------------------


def write_settings(settings_dir: str, public_base_url: str, idp: dict[str, str]) -> bool:
    """Write ``settings.json`` and ``advanced_settings.json`` for the SP at ``public_base_url``
    trusting ``idp`` (its ``entity_id``, ``sso``, ``slo`` and ``cert``, PEM), unless a
    ``settings.json`` exists there. The SP's key pair must be in ``certs/`` (``sp.key``,
    ``sp.crt``): this writes no key. Returns whether settings were written.
    """
    directory = Path(settings_dir)
    if (directory / "settings.json").exists():
        return False
    urls = sp_urls(public_base_url)
    settings = {
        "strict": True,
        "debug": False,
        "sp": {
            "entityId": urls["entity_id"],
            "assertionConsumerService": {"url": urls["acs"], "binding": C.BINDING_HTTP_POST},
            "singleLogoutService": {"url": urls["sls"], "binding": C.BINDING_HTTP_REDIRECT},
            "NameIDFormat": C.NAMEID_PERSISTENT,
        },
        "idp": {
            "entityId": idp["entity_id"],
            "singleSignOnService": {"url": idp["sso"], "binding": C.BINDING_HTTP_REDIRECT},
            "singleLogoutService": {"url": idp["slo"], "binding": C.BINDING_HTTP_REDIRECT},
            "x509cert": pem_body(idp["cert"]),
        },
    }
    advanced = {
        **ADVANCED_SETTINGS,
        "organization": {
            "fr": {"name": "Relais", "displayname": "Relais", "url": public_base_url},
            "en": {"name": "Relais", "displayname": "Relais", "url": public_base_url},
        },
    }
    # advanced_settings.json first: settings.json is what marks the folder as configured.
    # An advanced_settings.json already there is kept (load_sp_settings checks it anyway).
    write_new_file(directory / "advanced_settings.json", json.dumps(advanced, indent=2) + "\n")
    return write_new_file(directory / "settings.json", json.dumps(settings, indent=2) + "\n")


def write_dev_settings(settings_dir: str, public_base_url: str, idp: dict[str, str]) -> bool:
    """Write working development settings into ``settings_dir`` unless settings exist there:
    a development SP key pair (:func:`generate_keypair`: marked, refused in production) and
    :func:`write_settings`. Returns whether settings were written.
    """
    if (Path(settings_dir) / "settings.json").exists():
        return False
    ensure_keypair(Path(settings_dir) / "certs", "sp", "Relais SP (development)")
    return write_settings(settings_dir, public_base_url, idp)


def write_dev_settings_for(app: Flask) -> bool:
    """Development settings for ``app``: its public base URL and its development IdP."""
    from app.auth.dev_idp import idp_description

    return write_dev_settings(
        app.config["SAML_SETTINGS_DIR"], app.config["PUBLIC_BASE_URL"], idp_description(app)
    )


hin_cli = AppGroup("hin", help="HIN sign-in (SAML service provider).")


@hin_cli.command("dev-settings")
def dev_settings() -> None:
    """Write development SP settings for the development IdP, if none exist yet."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    if app.config["RELAIS_ENV"] == "production":
        click.echo("error: development SAML settings are refused in production", err=True)
        sys.exit(1)
    if not app.config["SAML_DEV_IDP"]:
        click.echo("SAML_DEV_IDP is off: no development HIN settings written.")
        return
    directory = app.config["SAML_SETTINGS_DIR"]
    if write_dev_settings_for(app):
        click.echo(f"HIN development settings written to {directory}.")
    else:
        click.echo(f"HIN settings already present in {directory}: left as they are.")
