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

from app.audit import record
from app.auth.session import public, signed_in, target_of
from app.extensions import db
from app.web.paths import local_path

bp = Blueprint("web", __name__)


@bp.get("/")
@public
def index() -> str | BaseResponse:
    principal = signed_in()
    if principal is not None and principal.role == "doctor":
        from app.workspace.profile import landing_path

        # Mon profil (e): a signed-in doctor goes to the page chosen in the profile.
        return redirect(landing_path(principal.doctor), code=303)
    return render_template("web/index.html")


@bp.post("/lang")
@public
def set_language() -> BaseResponse:
    lang = request.form.get("lang", "")
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
