"""What production checks in the SAML settings before it starts: python3-saml settings loaded
hardened, and no development key trusted or used.

These are read-only checks of ``SAML_SETTINGS_DIR`` that the settings (``load_settings``) and
the pages' CSP (``form-action``) need; writing settings and making key pairs is
``app/auth/saml_settings.py``'s, which marks every development certificate as this module
recognises it (:data:`DEV_MARK_OID`, :data:`DEV_ORGANIZATION`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from onelogin.saml2.constants import OneLogin_Saml2_Constants as C  # type: ignore[import-untyped]
from onelogin.saml2.settings import OneLogin_Saml2_Settings  # type: ignore[import-untyped]
from onelogin.saml2.utils import OneLogin_Saml2_Utils  # type: ignore[import-untyped]

#: What the SP must enforce, whatever the files on disk say.
REQUIRED_SECURITY: dict[str, Any] = {
    "wantAssertionsSigned": True,
    "wantNameId": True,
    "rejectDeprecatedAlgorithm": True,
}

class SettingsError(RuntimeError):
    """The SP settings are missing, unreadable or weaker than Relais requires."""


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


# --- development keys -------------------------------------------------------------------------


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
