"""Sign-in pages for doctors (login, password, SMS code) and staff (password, TOTP), sign-out."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, url_for
from flask_babel import gettext as _
from werkzeug.wrappers import Response as BaseResponse

from app.auth.session import ROLES, current_principal, end_every_session, end_session, requires
from app.extensions import db

bp = Blueprint("auth", __name__, url_prefix="/auth")


@bp.post("/logout")
@requires(*ROLES)
def logout() -> BaseResponse:
    end_session()
    db.session.commit()
    flash(_("Vous êtes déconnecté."), "info")
    return redirect(url_for("web.index"), code=303)


@bp.post("/logout-everywhere")
@requires(*ROLES)
def logout_everywhere() -> BaseResponse:
    """Ends this session and every other one of this account, on every device."""
    principal = current_principal()
    user = principal.user
    end_every_session(user)
    end_session(reason="signed_out_everywhere")
    db.session.commit()
    flash(_("Vous êtes déconnecté de tous vos appareils."), "info")
    return redirect(url_for("web.index"), code=303)
