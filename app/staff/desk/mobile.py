"""The change of a doctor's mobile at the desk: step 1, a code goes to the *new* number; step 2,
the code read from the new phone, then the number is stored, or, for a doctor who can receive
letters, a request for a second desk person."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from werkzeug.wrappers import Response as BaseResponse

from app.auth import codes
from app.auth.session import current_principal, requires, target_of
from app.extensions import db
from app.models import Doctor, OneTimeCode
from app.staff import approvals, duties, steps
from app.staff.approvals import ApprovalRefused
from app.staff.desk.common import (
    DUTY_REFUSED,
    ERRORS,
    PENDING_MOBILE,
    audit_duty_refusal,
    back_to,
    bp,
    close_pending,
    desk_user,
    doctor_or_404,
    pending_step,
    refused_on_doctor,
    requested,
)
from app.staff.desk.forms import CodeForm, MobileForm, refuse
from app.staff.desk.pages import render_doctor
from app.staff.desk.phone_check import (
    challenge_of,
    check_code,
    check_result_message,
    resend,
    send_code,
    tries_left,
)
from app.staff.duties import DutyConflict
from app.staff.enrolment import DEACTIVATED, EnrolmentError, change_mobile
from app.states import DoctorState


@bp.post("/doctors/<int:doctor_id>/mobile")
@requires("desk")
def doctor_mobile(doctor_id: int) -> tuple[str, int] | BaseResponse:
    """Change of mobile, step 1: a code goes to the *new* number."""
    doctor = doctor_or_404(doctor_id)
    form = MobileForm()
    if doctor.state == DoctorState.DEACTIVATED.value:
        refuse(form.mobile, str(ERRORS[DEACTIVATED]))
        return render_doctor(doctor, form, 422)
    if not form.validate():
        return render_doctor(doctor, form, 422)
    mobile = form.checked["mobile"]
    try:
        duties.check(doctor, desk_user(), duties.ACCOUNT, "doctor.mobile_changed")
    except DutyConflict as conflict:
        audit_duty_refusal(conflict)
        db.session.commit()
        refuse(form.mobile, str(DUTY_REFUSED))
        return render_doctor(doctor, form, 422)
    close_pending(pending_step(steps.MOBILE_CHANGE, PENDING_MOBILE), PENDING_MOBILE)
    issued = codes.issue("phone_check", mobile, staff_user_id=desk_user().id, doctor_id=doctor.id)
    if not send_code(issued, target_of(doctor), "mobile_change", first=True):
        refuse(form.mobile, str(_("L'envoi du SMS a échoué : rien n'a été enregistré. "
                                  "Réessayez.")))
        return render_doctor(doctor, form, 502)
    session[PENDING_MOBILE] = steps.open_step(
        steps.MOBILE_CHANGE, desk_user(), {"mobile": mobile, "handle": issued.challenge.handle},
        doctor_id=doctor.id)
    db.session.commit()
    return redirect(url_for("desk.doctor_mobile_verify", doctor_id=doctor.id), code=303)


def _pending_mobile(doctor: Doctor) -> tuple[steps.Step, OneTimeCode] | None:
    step = pending_step(steps.MOBILE_CHANGE, PENDING_MOBILE)
    if step is None or step.doctor_id != doctor.id:
        return None
    challenge = challenge_of(step.data, doctor.id)
    return (step, challenge) if challenge is not None else None


@bp.route("/doctors/<int:doctor_id>/mobile/verify", methods=["GET", "POST"])
@requires("desk")
def doctor_mobile_verify(doctor_id: int) -> tuple[str, int] | BaseResponse:
    """Change of mobile, step 2: the code read from the new phone; then the number is stored,
    or, for a doctor who can receive letters, a request for a second desk person."""
    doctor = doctor_or_404(doctor_id)
    found = _pending_mobile(doctor)
    if found is None:
        flash(_("Aucune vérification en cours : saisissez le nouveau numéro."), "info")
        return back_to(doctor)
    step, challenge = found
    pending = step.data
    form = CodeForm()

    def page(status: int = 200) -> tuple[str, int]:
        return render_template(
            "staff/desk/verify.html", form=form, pending=pending, doctor=doctor,
            tries_left=tries_left(challenge),
            action=url_for("desk.doctor_mobile_verify", doctor_id=doctor.id),
            resend=url_for("desk.doctor_mobile_resend", doctor_id=doctor.id),
            cancel=url_for("desk.doctor", doctor_id=doctor.id),
            heading=_("Vérifier le nouveau mobile"),
            needs_approval=approvals.needs_approval(doctor),
        ), status

    if request.method == "GET":
        return page()
    result = check_code(target_of(doctor), challenge, str(form.code.data or ""))
    if result is codes.Check.WRONG:
        db.session.commit()
        refuse(form.code, str(_("Code incorrect.")))
        return page(422)
    if result is not codes.Check.OK:
        close_pending(step, PENDING_MOBILE)
        db.session.commit()
        flash(check_result_message(result), "error")
        return back_to(doctor)
    desk = desk_user()
    try:
        if approvals.needs_approval(doctor):
            approval = approvals.request_change(doctor, approvals.MOBILE_CHANGE,
                                                {"mobile": pending["mobile"]}, desk)
            close_pending(step, PENDING_MOBILE)
            db.session.commit()
            return requested(approval)
        change_mobile(doctor, pending["mobile"], current_principal().actor)
        duties.claim(doctor, desk, duties.ACCOUNT, "doctor.mobile_changed")
    except (EnrolmentError, DutyConflict, ApprovalRefused) as error:
        session.pop(PENDING_MOBILE, None)
        return refused_on_doctor(doctor, error)
    close_pending(step, PENDING_MOBILE)
    db.session.commit()
    flash(_("Le nouveau numéro de mobile est vérifié et enregistré."), "info")
    return back_to(doctor)


@bp.post("/doctors/<int:doctor_id>/mobile/resend")
@requires("desk")
def doctor_mobile_resend(doctor_id: int) -> BaseResponse:
    doctor = doctor_or_404(doctor_id)
    return resend(PENDING_MOBILE, steps.MOBILE_CHANGE, doctor.id, "mobile_change",
                  url_for("desk.doctor_mobile_verify", doctor_id=doctor.id),
                  url_for("desk.doctor", doctor_id=doctor.id))
