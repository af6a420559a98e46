"""Enrolment in person (``/staff/desk/enrol``): step 1, the doctor's details and the identity
document seen, and a code sent to the mobile; step 2, the code the doctor reads from the phone,
then the account and its password shown once, or, for a doctor who can already receive letters,
a request for a second desk person."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import flash, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from sqlalchemy import select
from werkzeug.wrappers import Response as BaseResponse

from app.audit import record
from app.auth import codes
from app.auth.session import current_principal, requires
from app.extensions import db
from app.models import Doctor, OneTimeCode
from app.staff import approvals, duties, steps
from app.staff.approvals import ApprovalRefused
from app.staff.desk.common import (
    ALREADY_WAITING,
    DUTY_REFUSED,
    ERRORS,
    FIELDS,
    PENDING_ENROLMENT,
    audit_duty_refusal,
    bp,
    close_pending,
    desk_user,
    drop_handle,
    pending_step,
    requested,
)
from app.staff.desk.credentials import keep_credentials
from app.staff.desk.forms import CodeForm, EnrolForm, refuse
from app.staff.desk.phone_check import (
    challenge_of,
    check_code,
    check_result_message,
    resend,
    send_code,
    tries_left,
)
from app.staff.duties import DutyConflict
from app.staff.enrolment import (
    EnrolmentError,
    IdDocument,
    doctor_for_enrolment,
    enrol_sms_doctor,
)


def _render_enrol(form: EnrolForm, status: int = 200, sms_failed: bool = False
                  ) -> tuple[str, int]:
    return render_template("staff/desk/enrol.html", form=form, sms_failed=sms_failed), status


@bp.route("/enrol", methods=["GET", "POST"])
@requires("desk")
def enrol() -> tuple[str, int] | BaseResponse:
    """Step 1: the doctor's details, the identity document seen, and a code sent to the mobile."""
    if request.method == "GET":
        if request.args.get("new"):
            # Only the handle goes: a GET writes nothing (the row expires by itself).
            session.pop(PENDING_ENROLMENT, None)
        step = pending_step(steps.ENROLMENT, PENDING_ENROLMENT)
        pending = step.data if step else {}
        return _render_enrol(EnrolForm(data={name: str(pending.get(name, ""))
                                             for name in FIELDS}))
    form = EnrolForm()
    if not form.validate():
        return _render_enrol(form, 422)
    checked = form.checked
    try:
        doctor = doctor_for_enrolment(checked["gln"])
        if doctor is not None:
            duties.check(doctor, desk_user(), duties.ACCOUNT, "doctor.enrolled")
    except EnrolmentError as error:
        refuse(form.gln, str(ERRORS[error.code]))
        return _render_enrol(form, 422)
    except DutyConflict as conflict:
        audit_duty_refusal(conflict)
        db.session.commit()
        refuse(form.gln, str(DUTY_REFUSED))
        return _render_enrol(form, 422)
    target = f"doctor:{checked['gln']}"
    close_pending(pending_step(steps.ENROLMENT, PENDING_ENROLMENT), PENDING_ENROLMENT)
    issued = codes.issue("phone_check", checked["mobile"], staff_user_id=desk_user().id,
                         doctor_id=doctor.id if doctor else None)
    if not send_code(issued, target, "enrolment", first=True):
        return _render_enrol(form, 502, sms_failed=True)
    session[PENDING_ENROLMENT] = steps.open_step(
        steps.ENROLMENT, desk_user(), {**checked, "handle": issued.challenge.handle})
    db.session.commit()
    return redirect(url_for("desk.enrol_verify"), code=303)


def _render_verify(form: CodeForm, pending: Mapping[str, Any], challenge: OneTimeCode,
                   status: int = 200) -> tuple[str, int]:
    known = db.session.scalar(select(Doctor).where(Doctor.gln == pending.get("gln")))
    return render_template(
        "staff/desk/verify.html", form=form, pending=pending,
        tries_left=tries_left(challenge),
        action=url_for("desk.enrol_verify"), resend=url_for("desk.enrol_resend"),
        cancel=url_for("desk.enrol", new=1), heading=_("Vérifier le mobile du médecin"),
        needs_approval=approvals.needs_approval(known),
    ), status


def _restart_enrolment(step: steps.Step, message: str) -> BaseResponse:
    """The attempt cannot finish: keep what was typed, forget the code, start again."""
    drop_handle(step)
    db.session.commit()
    flash(message, "error")
    return redirect(url_for("desk.enrol"), code=303)


@bp.route("/enrol/verify", methods=["GET", "POST"])
@requires("desk")
def enrol_verify() -> tuple[str, int] | BaseResponse:
    """Step 2: the code the doctor reads from the phone; then the account, shown once, or, for
    a doctor who can already receive letters, a request for a second desk person."""
    step = pending_step(steps.ENROLMENT, PENDING_ENROLMENT)
    challenge = challenge_of(step.data) if step else None
    if step is None or challenge is None:
        flash(_("Aucune vérification en cours : saisissez les données du médecin."), "info")
        return redirect(url_for("desk.enrol"), code=303)
    pending = step.data
    form = CodeForm()
    if request.method == "GET":
        return _render_verify(form, pending, challenge)
    target = f"doctor:{pending['gln']}"
    result = check_code(target, challenge, str(form.code.data or ""))
    if result is codes.Check.WRONG:
        db.session.commit()
        refuse(form.code, str(_("Code incorrect.")))
        return _render_verify(form, pending, challenge, 422)
    if result is not codes.Check.OK:
        return _restart_enrolment(step, check_result_message(result))
    actor, desk = current_principal().actor, desk_user()
    doctor = db.session.scalar(select(Doctor).where(Doctor.gln == pending["gln"]))
    document = IdDocument(pending["id_document"], pending.get("id_last4") or None)
    try:
        if approvals.needs_approval(doctor):
            assert doctor is not None  # noqa: S101 - needs_approval is False without one
            change = {name: pending[name] for name in FIELDS if pending.get(name)}
            approval = approvals.request_change(doctor, approvals.ENROLMENT, change, desk)
            close_pending(step, PENDING_ENROLMENT)
            db.session.commit()
            return requested(approval)
        enrolled = enrol_sms_doctor(
            pending["gln"], pending["family_name"], pending["given_name"], pending["email"],
            pending["mobile"], actor, id_document=document,
        )
        duties.claim(enrolled.doctor, desk, duties.ACCOUNT, "doctor.enrolled")
    except EnrolmentError as error:
        # Someone enrolled or deactivated this GLN meanwhile: nothing is stored, the code stays
        # unspent (the rollback), and the refusal is audited.
        db.session.rollback()
        record(actor, "desk.enrolment_refused", target=target, outcome="rejected",
               details={"reason": error.code})
        return _restart_enrolment(step, str(ERRORS[error.code]))
    except DutyConflict as conflict:
        db.session.rollback()
        audit_duty_refusal(conflict)
        return _restart_enrolment(step, str(DUTY_REFUSED))
    except ApprovalRefused:
        db.session.rollback()
        return _restart_enrolment(step, str(ALREADY_WAITING))
    close_pending(step, PENDING_ENROLMENT)
    keep_credentials(enrolled.doctor, enrolled.login, enrolled.temporary_password, "enrolled")
    db.session.commit()
    return redirect(url_for("desk.credentials"), code=303)


@bp.post("/enrol/resend")
@requires("desk")
def enrol_resend() -> BaseResponse:
    return resend(PENDING_ENROLMENT, steps.ENROLMENT, None, "enrolment",
                  url_for("desk.enrol_verify"), url_for("desk.enrol"))
