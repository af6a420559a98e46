"""Sign-in through HIN (Health Info Net): the SAML 2.0 service provider's routes.

Metadata, login (an AuthnRequest bound to this browser), the ACS (the response checked by
:mod:`app.auth.hin_checks`, the doctor found by :mod:`app.auth.hin_identity`), and single
logout both ways. Where to go next is only the path stored server-side with the request, never
RelayState.

Every refusal shows one generic page; the precise reason (and python3-saml's error *codes*, never
assertion content) goes to the audit trail.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any, TypeVar, cast

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
from onelogin.saml2.logout_response import (  # type: ignore[import-untyped]
    OneLogin_Saml2_Logout_Response,
)
from onelogin.saml2.settings import OneLogin_Saml2_Settings  # type: ignore[import-untyped]
from onelogin.saml2.xml_utils import OneLogin_Saml2_XML  # type: ignore[import-untyped]
from werkzeug.wrappers import Response as BaseResponse

from app.audit import Actor, record
from app.auth.hin_checks import (
    COOKIE_VALUE,
    REQUEST_LIFETIME,
    HinRejected,
    binding_cookie_name,
    browser_hash,
    logout_refusal,
    purge_expired,
    request_data,
    set_binding_cookie,
    sp_settings,
    verify_response,
)
from app.auth.hin_identity import link_identity
from app.auth.limits import address_limit, limiter
from app.auth.session import (
    actor_for,
    current_principal,
    end_session,
    public,
    requires,
    safe_next,
    signed_in,
    start_session,
    target_of,
)
from app.extensions import csrf, db
from app.models import Doctor, HinIdentity
from app.models.auth import SamlRequest
from app.models.base import utcnow

bp = Blueprint("hin", __name__, url_prefix="/auth/hin")

F = TypeVar("F", bound=Callable[..., Any])

#: Who acts before the response is verified: nobody known yet.
UNVERIFIED = Actor("anonymous", "hin")


NOT_CONFIGURED = _l("La connexion par HIN n'est pas configurée sur ce serveur.")


def _csrf_exempt(view: F) -> F:
    return cast(F, csrf.exempt(view))


def _not_configured() -> tuple[str, int]:
    return render_template("auth/hin_unavailable.html", message=NOT_CONFIGURED), 503


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
    binding = existing if COOKIE_VALUE.fullmatch(existing) else secrets.token_urlsafe(32)
    now = utcnow()
    purge_expired(now)
    db.session.add(SamlRequest(
        id=auth.get_last_request_id(), browser_hash=browser_hash(binding),
        next_path=next_path, created_at=now, expires_at=now + REQUEST_LIFETIME,
    ))
    db.session.commit()
    response = redirect(url, code=303)
    set_binding_cookie(response, binding)
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
        refusal = logout_refusal(settings, logout_request, principal.user)
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
