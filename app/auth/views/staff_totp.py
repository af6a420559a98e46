"""``/auth/totp`` and ``/auth/totp/enrol``: the staff's second step, the authenticator app.

At the first sign-in (or after the desk reset it) the authenticator is set up: its secret as a
QR code drawn here (no external service, no script) and as text; its first right code signs in
and issues the recovery codes, shown once (:mod:`.recovery_codes`).
"""

from __future__ import annotations

from typing import cast

import segno
from flask import redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy import func, select
from werkzeug.wrappers import Response as BaseResponse

from app.auth import totp
from app.auth.forms import CODE_WRONG, SIGN_IN_FAILED, EnrolmentForm, StaffCodeForm
from app.auth.limits import sign_in_limits
from app.auth.session import public, safe_next, start_session
from app.auth.sign_in import AccountLocked, WrongCode, check_staff_code, confirm_enrolment
from app.auth.staff_factors import totp_secret
from app.auth.views import pending
from app.auth.views.blueprint import bp
from app.auth.views.recovery_codes import keep_recovery_codes
from app.extensions import db
from app.models import RecoveryCode, StaffUser


def _recovery_codes_left(staff: StaffUser) -> int:
    return db.session.scalar(
        select(func.count()).select_from(RecoveryCode).where(
            RecoveryCode.staff_user_id == staff.id, RecoveryCode.used_at.is_(None))
    ) or 0


@bp.route("/totp", methods=["GET", "POST"], endpoint="totp")
@public
@sign_in_limits
def totp_check() -> BaseResponse | tuple[str, int]:
    found = pending.pending_at("totp")
    if found is None:
        return pending.no_such_step()
    state, user = found
    staff = cast(StaffUser, user)
    if staff.totp_pending:  # the desk reset the authenticator meanwhile
        return pending.restart()
    form = StaffCodeForm()
    if request.method == "GET":
        return render_template("auth/totp.html", form=form, error=None), 200
    if not form.validate():  # too long to be a code: refused without a check
        return render_template("auth/totp.html", form=form, error=CODE_WRONG), 200
    try:
        method = check_staff_code(staff, form.code.data or "")
    except AccountLocked:
        return pending.restart(SIGN_IN_FAILED)
    except WrongCode as wrong:
        if wrong.now_locked:
            return pending.restart(SIGN_IN_FAILED)
        return render_template("auth/totp.html", form=form, error=CODE_WRONG), 200
    note = None
    if method == "recovery_code":
        note = _("Vous avez utilisé un code de secours ; il vous en reste %(count)s.",
                 count=_recovery_codes_left(staff))
    return pending.finish(staff, safe_next(state.get("next")), method=method, note=note)


def _qr_svg(uri: str) -> str:
    """The provisioning URI as an inline SVG (drawn here: no external service, no script)."""
    qr = segno.make(uri, error="m")
    svg: str = qr.svg_inline(scale=5, border=4, dark="#000", light="#fff", svgclass="qr-code",
                             title=_("Code QR à scanner avec votre application"))
    return svg


def _grouped(secret: str) -> str:
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


@bp.route("/totp/enrol", methods=["GET", "POST"])
@public
@sign_in_limits
def totp_enrol() -> BaseResponse | tuple[str, int]:
    found = pending.pending_at("totp_enrol")
    if found is None:
        return pending.no_such_step()
    state, user = found
    staff = cast(StaffUser, user)
    if not staff.totp_pending:
        return pending.restart()
    form = EnrolmentForm()
    error = None
    if request.method == "POST" and not form.validate():  # too long: refused without a check
        error = CODE_WRONG
    elif request.method == "POST":
        try:
            recovery = confirm_enrolment(staff, form.code.data or "")
        except AccountLocked:
            return pending.restart(SIGN_IN_FAILED)
        except WrongCode as wrong:
            if wrong.now_locked:
                return pending.restart(SIGN_IN_FAILED)
            error = CODE_WRONG
        else:
            next_path = safe_next(state.get("next"))
            start_session(staff, method="totp_enrolment")
            pending.forget_csrf_token()
            keep_recovery_codes(staff, recovery, next_path)
            db.session.commit()
            return redirect(url_for("auth.recovery_codes"), code=303)
    secret = totp_secret(staff)
    return render_template(
        "auth/totp_enrol.html", form=form, error=error,
        qr_svg=_qr_svg(totp.provisioning_uri(secret, staff.login)),
        secret=_grouped(secret),
    ), 200
