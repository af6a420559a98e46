"""Public pages: home, language switch, health check."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, redirect, render_template, request, session
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
    # Only back to a path of ours: never an open redirect.
    target = request.form.get("next", "/")
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        target = "/"
    return redirect(target, code=303)


@bp.get("/healthz")
def healthz() -> tuple[Response, int]:
    try:
        db.session.execute(text("SELECT 1"))
    except Exception:  # noqa: BLE001 - any database failure means not healthy
        current_app.logger.warning("health check: database unreachable")
        db.session.rollback()
        return jsonify(status="error", database="unreachable"), 503
    return jsonify(status="ok", database="ok"), 200
