"""What every response shares: request ids, security headers, error pages."""

from __future__ import annotations

import logging
import re
import secrets

from flask import Flask, Response, current_app, g, render_template, request
from flask_babel import refresh as refresh_locale
from werkzeug.exceptions import HTTPException

from app.web.problems import problem_response

log = logging.getLogger(__name__)

_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{8,64}")

#: No inline script or style anywhere; PDFs are drawn by pdf.js from our own origin.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "font-src 'self'; connect-src 'self'; worker-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


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


def _secure_headers(response: Response) -> Response:
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    headers["X-Content-Type-Options"] = "nosniff"
    headers["X-Frame-Options"] = "DENY"
    headers["Referrer-Policy"] = "no-referrer"
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


def init_web(app: Flask) -> None:
    from app.web.logs import init_request_logging

    app.before_request(_start_request)
    # First registered, so its after_request hook runs last and logs the final status.
    init_request_logging(app)
    app.after_request(_secure_headers)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)

    from app.web.i18n import template_helpers

    app.context_processor(template_helpers)
