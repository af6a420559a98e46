"""``/auth/code`` and ``/auth/code/resend``: a doctor's second step, the code sent by SMS."""

from __future__ import annotations

from typing import Any, cast

from flask import flash, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from werkzeug.wrappers import Response as BaseResponse

from app.audit import record
from app.auth import codes
from app.auth.forms import CODE_WRONG, SIGN_IN_FAILED, ResendForm, SmsCodeForm
from app.auth.limits import sign_in_limits
from app.auth.session import actor_for, public, safe_next, target_of
from app.auth.sign_in import (
    AccountLocked,
    CodeExpired,
    CodeUsed,
    TooManyCodes,
    WrongCode,
    check_resend,
    check_sms_code,
)
from app.auth.sms import SmsError, mask_phone
from app.auth.views import pending
from app.auth.views.blueprint import bp
from app.extensions import db
from app.models import Doctor, OneTimeCode

SMS_FAILED = _l("L'envoi du SMS a échoué. Réessayez dans un instant.")


def send_code(doctor: Doctor, issued: codes.Issued) -> bool:
    """Send the code (the attempt is committed); on failure keep the attempt open for a retry."""
    challenge = issued.challenge
    body = _("Relais : votre code de connexion est %(code)s. Il est valable %(minutes)s minutes.",
             code=issued.code, minutes=int(codes.CODE_LIFETIME.total_seconds() // 60))
    try:
        codes.send(issued, body)
    except SmsError as error:
        record(actor_for(doctor), "auth.sms_failed", target=target_of(doctor), outcome="failure",
               details={"reason": error.reason, "phone": mask_phone(challenge.phone)})
        db.session.commit()
        _note_sms_failed(True)
        flash(str(SMS_FAILED), "error")
        return False
    _note_sms_failed(False)
    return True


def _note_sms_failed(failed: bool) -> None:
    """Whether the last SMS of the pending sign-in failed: the code page must not then say
    that a code was sent."""
    found = session.get("pending")
    if isinstance(found, dict) and bool(found.get("sms_failed")) != failed:
        session["pending"] = {**found, "sms_failed": failed}


def _code_page(challenge: OneTimeCode, form: SmsCodeForm, error: Any = None,
               status: int = 200) -> tuple[str, int]:
    wait = int(codes.wait_before_resend(challenge).total_seconds() + 0.999)
    found = session.get("pending")
    sms_failed = isinstance(found, dict) and bool(found.get("sms_failed"))
    return render_template(
        "auth/code.html", form=form, resend_form=ResendForm(), error=error,
        phone=mask_phone(challenge.phone), wait=wait,
        can_resend=codes.resends_left(challenge) > 0 and challenge.used_at is None,
        sms_failed=sms_failed,
    ), status


def _pending_code() -> tuple[dict[str, Any], Doctor, OneTimeCode] | BaseResponse:
    """The pending sign-in at its code step, its doctor and her code; else where to go."""
    found = pending.pending_at("code")
    if found is None:
        return pending.no_such_step()
    state, user = found
    doctor = cast(Doctor, user)
    challenge = codes.find(state.get("handle"), "sign_in")
    if challenge is None or challenge.doctor_id != doctor.id:
        return pending.restart()
    return state, doctor, challenge


@bp.route("/code", methods=["GET", "POST"])
@public
@sign_in_limits
def code() -> BaseResponse | tuple[str, int]:
    found = _pending_code()
    if isinstance(found, BaseResponse):
        return found
    state, doctor, challenge = found
    form = SmsCodeForm()
    if request.method == "GET":
        return _code_page(challenge, form)
    if not form.validate():  # too long to be a code: refused without a try
        return _code_page(challenge, form, CODE_WRONG)
    try:
        check_sms_code(doctor, challenge, form.code.data or "")
    except AccountLocked:
        return pending.restart(SIGN_IN_FAILED)
    except WrongCode as wrong:
        if wrong.now_locked:
            return pending.restart(SIGN_IN_FAILED)
        return _code_page(challenge, form, CODE_WRONG)
    except CodeExpired:
        return _code_page(challenge, form, _("Ce code a expiré. Demandez un nouveau code, ou "
                                             "recommencez la connexion."))
    except CodeUsed:
        return pending.restart(_("Ce code a déjà été utilisé. Recommencez la connexion."))
    except TooManyCodes:
        return pending.restart(_("Trop de codes incorrects. Recommencez la connexion."))
    return pending.finish(doctor, safe_next(state.get("next")), method="sms")


@bp.post("/code/resend")
@public
@sign_in_limits
def resend_code() -> BaseResponse:
    found = _pending_code()
    if isinstance(found, BaseResponse):
        return found
    _state, doctor, challenge = found
    try:
        check_resend(doctor)
    except AccountLocked:
        return pending.restart(SIGN_IN_FAILED)
    try:
        issued = codes.resend(challenge)
    except codes.ResendRefused as refused:
        db.session.rollback()
        if refused.reason == "too_early":
            seconds = int((refused.wait.total_seconds() if refused.wait else 30) + 0.999)
            flash(_("Vous pourrez demander un nouveau code dans %(seconds)s secondes.",
                    seconds=seconds), "info")
            return redirect(url_for("auth.code"), code=303)
        if refused.reason == "too_many_sends":
            return pending.restart(_("Vous avez demandé trop de codes. Recommencez la connexion."))
        return pending.restart()
    record(actor_for(doctor), "auth.code_resent", target=target_of(doctor),
           details={"phone": mask_phone(challenge.phone)})
    db.session.commit()
    if send_code(doctor, issued):
        flash(_("Un nouveau code vous a été envoyé."), "info")
    return redirect(url_for("auth.code"), code=303)
