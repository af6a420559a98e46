"""The checks on what HIN's identity provider sends, before anyone signs in.

python3-saml checks the XML signatures, the schema, the audience, the destination, the issuer,
the time conditions and the subject confirmation (strict mode, settings hardened by
:mod:`app.auth.saml_settings`). This module adds what python3-saml leaves to the application:

* request binding: every response must answer an AuthnRequest this portal started, in this very
  browser (a binding cookie that does not depend on the session cookie, since the IdP's POST is
  cross-site), once, within 10 minutes; unsolicited (IdP-initiated) responses are refused, and
  the *signed* assertion must name the request too, not only the unsigned response envelope;
* exactly ours: the Response's Destination and the assertion's Recipient must *equal* the ACS
  URL, and every AudienceRestriction must name this SP (python3-saml compares by prefix or
  substring, and accepts none at all);
* replay: each assertion id is accepted once (``saml_assertions``) until it expires;
* single logout: a signed LogoutRequest names this session's person and HIN session, or it
  ends nothing (:func:`logout_refusal`).

Each failure is a :class:`HinRejected` with its precise reason; the routes
(:mod:`app.auth.hin`) audit it and show one generic page.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from flask import current_app, request, session
from onelogin.saml2.constants import OneLogin_Saml2_Constants as C  # type: ignore[import-untyped]
from onelogin.saml2.errors import OneLogin_Saml2_ValidationError  # type: ignore[import-untyped]
from onelogin.saml2.response import OneLogin_Saml2_Response  # type: ignore[import-untyped]
from onelogin.saml2.settings import OneLogin_Saml2_Settings  # type: ignore[import-untyped]
from onelogin.saml2.utils import OneLogin_Saml2_Utils  # type: ignore[import-untyped]
from onelogin.saml2.xml_utils import OneLogin_Saml2_XML  # type: ignore[import-untyped]
from sqlalchemy import delete, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from werkzeug.wrappers import Response as BaseResponse

from app.auth.session import User
from app.config.saml_trust import SettingsError, load_sp_settings
from app.extensions import db
from app.models import Doctor, HinIdentity
from app.models.auth import SamlAssertion, SamlRequest
from app.models.base import utcnow

#: How long an AuthnRequest may wait for its answer.
REQUEST_LIFETIME = timedelta(minutes=10)
#: Largest SAMLResponse accepted (base64); HIN's are a few kilobytes.
MAX_SAML_RESPONSE = 256 * 1024
#: The binding cookie's path: sent to the SP's routes only.
COOKIE_PATH = "/auth/hin"
#: A binding cookie's value, as this SP writes it.
COOKIE_VALUE = re.compile(r"[A-Za-z0-9_-]{43}")


class HinRejected(Exception):
    """One precise reason to refuse a HIN sign-in (audited; the page stays generic)."""

    def __init__(self, reason: str, *, codes: tuple[str, ...] = (), status: int = 400,
                 message: Any = None, doctor: Doctor | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.codes = codes
        self.status = status
        self.message = message
        self.doctor = doctor


@dataclass
class Verified:
    """What a verified response tells us, and what the request it answers asked."""

    saml_request: SamlRequest
    provider: str
    subject: str
    name_id_format: str | None
    session_index: str | None
    attributes: dict[str, list[str]] = field(default_factory=dict)


# --- settings and python3-saml's view of the request ---------------------------------------


def sp_settings() -> OneLogin_Saml2_Settings | None:
    """The hardened SP settings, or None when HIN is not (or not soundly) configured."""
    try:
        return load_sp_settings(current_app.config["SAML_SETTINGS_DIR"])
    except SettingsError as error:
        current_app.logger.warning("HIN sign-in unavailable: %s", error)
        return None


def request_data() -> dict[str, Any]:
    """The request as python3-saml reads it.

    Scheme, host and path prefix come from the configured ``PUBLIC_BASE_URL`` (the address
    the IdP was told, in the settings), not from the Host header, which the client chooses;
    the path is the one Flask routed (after ProxyFix, when behind the TLS proxy).
    """
    base = urlsplit(current_app.config["PUBLIC_BASE_URL"])
    return {
        "https": "on" if base.scheme == "https" else "off",
        "http_host": base.netloc,
        "script_name": base.path.rstrip("/"),
        "path_info": request.path,
        "get_data": request.args.to_dict(),
        "post_data": request.form.to_dict(),
        "query_string": request.query_string.decode("ascii", "replace"),
        # Check redirect-binding signatures over the query exactly as received.
        "validate_signature_from_qs": True,
    }


# --- the browser-binding cookie --------------------------------------------------------------


def _secure() -> bool:
    return request.is_secure or current_app.config["RELAIS_ENV"] == "production"


def binding_cookie_name() -> str:
    return "__Secure-relais-hin" if _secure() else "relais-hin"


def browser_hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def set_binding_cookie(response: BaseResponse, value: str) -> None:
    secure = _secure()
    # The IdP's POST to the ACS is a cross-site request: only SameSite=None reaches it. That
    # needs Secure, so on plain http (a laptop, where the development IdP is same-site) Lax.
    response.set_cookie(
        binding_cookie_name(), value, max_age=int(REQUEST_LIFETIME.total_seconds()),
        path=COOKIE_PATH, secure=secure, httponly=True, samesite="None" if secure else "Lax",
    )


# --- housekeeping ---------------------------------------------------------------------------


def purge_expired(now: datetime | None = None) -> None:
    """Forget requests and assertions whose time has passed (they are refused anyway)."""
    now = now or utcnow()
    db.session.execute(delete(SamlRequest).where(SamlRequest.expires_at < now))
    db.session.execute(delete(SamlAssertion).where(SamlAssertion.expires_at < now))


def remember_assertion(assertion_id: str, expires_at: datetime) -> bool:
    """Record an accepted assertion id; False when it was seen before (a replay)."""
    values = {"id": assertion_id, "accepted_at": utcnow(), "expires_at": expires_at}
    dialect = db.session.get_bind().dialect.name
    # The primary key decides, atomically, even between two servers at the same instant.
    table: Any = SamlAssertion.__table__
    statement: Any = None
    if dialect == "postgresql":
        statement = postgresql_insert(table).on_conflict_do_nothing(index_elements=["id"])
    elif dialect == "sqlite":
        statement = sqlite_insert(table).on_conflict_do_nothing(index_elements=["id"])
    if statement is not None:
        inserted = db.session.execute(statement.values(**values).returning(table.c.id))
        return inserted.first() is not None
    try:
        with db.session.begin_nested():
            db.session.add(SamlAssertion(**values))
    except IntegrityError:
        return False
    return True


# --- verifying a response --------------------------------------------------------------------


def _error_name(code: Any) -> str:
    for name, value in vars(OneLogin_Saml2_ValidationError).items():
        if name.isupper() and value == code:
            return str(name)
    return "UNKNOWN"


def _claim_request(response: OneLogin_Saml2_Response, now: datetime) -> SamlRequest:
    """The AuthnRequest this response answers, started in this browser, claimed once."""
    request_id = response.get_in_response_to()
    if not request_id:
        raise HinRejected("unsolicited")
    if len(request_id) > 128:
        raise HinRejected("unknown_request")
    saml_request = db.session.get(SamlRequest, request_id)
    if saml_request is None:
        raise HinRejected("unknown_request")
    cookie = request.cookies.get(binding_cookie_name(), "")
    if not cookie or not hmac.compare_digest(browser_hash(cookie), saml_request.browser_hash):
        raise HinRejected("other_browser")
    if saml_request.expires_at <= now:
        raise HinRejected("request_expired")
    # Single use even when two answers race: only one UPDATE finds used_at still empty.
    claimed = db.session.execute(
        update(SamlRequest)
        .where(SamlRequest.id == request_id, SamlRequest.used_at.is_(None))
        .values(used_at=now)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        raise HinRejected("request_used")
    return saml_request


def _assertion_times(document: Any) -> list[datetime]:
    """Every NotOnOrAfter of the (single, verified) assertion."""
    times = []
    for path in (
        "//saml:Assertion/saml:Conditions/@NotOnOrAfter",
        "//saml:Assertion/saml:Subject/saml:SubjectConfirmation/"
        "saml:SubjectConfirmationData/@NotOnOrAfter",
    ):
        for value in OneLogin_Saml2_XML.query(document, path):
            times.append(datetime.fromtimestamp(_parse_time(str(value)), UTC))
    return times


def _parse_time(value: str) -> int:
    return int(OneLogin_Saml2_Utils.parse_SAML_to_time(value))


def _addressed_to_us(settings: OneLogin_Saml2_Settings, document: Any) -> None:
    """The response and its (single, verified) assertion name this SP exactly, or
    :class:`HinRejected`.

    python3-saml lets through what these close: a Response without Destination, or whose
    Destination merely *starts with* the ACS URL (``.../acs/../evil``, ``.../acs?x``); a
    Recipient that merely *contains* it (``https://evil/?https://.../acs``), or none; an assertion
    without AudienceRestriction. Each AudienceRestriction must name us (SAML core 2.5.1.4: all
    of them must hold).
    """
    sp = settings.get_sp_data()
    acs, entity_id = sp["assertionConsumerService"]["url"], sp["entityId"]
    destination = document.get("Destination")
    if destination is None:
        raise HinRejected("wrong_destination", codes=("MISSING_DESTINATION",))
    if destination != acs:
        raise HinRejected("wrong_destination", codes=("WRONG_DESTINATION",))
    assertion = "/samlp:Response/saml:Assertion"
    restrictions = OneLogin_Saml2_XML.query(
        document, f"{assertion}/saml:Conditions/saml:AudienceRestriction")
    if not restrictions:
        raise HinRejected("wrong_audience", codes=("MISSING_AUDIENCE",))
    for restriction in restrictions:
        audiences = [OneLogin_Saml2_XML.element_text(audience)
                     for audience in OneLogin_Saml2_XML.query(restriction, "saml:Audience")]
        if entity_id not in audiences:
            raise HinRejected("wrong_audience", codes=("WRONG_AUDIENCE",))
    confirmations = OneLogin_Saml2_XML.query(
        document, f"{assertion}/saml:Subject/saml:SubjectConfirmation"
        "/saml:SubjectConfirmationData")
    recipients = [data.get("Recipient") for data in confirmations]
    if not recipients or None in recipients:
        raise HinRejected("wrong_recipient", codes=("MISSING_RECIPIENT",))
    if any(recipient != acs for recipient in recipients):
        raise HinRejected("wrong_recipient", codes=("WRONG_RECIPIENT",))


def verify_response(settings: OneLogin_Saml2_Settings) -> Verified:
    """Check the POSTed SAMLResponse completely, or raise :class:`HinRejected`."""
    raw = request.form.get("SAMLResponse", "")
    if not raw or len(raw) > MAX_SAML_RESPONSE:
        raise HinRejected("no_response")
    try:
        response = OneLogin_Saml2_Response(settings, raw)
    except Exception:  # not base64, not XML, a DTD ...: python3-saml raises plain errors
        raise HinRejected("malformed_response") from None

    now = utcnow()
    saml_request = _claim_request(response, now)
    try:
        response.is_valid(request_data(), request_id=saml_request.id, raise_exceptions=True)
        document = response.get_xml_document()
        # The envelope's InResponseTo may be unsigned: the signed assertion must name our
        # request as well (python3-saml only compares the two when both are present).
        confirmed = OneLogin_Saml2_XML.query(
            document,
            "//saml:Assertion/saml:Subject/saml:SubjectConfirmation"
            "/saml:SubjectConfirmationData/@InResponseTo",
        )
        if [str(value) for value in confirmed] != [saml_request.id]:
            raise HinRejected("assertion_not_for_request", codes=("WRONG_INRESPONSETO",))
        _addressed_to_us(settings, document)
        subject = response.get_nameid()
        name_id_format = response.get_nameid_format()
        attributes = response.get_attributes()
        assertion_id = response.get_assertion_id()
        times = _assertion_times(document)
    except OneLogin_Saml2_ValidationError as error:
        raise HinRejected("invalid_response", codes=(_error_name(error.code),)) from None
    except HinRejected:
        raise
    except Exception as error:  # python3-saml raises plain errors for some malformed input
        raise HinRejected("invalid_response", codes=(type(error).__name__,)) from None

    if not assertion_id or len(assertion_id) > 256 or not times:
        raise HinRejected("invalid_response", codes=("NO_EXPIRY",))
    drift = timedelta(seconds=C.ALLOWED_CLOCK_DRIFT)
    keep_until = max([now + REQUEST_LIFETIME, *(moment + drift for moment in times)])
    if not remember_assertion(assertion_id, keep_until):
        raise HinRejected("replayed_assertion")
    if not subject or len(subject) > 255:
        raise HinRejected("invalid_response", codes=("EMPTY_NAMEID",))
    return Verified(
        saml_request=saml_request,
        provider=str(settings.get_idp_data()["entityId"]),
        subject=subject,
        name_id_format=name_id_format,
        session_index=response.get_session_index(),
        attributes=attributes,
    )



# --- single logout ---------------------------------------------------------------------------


def logout_refusal(settings: OneLogin_Saml2_Settings, logout_request: Any,
                    user: User) -> str | None:
    """Why a (signed, valid) LogoutRequest does not end this session, or None when it names it.

    It must name the person of this session's HIN sign-in (NameID, with its format and
    qualifier when given) and that sign-in's own session (SessionIndex, kept in the signed
    session cookie at sign-in). A request without SessionIndex would end every session of the
    person: refused too, since a session ends here only when it is named.
    """
    hin = session.get("hin")
    identity = None
    if isinstance(hin, dict) and isinstance(hin.get("identity"), int):
        identity = db.session.get(HinIdentity, hin["identity"])
    if not isinstance(hin, dict) or identity is None or identity.doctor_id != user.id \
            or not isinstance(user, Doctor):
        return "logout_not_hin_session"
    name_ids = OneLogin_Saml2_XML.query(logout_request, "/samlp:LogoutRequest/saml:NameID")
    if len(name_ids) != 1:
        return "logout_other_person"
    name_id = name_ids[0]
    if OneLogin_Saml2_XML.element_text(name_id) != identity.subject \
            or identity.provider != settings.get_idp_data()["entityId"]:
        return "logout_other_person"
    given_format, kept_format = name_id.get("Format"), hin.get("format")
    if given_format is not None and kept_format is not None and given_format != kept_format:
        return "logout_other_person"
    qualifier = name_id.get("NameQualifier")
    if qualifier is not None and qualifier != identity.provider:
        return "logout_other_person"
    kept_index = hin.get("session_index")
    indexes = [OneLogin_Saml2_XML.element_text(index) for index in OneLogin_Saml2_XML.query(
        logout_request, "/samlp:LogoutRequest/samlp:SessionIndex")]
    if not isinstance(kept_index, str) or not kept_index or kept_index not in indexes:
        return "logout_other_session"
    return None
