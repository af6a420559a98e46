"""Sign-in through HIN (Health Info Net): the SAML 2.0 service provider.

python3-saml checks the XML signatures, the schema, the audience, the destination, the issuer,
the time conditions and the subject confirmation (strict mode, settings hardened by
:mod:`app.auth.saml_settings`). On top of that, this module gives SAML what python3-saml leaves
to the application:

* InResponseTo: every response must answer an AuthnRequest this portal started, in this very
  browser (a binding cookie that does not depend on the session cookie, since the IdP's POST is
  cross-site), once, within 10 minutes; unsolicited (IdP-initiated) responses are refused, and
  the *signed* assertion must name the request too, not only the unsigned response envelope;
* exactly ours: the Response's Destination and the assertion's Recipient must *equal* the ACS
  URL, and every AudienceRestriction must name this SP (python3-saml compares by prefix or
  substring, and accepts none at all);
* replay: each assertion id is accepted once (``saml_assertions``) until it expires;
* where to go next: only the path stored server-side with the request, never RelayState;
* who signs in: the identity (IdP entity id, NameID) is linked to a doctor by GLN at the first
  sign-in and never silently relinked; deactivated or locked accounts are refused;
* single logout: a LogoutRequest signed by the IdP ends this browser's session only when it
  names this session's person and HIN session (NameID and SessionIndex kept at sign-in);
  otherwise nothing ends and the IdP gets a LogoutResponse that says no.

Every refusal shows one generic page; the precise reason (and python3-saml's error *codes*, never
assertion content) goes to the audit trail.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from onelogin.saml2.auth import OneLogin_Saml2_Auth  # type: ignore[import-untyped]
from onelogin.saml2.constants import OneLogin_Saml2_Constants as C  # type: ignore[import-untyped]
from onelogin.saml2.errors import OneLogin_Saml2_ValidationError  # type: ignore[import-untyped]
from onelogin.saml2.logout_response import (  # type: ignore[import-untyped]
    OneLogin_Saml2_Logout_Response,
)
from onelogin.saml2.response import OneLogin_Saml2_Response  # type: ignore[import-untyped]
from onelogin.saml2.settings import OneLogin_Saml2_Settings  # type: ignore[import-untyped]
from onelogin.saml2.utils import OneLogin_Saml2_Utils  # type: ignore[import-untyped]
from onelogin.saml2.xml_utils import OneLogin_Saml2_XML  # type: ignore[import-untyped]
from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from werkzeug.wrappers import Response as BaseResponse

from app.audit import Actor, record
from app.auth.limits import address_limit, limiter
from app.auth.session import (
    User,
    actor_for,
    current_principal,
    end_session,
    is_locked,
    public,
    requires,
    safe_next,
    signed_in,
    start_session,
    target_of,
)
from app.config.saml_trust import SettingsError, load_sp_settings
from app.email_address import is_email_address
from app.extensions import csrf, db
from app.gln import is_valid_gln
from app.models import Doctor, HinIdentity
from app.models.auth import SamlAssertion, SamlRequest
from app.models.base import utcnow
from app.states import DoctorState
from app.text import has_control

bp = Blueprint("hin", __name__, url_prefix="/auth/hin")

F = TypeVar("F", bound=Callable[..., Any])

#: How long an AuthnRequest may wait for its answer.
REQUEST_LIFETIME = timedelta(minutes=10)
#: Largest SAMLResponse accepted (base64); HIN's are a few kilobytes.
MAX_SAML_RESPONSE = 256 * 1024
#: The binding cookie's path: sent to the SP's routes only.
COOKIE_PATH = "/auth/hin"
_COOKIE_VALUE = re.compile(r"[A-Za-z0-9_-]{43}")
#: Who acts before the response is verified: nobody known yet.
UNVERIFIED = Actor("anonymous", "hin")


NOT_CONFIGURED = _l("La connexion par HIN n'est pas configurée sur ce serveur.")
MSG_NO_GLN = _l(
    "Votre identité HIN ne transmet pas de GLN valable. Relais ne peut vous reconnaître que par "
    "votre GLN : adressez-vous au support HIN ou au secrétariat de Relais."
)
MSG_DEACTIVATED = _l(
    "Votre compte Relais est désactivé. Adressez-vous au secrétariat de Relais pour le "
    "réactiver."
)
MSG_LOCKED = _l(
    "Votre compte est temporairement bloqué après trop de tentatives. Réessayez dans "
    "15 minutes ou adressez-vous au secrétariat de Relais."
)
MSG_GLN_MISMATCH = _l(
    "Cette identité HIN est liée à un autre GLN. Adressez-vous au secrétariat de Relais."
)


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


def _csrf_exempt(view: F) -> F:
    return cast(F, csrf.exempt(view))


def _not_configured() -> tuple[str, int]:
    return render_template("auth/hin_unavailable.html", message=NOT_CONFIGURED), 503


# --- the browser-binding cookie --------------------------------------------------------------


def _secure() -> bool:
    return request.is_secure or current_app.config["RELAIS_ENV"] == "production"


def binding_cookie_name() -> str:
    return "__Secure-relais-hin" if _secure() else "relais-hin"


def _browser_hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _set_binding_cookie(response: BaseResponse, value: str) -> None:
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
    if not cookie or not hmac.compare_digest(_browser_hash(cookie), saml_request.browser_hash):
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


# --- who signs in ------------------------------------------------------------------------------


def _attribute(attributes: dict[str, list[str]], config_name: str, limit: int = 200) -> str:
    values = attributes.get(current_app.config[config_name]) or []
    if len(values) != 1 or not isinstance(values[0], str):
        return ""
    value = values[0].strip()
    if len(value) > limit or has_control(value):
        return ""
    return value


def link_identity(verified: Verified) -> tuple[Doctor, HinIdentity]:
    """The doctor this HIN identity signs in as: linked by GLN at first, then by identity.

    Creates or activates the doctor at the first sign-in (audited); refuses, audited by the
    caller, a deactivated or locked account, a missing GLN, or a GLN that changed.
    """
    gln = _attribute(verified.attributes, "SAML_ATTR_GLN", 13)
    identity = db.session.scalar(
        select(HinIdentity).where(
            HinIdentity.provider == verified.provider, HinIdentity.subject == verified.subject
        )
    )
    if identity is not None:
        doctor = identity.doctor
        if not is_valid_gln(gln):
            raise HinRejected("no_gln", status=403, message=MSG_NO_GLN, doctor=doctor)
        if gln != doctor.gln:
            # HIN now says another GLN for this person: the desk decides, never a silent relink.
            raise HinRejected("gln_mismatch", status=403, message=MSG_GLN_MISMATCH,
                              doctor=doctor)
        _check_may_sign_in(doctor)
    else:
        if not is_valid_gln(gln):
            raise HinRejected("no_gln", status=403, message=MSG_NO_GLN)
        known = db.session.scalar(select(Doctor).where(Doctor.gln == gln))
        if known is not None:
            _check_may_sign_in(known)
        doctor = _activate_or_create(known, gln, verified.attributes)
        identity = HinIdentity(provider=verified.provider, subject=verified.subject)
        doctor.identities.append(identity)
        db.session.flush()
        record(actor_for(doctor), "hin.identity_linked", target=target_of(doctor),
               details={"provider": verified.provider})
    identity.last_seen_at = utcnow()
    return doctor, identity


def _check_may_sign_in(doctor: Doctor) -> None:
    if doctor.state == DoctorState.DEACTIVATED.value:
        raise HinRejected("doctor_deactivated", status=403, message=MSG_DEACTIVATED,
                          doctor=doctor)
    if is_locked(doctor):
        raise HinRejected("locked", status=403, message=MSG_LOCKED, doctor=doctor)


def _activate_or_create(doctor: Doctor | None, gln: str,
                        attributes: dict[str, list[str]]) -> Doctor:
    family = _attribute(attributes, "SAML_ATTR_FAMILY_NAME")
    given = _attribute(attributes, "SAML_ATTR_GIVEN_NAME")
    email = _attribute(attributes, "SAML_ATTR_EMAIL", 320)
    if not is_email_address(email):
        email = ""
    now = utcnow()
    if doctor is None:
        doctor = Doctor(gln=gln, family_name=family, given_name=given, email=email or None,
                        state=DoctorState.ACTIVE.value, activated_at=now)
        db.session.add(doctor)
        db.session.flush()
        record(actor_for(doctor), "doctor.created", target=target_of(doctor),
               details={"via": "hin", "state": doctor.state})
        return doctor
    # What the desk or the DPI recorded stays; HIN only fills in what is missing.
    doctor.family_name = doctor.family_name or family
    doctor.given_name = doctor.given_name or given
    doctor.email = doctor.email or email or None
    if doctor.state == DoctorState.PENDING.value:
        doctor.state = DoctorState.ACTIVE.value
        doctor.activated_at = doctor.activated_at or now
        db.session.flush()
        record(actor_for(doctor), "doctor.activated", target=target_of(doctor),
               details={"via": "hin"})
    return doctor


def _record_rejection(rejected: HinRejected) -> None:
    details: dict[str, Any] = {"reason": rejected.reason}
    if rejected.codes:
        details["codes"] = list(rejected.codes)
    doctor = rejected.doctor
    record(
        actor_for(doctor) if doctor is not None else UNVERIFIED,
        "auth.hin_rejected",
        target=target_of(doctor) if doctor is not None else None,
        outcome="failure",
        details=details,
    )


def _refuse(rejected: HinRejected) -> tuple[str, int]:
    _record_rejection(rejected)
    # The request stays claimed: one answer per AuthnRequest, even a refused one.
    db.session.commit()
    return render_template("auth/hin_failed.html", message=rejected.message), rejected.status


# --- routes ------------------------------------------------------------------------------------


@bp.get("/metadata")
@public
def metadata() -> Response | tuple[str, int]:
    settings = sp_settings()
    if settings is None:
        return _not_configured()
    xml = settings.get_sp_metadata()
    if settings.validate_metadata(xml):
        current_app.logger.error("HIN SP metadata does not validate")
        return _not_configured()
    return Response(xml, mimetype="application/samlmetadata+xml")


def _login_limit() -> str:
    return str(current_app.config["RATELIMIT_SIGNIN_PER_ADDRESS"])


@bp.get("/login")
@public
# Each start stores a request row: the same per-address budget as the sign-in POSTs.
@limiter.limit(_login_limit, methods=["GET"], scope="hin-login")
def login() -> BaseResponse | tuple[str, int]:
    settings = sp_settings()
    if settings is None:
        return _not_configured()
    next_path = safe_next(request.args.get("next"))
    auth = OneLogin_Saml2_Auth(request_data(), old_settings=settings)
    # RelayState carries nothing: where to go next stays here, bound to the request id.
    url = auth.login(return_to="/")
    existing = request.cookies.get(binding_cookie_name(), "")
    # One binding value per browser, so that two tabs signing in at once both succeed.
    binding = existing if _COOKIE_VALUE.fullmatch(existing) else secrets.token_urlsafe(32)
    now = utcnow()
    purge_expired(now)
    db.session.add(SamlRequest(
        id=auth.get_last_request_id(), browser_hash=_browser_hash(binding),
        next_path=next_path, created_at=now, expires_at=now + REQUEST_LIFETIME,
    ))
    db.session.commit()
    response = redirect(url, code=303)
    _set_binding_cookie(response, binding)
    return response


@bp.post("/acs")
@public
# A signed SAML POST from the IdP's site: a CSRF token of ours cannot be in it. What CSRF
# protection would give is done by InResponseTo plus the browser-binding cookie instead.
@_csrf_exempt
@address_limit
def acs() -> BaseResponse | tuple[str, int]:
    settings = sp_settings()
    if settings is None:
        return _not_configured()
    try:
        verified = verify_response(settings)
        doctor, identity = link_identity(verified)
    except HinRejected as rejected:
        return _refuse(rejected)
    start_session(doctor, method="hin", details={"identity": identity.id})
    # For single logout: which identity and IdP session this browser's session belongs to.
    session["hin"] = {
        "identity": identity.id,
        "session_index": verified.session_index,
        "format": verified.name_id_format,
    }
    db.session.commit()
    return redirect(safe_next(verified.saml_request.next_path), code=303)


@bp.post("/logout")
@requires("doctor")
def logout() -> BaseResponse:
    """Sign out here, then at HIN too when the IdP offers single logout."""
    principal = current_principal()
    hin = session.get("hin")
    end_session()
    target = url_for("web.index")
    settings = sp_settings()
    slo_url = settings.get_idp_slo_url() if settings is not None else None
    identity = None
    if isinstance(hin, dict) and isinstance(hin.get("identity"), int):
        identity = db.session.get(HinIdentity, hin["identity"])
    if settings is not None and slo_url and identity is not None \
            and identity.doctor_id == principal.user.id:
        auth = OneLogin_Saml2_Auth(request_data(), old_settings=settings)
        target = auth.logout(
            return_to="/", name_id=identity.subject,
            session_index=hin.get("session_index") if isinstance(hin, dict) else None,
            name_id_format=hin.get("format") if isinstance(hin, dict) else None,
        )
        session["hin_logout"] = auth.get_last_request_id()
    db.session.commit()
    flash(_("Vous êtes déconnecté."), "info")
    return redirect(target, code=303)


@bp.get("/logout")
@public
def sls() -> BaseResponse | tuple[str, int]:
    """Single logout service: the IdP's LogoutResponse, or its own LogoutRequest."""
    settings = sp_settings()
    if settings is None:
        return _not_configured()
    # Unsigned logout messages could sign anyone out from another site: signatures required.
    if "Signature" not in request.args or not (
        ("SAMLResponse" in request.args) ^ ("SAMLRequest" in request.args)
    ):
        return _refuse(HinRejected("logout_unsigned"))
    auth = OneLogin_Saml2_Auth(request_data(), old_settings=settings)
    if "SAMLResponse" in request.args:
        expected = session.pop("hin_logout", None)
        if not isinstance(expected, str):
            return _refuse(HinRejected("logout_unsolicited"))
        auth.process_slo(keep_local_session=True, request_id=expected)
        if auth.get_errors():
            return _refuse(HinRejected("logout_invalid", codes=tuple(auth.get_errors()[:1])))
        return redirect(url_for("web.index"), code=303)
    url = auth.process_slo(keep_local_session=True)
    if auth.get_errors() or not url:
        return _refuse(HinRejected("logout_invalid", codes=tuple(auth.get_errors()[:1])))
    logout_request = OneLogin_Saml2_XML.to_etree(auth.get_last_request_xml())
    # python3-saml only checks that the Destination starts with our URL, and only when present.
    if logout_request.get("Destination") != settings.get_sp_data()["singleLogoutService"]["url"]:
        return _refuse(HinRejected("logout_wrong_destination"))
    principal = signed_in()
    if principal is not None:
        refusal = _logout_refusal(settings, logout_request, principal.user)
        if refusal is not None:
            # Signed by the IdP, but about another person or another of their sessions: this
            # one goes on, the IdP is told no, and the trail says why.
            _record_rejection(HinRejected(refusal, doctor=principal.user
                                          if isinstance(principal.user, Doctor) else None))
            db.session.commit()
            return redirect(_logout_answer(auth, settings, C.STATUS_REQUESTER), code=303)
        end_session(reason="hin_logout")
    # Without a session here there is nothing to end: the IdP is told it is done.
    db.session.commit()
    return redirect(url, code=303)


def _logout_refusal(settings: OneLogin_Saml2_Settings, logout_request: Any,
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


def _logout_answer(auth: OneLogin_Saml2_Auth, settings: OneLogin_Saml2_Settings,
                   status: str) -> str:
    """The signed LogoutResponse (HTTP-Redirect) answering the last LogoutRequest with
    ``status``: python3-saml only builds a successful one itself."""
    answer = OneLogin_Saml2_Logout_Response(settings)
    answer.build(auth.get_last_message_id(), status=status)
    parameters = {"SAMLResponse": answer.get_response()}
    relay_state = request.args.get("RelayState")
    if relay_state is not None:
        parameters["RelayState"] = relay_state
    security = settings.get_security_data()
    if security["logoutResponseSigned"]:
        auth.add_response_signature(parameters, security["signatureAlgorithm"])
    return str(auth.redirect_to(auth.get_slo_response_url(), parameters))
