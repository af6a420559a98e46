"""What every response shares: request ids, security headers, error pages."""

from __future__ import annotations

import logging
import re
import secrets
from typing import Any

from flask import Flask, Response, current_app, g, render_template, request
from flask_babel import get_locale
from flask_babel import refresh as refresh_locale
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException
from werkzeug.routing import IntegerConverter

from app.extensions import db
from app.web.listing import BIGINT_ID_MAX, INT_ID_MAX
from app.web.problems import RETRY_AFTER_SECONDS, problem_response

log = logging.getLogger(__name__)

_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{8,64}")

#: No inline script or style anywhere; PDFs are drawn by pdf.js from our own origin.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "font-src 'self'; connect-src 'self'; worker-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


#: Our own pages get the full address of the page a request came from, and no other site gets
#: anything, not even our origin (a link or a redirect to HIN, or to any other site, carries no
#: Referer). Over HTTPS Flask-WTF's strict check (WTF_CSRF_SSL_STRICT) refuses every form POST
#: whose Referer is missing or of another origin: with ``no-referrer`` the browser sent none,
#: and every sign-in, language switch and sign-out failed with a 400. The Referer we now
#: receive may hold a path with DPI ids or search words: it is never logged (the access line
#: has the route template only; nginx's log format has no Referer).
REFERRER_POLICY = "same-origin"

#: Per-request values kept on ``g``. ``g`` belongs to the app context, which a request reuses
#: when one is already pushed (a test, a CLI command serving requests): start each request
#: without the previous one's values, so that no caller and no language leak from it.
_REQUEST_SCOPED = ("request_id", "api_client", "audit_target", "principal",
                   "csrf_token", "_login_user")  # Flask-WTF's and Flask-Login's caches


def _start_request() -> None:
    for name in _REQUEST_SCOPED:
        g.pop(name, None)
    refresh_locale()  # Flask-Babel caches the chosen locale on g
    # Keep a proxy's request id when it looks like one, so logs join up across hops.
    incoming = request.headers.get("X-Request-ID", "")
    g.request_id = incoming if _REQUEST_ID.fullmatch(incoming) else secrets.token_hex(12)


def _content_security_policy() -> str:
    """The CSP, its ``form-action`` naming HIN's single logout origin when HIN is configured:
    the sign-out of a HIN session is a form whose answer redirects there, and Chromium blocks
    a form's redirect to an origin ``form-action`` does not name (the session would end here
    and never at HIN)."""
    from app.config.saml_trust import idp_logout_origin

    origin = idp_logout_origin(current_app.config["SAML_SETTINGS_DIR"])
    if origin is None:
        return CONTENT_SECURITY_POLICY
    return CONTENT_SECURITY_POLICY.replace("form-action 'self'", f"form-action 'self' {origin}")


def _secure_headers(response: Response) -> Response:
    headers = response.headers
    headers.setdefault("Content-Security-Policy", _content_security_policy())
    headers["X-Content-Type-Options"] = "nosniff"
    headers["X-Frame-Options"] = "DENY"
    headers["Referrer-Policy"] = REFERRER_POLICY
    headers["Cross-Origin-Opener-Policy"] = "same-origin"
    headers["Cross-Origin-Resource-Policy"] = "same-origin"
    headers["Permissions-Policy"] = "camera=(), microphone=(), geolocation=(), payment=()"
    # Production is reached over TLS only (a browser ignores HSTS on plain http anyway); a laptop
    # on http://127.0.0.1 must not be pinned to https.
    if request.is_secure or current_app.config["RELAIS_ENV"] == "production":
        headers["Strict-Transport-Security"] = "max-age=63072000; includeSubDomains"
    if request.endpoint != "static":
        # Pages and API answers may carry patient data: no cache may keep them.
        headers["Cache-Control"] = "no-store"
    headers["X-Request-ID"] = g.get("request_id", "")
    return response


def _wants_problem() -> bool:
    return request.path.startswith("/api/")


def _http_error(error: HTTPException) -> Response | tuple[str, int]:
    code = error.code or 500
    if _wants_problem():
        return problem_response(code, detail=None)
    template = "errors/404.html" if code == 404 else "errors/generic.html"
    return render_template(template, code=code, name=error.name), code


def _unexpected_error(error: Exception) -> Response | tuple[str, int]:
    # The traceback goes to the log with the request id; the answer says nothing of it.
    log.exception("unhandled error (request %s)", g.get("request_id"))
    if _wants_problem():
        return problem_response(500, detail=None)
    return render_template("errors/500.html", request_id=g.get("request_id")), 500


def is_unavailable(error: Exception) -> bool:
    """Whether a database error means "not reachable now" (a restart, a failover, a dropped
    connection, a full pool), as opposed to a bug or a constraint: only those are worth a retry.
    """
    if isinstance(error, OperationalError | InterfaceError | PoolTimeout):
        return True
    return isinstance(error, DBAPIError) and error.connection_invalidated


def _database_error(error: SQLAlchemyError) -> Response | tuple[str, int]:
    if not is_unavailable(error):
        return _unexpected_error(error)
    # The transaction is lost with its connection: nothing of it was stored (or, when the commit
    # reached the server before the connection broke, all of it; an identical retry of an ingest
    # is then answered as a replay). Release the session so the next request starts clean.
    try:
        db.session.rollback()
    except SQLAlchemyError:
        log.warning("rollback after a lost database connection failed (request %s)",
                    g.get("request_id"))
    # Expected during a database restart: no traceback, and no message (it may quote SQL).
    cause = type(getattr(error, "orig", None) or error).__name__
    log.warning("database unavailable (%s, request %s): answered 503", cause, g.get("request_id"))
    response: Response
    if _wants_problem():
        response = problem_response(503, detail=None)
    else:
        # Rendered without the context processors: they look up the signed-in user (and
        # base.html shows it), which needs the database that just failed.
        page = current_app.jinja_env.get_template("errors/503.html").render(
            current_locale=str(get_locale() or "fr"), request_id=g.get("request_id"))
        response = Response(page, status=503, mimetype="text/html")
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


class RowIdConverter(IntegerConverter):
    """The app's ``<int:...>``: werkzeug's, no larger than an INTEGER row id. A larger number
    names no row: 404, where the database would fail on it (a 500)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", INT_ID_MAX)
        super().__init__(*args, **kwargs)


class BigRowIdConverter(IntegerConverter):
    """``<bigint:...>``: the same for the 64-bit keys (BIGINT: deliveries)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", BIGINT_ID_MAX)
        super().__init__(*args, **kwargs)


def init_web(app: Flask) -> None:
    from app.web.logs import init_request_logging

    # Before the blueprints: each rule picks its converter when it is added.
    app.url_map.converters["int"] = RowIdConverter
    app.url_map.converters["bigint"] = BigRowIdConverter
    app.before_request(_start_request)
    # First registered, so its after_request hook runs last and logs the final status.
    init_request_logging(app)
    app.after_request(_secure_headers)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(SQLAlchemyError, _database_error)
    app.register_error_handler(Exception, _unexpected_error)

    from app.web.i18n import template_helpers

    app.context_processor(template_helpers)
