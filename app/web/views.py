"""Public pages: home, language switch, health check."""

from __future__ import annotations

from flask import (
    Blueprint,
    Response,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
    session,
)
from sqlalchemy import text
from werkzeug.wrappers import Response as BaseResponse

from app.auth.session import public
from app.extensions import db
from app.web.paths import local_path

bp = Blueprint("web", __name__)


@bp.get("/")
@public
def index() -> str:
    return render_template("web/index.html")


@bp.post("/lang")
@public
def set_language() -> BaseResponse:
    lang = request.form.get("lang", "")
    if lang in current_app.config["LANGUAGES"]:
        session["lang"] = lang
    return redirect(local_path(request.form.get("next")), code=303)


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
