"""The desk's pages: the doctor search (``/staff/desk``, through THE doctor search of
``app/dispatch/directory.py``) and one doctor's page with its account actions (reset the
password, unlock, deactivate, reactivate)."""

from __future__ import annotations

from flask import flash, redirect, render_template, url_for
from flask_babel import gettext as _
from sqlalchemy import select
from werkzeug.wrappers import Response as BaseResponse

from app.auth.lockout import is_locked, unlock
from app.auth.session import current_principal, requires, target_of
from app.dispatch.directory import find_doctors_by_words
from app.extensions import db
from app.models import AuditEvent, Doctor
from app.notify.outbox import failed_count
from app.staff import approvals, duties
from app.staff.approvals import ApprovalRefused
from app.staff.desk.common import (
    back_to,
    bp,
    desk_user,
    doctor_or_404,
    refused_on_doctor,
    requested,
)
from app.staff.desk.credentials import keep_credentials
from app.staff.desk.forms import DoctorSearchForm, MobileForm
from app.staff.duties import DutyConflict
from app.staff.enrolment import (
    EnrolmentError,
    deactivate_doctor,
    reactivate_doctor,
    reset_password,
)
from app.staff.forms import ButtonForm

#: Doctors listed for one search; one more is asked for, to say that there are others.
SEARCH_LIMIT = 50
#: The events about a doctor shown on her page.
HISTORY = 20


@bp.get("")
@requires("desk")
def index() -> str:
    query = DoctorSearchForm().query
    found = find_doctors_by_words(query, SEARCH_LIMIT + 1) if query else []
    return render_template("staff/desk/index.html", form=DoctorSearchForm(), query=query,
                           doctors=found[:SEARCH_LIMIT],
                           more=len(found) > SEARCH_LIMIT, is_locked=is_locked,
                           failed=failed_count(), waiting=approvals.open_count())


def history(doctor: Doctor) -> list[AuditEvent]:
    """The latest events about this doctor, newest first (action, time, actor, outcome)."""
    return list(db.session.scalars(
        select(AuditEvent).where(AuditEvent.target == target_of(doctor))
        .order_by(AuditEvent.id.desc()).limit(HISTORY)
    ))


def render_doctor(doctor: Doctor, mobile: MobileForm | None = None, status: int = 200
                  ) -> tuple[str, int]:
    """The doctor's page; with the form of a new mobile that was refused, if any."""
    return render_template(
        "staff/desk/doctor.html", doctor=doctor, locked=is_locked(doctor),
        history=history(doctor), mobile_form=mobile or MobileForm(formdata=None),
        action_form=ButtonForm(formdata=None), waiting=approvals.requests_for(doctor),
        needs_approval=approvals.needs_approval(doctor),
    ), status


@bp.get("/doctors/<int:doctor_id>")
@requires("desk")
def doctor(doctor_id: int) -> tuple[str, int]:
    return render_doctor(doctor_or_404(doctor_id))


@bp.post("/doctors/<int:doctor_id>/reset-password")
@requires("desk")
def doctor_reset_password(doctor_id: int) -> BaseResponse:
    doctor = doctor_or_404(doctor_id)
    desk = desk_user()
    try:
        if approvals.needs_approval(doctor):
            approval = approvals.request_change(doctor, approvals.PASSWORD_RESET, {}, desk)
            db.session.commit()
            return requested(approval)
        password = reset_password(doctor, current_principal().actor)
        duties.claim(doctor, desk, duties.ACCOUNT, "doctor.password_reset")
    except (EnrolmentError, DutyConflict, ApprovalRefused) as error:
        return refused_on_doctor(doctor, error)
    assert doctor.login is not None  # noqa: S101 - reset_password refuses a doctor without
    keep_credentials(doctor, doctor.login, password, "reset")
    db.session.commit()
    return redirect(url_for("desk.credentials"), code=303)


@bp.post("/doctors/<int:doctor_id>/unlock")
@requires("desk")
def doctor_unlock(doctor_id: int) -> BaseResponse:
    doctor = doctor_or_404(doctor_id)
    unlock(doctor, current_principal().actor)
    db.session.commit()
    flash(_("La connexion du médecin est débloquée."), "info")
    return back_to(doctor)


@bp.post("/doctors/<int:doctor_id>/deactivate")
@requires("desk")
def doctor_deactivate(doctor_id: int) -> BaseResponse:
    doctor = doctor_or_404(doctor_id)
    if deactivate_doctor(doctor, current_principal().actor):
        db.session.commit()
        flash(_("Le compte est désactivé : le médecin ne peut plus se connecter ni recevoir de "
                "documents."), "info")
    return back_to(doctor)


@bp.post("/doctors/<int:doctor_id>/reactivate")
@requires("desk")
def doctor_reactivate(doctor_id: int) -> BaseResponse:
    doctor = doctor_or_404(doctor_id)
    if reactivate_doctor(doctor, current_principal().actor):
        db.session.commit()
        flash(_("Le compte est réactivé."), "info")
    return back_to(doctor)
