"""HIN service provider settings: loading them hardened, and writing development ones.

The settings live in ``SAML_SETTINGS_DIR`` in python3-saml's own format (``settings.json``,
``advanced_settings.json``, ``certs/sp.key`` and ``certs/sp.crt``), so that operations can
drop in the HIN federation's values without touching code. Whatever the files say, Relais
refuses to run the service provider with weaker security than :data:`REQUIRED_SECURITY`.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from flask import Flask, current_app
from flask.cli import AppGroup
from onelogin.saml2.constants import OneLogin_Saml2_Constants as C  # type: ignore[import-untyped]
from onelogin.saml2.settings import OneLogin_Saml2_Settings  # type: ignore[import-untyped]
from onelogin.saml2.utils import OneLogin_Saml2_Utils  # type: ignore[import-untyped]

#: What the SP must enforce, whatever the files on disk say.
REQUIRED_SECURITY: dict[str, Any] = {
    "wantAssertionsSigned": True,
    "wantNameId": True,
    "rejectDeprecatedAlgorithm": True,
}

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


class SettingsError(RuntimeError):
    """The SP settings are missing, unreadable or weaker than Relais requires."""


def sp_urls(public_base_url: str) -> dict[str, str]:
    """The service provider's own addresses under the portal's public base URL."""
    base = public_base_url.rstrip("/")
    return {
        "entity_id": f"{base}/auth/hin/metadata",
        "acs": f"{base}/auth/hin/acs",
        "sls": f"{base}/auth/hin/logout",
    }


def load_sp_settings(settings_dir: str) -> OneLogin_Saml2_Settings:
    """python3-saml settings from ``settings_dir``, checked against Relais' requirements."""
    if not (Path(settings_dir) / "settings.json").is_file():
        raise SettingsError("no settings.json")
    try:
        settings = OneLogin_Saml2_Settings(custom_base_path=str(settings_dir))
    except Exception as error:  # python3-saml raises plain Exceptions for bad files
        raise SettingsError(f"unreadable settings: {type(error).__name__}") from None
    check_hardened(settings)
    return settings


def check_hardened(settings: OneLogin_Saml2_Settings) -> None:
    """Refuse settings that would accept less than Relais requires."""
    if not settings.is_strict():
        raise SettingsError("strict mode must be on")
    if settings.is_debug_active():
        raise SettingsError("debug must be off")
    security = settings.get_security_data()
    for name, wanted in REQUIRED_SECURITY.items():
        if security.get(name) != wanted:
            raise SettingsError(f"security.{name} must be {wanted}")
    if security.get("signatureAlgorithm") in C.DEPRECATED_ALGORITHMS or security.get(
        "digestAlgorithm"
    ) in C.DEPRECATED_ALGORITHMS:
        raise SettingsError("SHA-1 is refused for our own signatures")
    idp = settings.get_idp_data()
    # Trust by certificate only: a fingerprint (SHA-1 by default) is not enough.
    if idp.get("certFingerprint") or not settings.get_idp_cert():
        raise SettingsError("the IdP must be trusted by its x509cert, not a fingerprint")
    if not settings.get_sp_key() or not settings.get_sp_cert():
        raise SettingsError("the SP key and certificate are missing (certs/sp.key, sp.crt)")


# --- keys -------------------------------------------------------------------------------------


#: Every key pair made here (``hin dev-settings``'s SP pair, the development IdP's) is for a
#: laptop, and its certificate says so twice, so that production can recognise and refuse it:
#: this organisation name in its subject, and the extension below.
DEV_ORGANIZATION = "Relais (development)"
#: A private OID for the development mark (2.25: an OID derived from a UUID, ITU-T X.667, so
#: that it needs no registration and clashes with nobody's), non-critical.
DEV_MARK_OID = x509.ObjectIdentifier("2.25.28478674873010462338541799718523925616")
#: The extension's value: the DER UTF8String "relais development key, never production".
_DEV_MARK_TEXT = b"relais development key, never production"
DEV_MARK_VALUE = bytes([0x0C, len(_DEV_MARK_TEXT)]) + _DEV_MARK_TEXT


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


# --- what the pages' CSP must allow ---------------------------------------------------------

_ORIGIN = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?")
#: settings.json's path and modification time -> the IdP's single logout origin.
_logout_origins: dict[tuple[str, int], str | None] = {}


def idp_logout_origin(settings_dir: str) -> str | None:
    """The origin (``https://host[:port]``) of the IdP's single logout service, or None.

    Signing out of a HIN session posts one of our forms, whose answer redirects the browser to
    that service; browsers check a form's redirects against the page's CSP ``form-action``
    too, so the pages must name that origin. Read from ``settings.json`` (no python3-saml:
    every response asks), again only when the file changes.
    """
    path = Path(settings_dir) / "settings.json"
    try:
        key = (str(path), path.stat().st_mtime_ns)
    except OSError:
        return None
    if key not in _logout_origins:
        try:
            url = str(json.loads(path.read_text(encoding="utf-8"))["idp"][
                "singleLogoutService"]["url"])
        except (OSError, ValueError, KeyError, TypeError):
            url = ""
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        _logout_origins.clear()
        _logout_origins[key] = origin if _ORIGIN.fullmatch(origin) else None
    return _logout_origins[key]


# --- what production refuses ------------------------------------------------------------------


def load_certificate(text: str) -> x509.Certificate:
    """A certificate from PEM, or from the bare base64 body SAML settings carry."""
    pem = OneLogin_Saml2_Utils.format_cert(text.strip())
    try:
        return x509.load_pem_x509_certificate(pem.encode())
    except ValueError:
        raise SettingsError("a certificate in the settings is unreadable") from None


def is_development_certificate(certificate: x509.Certificate) -> bool:
    """Whether ``certificate`` was made by :func:`generate_keypair` (a laptop's key pair)."""
    try:
        certificate.extensions.get_extension_for_oid(DEV_MARK_OID)
    except x509.ExtensionNotFound:
        pass
    else:
        return True
    # Older development certificates carry the organisation only.
    organisations = certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return any(attribute.value == DEV_ORGANIZATION for attribute in organisations)


def _public_key_der(certificate: x509.Certificate) -> bytes:
    return certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _development_keys(paths: list[Path], *, marked_only: bool) -> set[bytes]:
    """The public keys of the certificates at ``paths`` (missing or unreadable: skipped); with
    ``marked_only``, of those marked as development ones only."""
    found: set[bytes] = set()
    for path in paths:
        try:
            certificate = load_certificate(path.read_text(encoding="utf-8"))
        except (OSError, SettingsError):
            continue
        if not marked_only or is_development_certificate(certificate):
            found.add(_public_key_der(certificate))
    return found


def check_production_trust(settings_dir: str, dev_idp_cert: Path,
                           dev_sp_cert: Path) -> None:
    """Refuse SP settings that trust a development identity provider or sign with a
    development key: what ``hin dev-settings`` and the development IdP made on a laptop.

    No ``settings.json``: HIN is not configured, nothing to check (its pages answer 503).
    Otherwise the settings must load hardened (:func:`load_sp_settings`), and then:

    * no IdP signing certificate (``x509cert``, ``x509certMulti.signing``) is marked as a
      development one, or has the key of ``dev_idp_cert`` (the development IdP's own,
      ``instance/dev-idp/idp.crt``): a response signed with that key would sign anyone in;
    * the SP certificates are not development ones, the SP key belongs to the SP certificate,
      and it is not the key of the development certificate ``dev_sp_cert`` (``hin dev-settings``'s,
      ``instance/saml/certs/sp.crt``) nor the development IdP's.
    """
    if not (Path(settings_dir) / "settings.json").is_file():
        return
    settings = load_sp_settings(settings_dir)
    dev_idp_keys = _development_keys([dev_idp_cert], marked_only=False)
    idp = settings.get_idp_data()
    trusted = [settings.get_idp_cert()]
    trusted += list((idp.get("x509certMulti") or {}).get("signing") or [])
    for text in trusted:
        if not text:
            continue
        certificate = load_certificate(text)
        if is_development_certificate(certificate):
            raise SettingsError("the IdP certificate is a development one (made by "
                                "`hin dev-settings` or the development identity provider)")
        if _public_key_der(certificate) in dev_idp_keys:
            raise SettingsError(f"the IdP certificate is the development identity provider's "
                                f"({dev_idp_cert})")
    sp_certs = [load_certificate(text) for text in (settings.get_sp_cert(),
                                                   settings.get_sp_cert_new()) if text]
    for certificate in sp_certs:
        if is_development_certificate(certificate):
            raise SettingsError("the SP certificate (certs/sp.crt) is a development one, made "
                                "by `hin dev-settings`")
    try:
        sp_key = serialization.load_pem_private_key(
            str(settings.get_sp_key()).encode(), password=None)
    except (TypeError, ValueError):
        raise SettingsError("the SP key (certs/sp.key) is unreadable") from None
    sp_public = sp_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if sp_public != _public_key_der(sp_certs[0]):
        raise SettingsError("the SP key (certs/sp.key) does not belong to the SP certificate "
                            "(certs/sp.crt)")
    # The folder `hin dev-settings` wrote may also be the production one (an old deployment
    # named instance/saml): only its *development* certificate's key counts against it.
    if sp_public in dev_idp_keys | _development_keys([dev_sp_cert], marked_only=True):
        raise SettingsError("the SP key (certs/sp.key) is the development one, made by "
                            "`hin dev-settings`")


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
