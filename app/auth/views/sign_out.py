"""``/auth/logout`` and ``/auth/logout-everywhere``: signing out here, or on every device."""

from __future__ import annotations

from flask import flash, redirect, url_for
from flask_babel import gettext as _
from werkzeug.wrappers import Response as BaseResponse

from app.auth.session import ROLES, current_principal, end_every_session, end_session, requires
from app.auth.views.blueprint import bp
from app.auth.views.pending import forget_csrf_token
from app.extensions import db


@bp.post("/logout")
@requires(*ROLES)
def logout() -> BaseResponse:
    end_session()
    forget_csrf_token()
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
    forget_csrf_token()
    db.session.commit()
    flash(_("Vous êtes déconnecté de tous vos appareils."), "info")
    return redirect(url_for("web.index"), code=303)
