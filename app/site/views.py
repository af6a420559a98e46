"""The site's own public routes: home, the language switch, liveness (/healthz) and readiness
(/readyz). Help and privacy are in ``app.site.help``."""

from __future__ import annotations

from typing import Any

from flask import (
    Blueprint,
    Response,
    current_app,
    jsonify,
    redirect,
    render_template,
    session,
)
from redis import Redis
from sqlalchemy import text
from werkzeug.wrappers import Response as BaseResponse

from app.audit import record
from app.auth.session import public, signed_in, target_of
from app.extensions import db
from app.profile.preferences import landing_path
from app.site.forms import LanguageForm, language_form
from app.web.paths import local_path

bp = Blueprint("web", __name__)


@bp.app_context_processor
def _header_forms() -> dict[str, Any]:
    # A function, not a form: emails are drawn outside any request, and only base.html asks.
    return {"language_form": language_form}


@bp.get("/")
@public
def index() -> str | BaseResponse:
    principal = signed_in()
    if principal is not None and principal.role == "doctor":
        # Mon profil (e): a signed-in doctor goes to the page chosen in the profile.
        return redirect(landing_path(principal.doctor), code=303)
    return render_template("site/index.html")


@bp.post("/lang")
@public
def set_language() -> BaseResponse:
    form = LanguageForm()
    lang = form.lang.data or ""
    if lang in current_app.config["LANGUAGES"]:
        session["lang"] = lang
        principal = signed_in()
        if principal is not None and principal.role == "doctor" and \
                principal.doctor.language != lang:
            # The header switch and Mon profil are one setting: the next sign-in keeps it.
            principal.doctor.language = lang
            record(principal.actor, "profile.updated", target=target_of(principal.doctor),
                   details={"fields": ["language"]})
            db.session.commit()
    return redirect(local_path(form.next.data), code=303)


@bp.get("/healthz")
@public
def healthz() -> tuple[Response, int]:
    try:
        db.session.execute(text("SELECT 1"))
    except Exception:
        current_app.logger.warning("health check: database unreachable")
        db.session.rollback()
        return jsonify(status="error", database="unreachable"), 503
    return jsonify(status="ok", database="ok"), 200


#: How long /readyz waits for Redis: a load balancer polls every few seconds, and a hung
#: dependency must answer "not ready", not hold the check (and a worker thread) for long.
READYZ_REDIS_TIMEOUT = 2.0


def _readyz_redis() -> Redis:
    """One client per app for the readiness check, with short timeouts."""
    client = current_app.extensions.get("relais.readyz_redis")
    if client is None:
        client = Redis.from_url(current_app.config["REDIS_URL"],
                                socket_connect_timeout=READYZ_REDIS_TIMEOUT,
                                socket_timeout=READYZ_REDIS_TIMEOUT)
        current_app.extensions["relais.readyz_redis"] = client
    return client


def _database_ready() -> bool:
    try:
        db.session.execute(text("SELECT 1"))
    except Exception as error:
        # The type only: a driver's message may carry the connection string.
        current_app.logger.warning("readiness: database unreachable (%s)", type(error).__name__)
        db.session.rollback()
        return False
    return True


def _redis_ready() -> bool:
    try:
        return bool(_readyz_redis().ping())
    except Exception as error:
        current_app.logger.warning("readiness: Redis unreachable (%s)", type(error).__name__)
        return False


@bp.get("/readyz")
@public
def readyz() -> tuple[Response, int]:
    """Readiness for the load balancer: may this server take requests now?

    Unlike /healthz (liveness: restart the process when it fails), a failure here only takes the
    server out of rotation until its dependencies answer again. Only ok/error per dependency.
    """
    checks = {"database": _database_ready()}
    if current_app.config.get("REDIS_URL"):
        checks["redis"] = _redis_ready()
    ready = all(checks.values())
    body = {name: "ok" if ok else "error" for name, ok in checks.items()}
    return jsonify(status="ok" if ready else "error", **body), 200 if ready else 503
