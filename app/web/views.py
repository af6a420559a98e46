"""Public pages: home, language switch, health check."""

from __future__ import annotations

import re

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

from app.extensions import db

bp = Blueprint("web", __name__)


@bp.get("/")
def index() -> str:
    return render_template("web/index.html")


@bp.post("/lang")
def set_language() -> BaseResponse:
    lang = request.form.get("lang", "")
    if lang in current_app.config["LANGUAGES"]:
        session["lang"] = lang
    return redirect(_local_path(request.form.get("next", "/")), code=303)


#: A path on this site: one leading slash, then no slash or backslash right after it, and no
#: whitespace or control character anywhere (browsers drop tabs and newlines from URLs, so
#: ``/<TAB>/evil.example`` would become ``//evil.example``, another site).
_LOCAL_PATH = re.compile(r"/(?![/\\])[^\\\s\x00-\x1f\x7f]*")


def _local_path(target: str) -> str:
    """``target`` when it is a path of ours, else ``/``: never an open redirect."""
    return target if _LOCAL_PATH.fullmatch(target) else "/"


@bp.get("/healthz")
def healthz() -> tuple[Response, int]:
    try:
        db.session.execute(text("SELECT 1"))
    except Exception:
        current_app.logger.warning("health check: database unreachable")
        db.session.rollback()
        return jsonify(status="error", database="unreachable"), 503
    return jsonify(status="ok", database="ok"), 200
