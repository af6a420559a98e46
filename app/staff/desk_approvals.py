"""The desk's approvals page (``/staff/desk/approvals``, role desk): changes to an active
doctor's sign-in that one desk person asked for and another must approve or refuse.

The rules live in ``app/staff/approvals.py``; these views parse, call them and commit once (a
refused decision is rolled back and its refusal audited in a transaction of its own).

Who receives a temporary password made by an approved change: **the approver**, once, on the
printable sheet. A hospital desk works at a counter: the doctor stands there with her identity
document, and the second person who approves comes to the counter, sees her and the document,
and hands her the sheet. So the person who asked never holds the password of an account that
could already receive letters, and approving means meeting the doctor, not clicking a list.
A mobile change hands out nothing: once approved, the number is stored.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from werkzeug.wrappers import Response as BaseResponse

from app.auth.session import current_principal, requires
from app.extensions import db
from app.models import DeskApproval, StaffUser
from app.models.base import utcnow
from app.staff import approvals, duties
from app.staff.approvals import ApprovalRefused
from app.staff.desk.common import ERRORS
from app.staff.desk.credentials import keep_credentials
from app.staff.duties import DutyConflict
from app.staff.enrolment import EnrolmentError
from app.staff.forms import ButtonForm

bp = Blueprint("desk_approvals", __name__, url_prefix="/staff/desk")

KIND_LABELS = {
    approvals.ENROLMENT: _l("Inscription (connexion par SMS) d'un médecin qui reçoit déjà des "
                            "documents"),
    approvals.PASSWORD_RESET: _l("Réinitialisation du mot de passe"),
    approvals.MOBILE_CHANGE: _l("Changement du numéro de mobile"),
}
STATE_LABELS = {
    "open": _l("En attente"),
    "approved": _l("Approuvée et appliquée"),
    "refused": _l("Refusée"),
    "withdrawn": _l("Retirée"),
    "expired": _l("Expirée sans décision"),
}
REFUSALS = {
    approvals.OWN_REQUEST: _l("Vous avez fait cette demande : un autre collaborateur du guichet "
                              "doit la décider."),
    approvals.EXPIRED: _l("Cette demande a expiré : rien n'a été changé. Recommencez si le "
                          "médecin est toujours là."),
    approvals.ALREADY_DECIDED: _l("Cette demande a déjà été décidée."),
    approvals.NOT_DESK: _l("Seul un collaborateur actif du guichet peut décider."),
    approvals.NOT_REQUESTER: _l("Seule la personne qui a fait la demande peut la retirer."),
}
DUTY_REFUSED = _l("Vous avez dirigé des documents de patients vers ce médecin (consentement "
                  "enregistré ou document envoyé) : un autre collaborateur du guichet doit "
                  "approuver ce changement.")


def state_of(approval: DeskApproval) -> str:
    if approval.decision:
        return approval.decision
    return "open" if approval.is_open(utcnow()) else "expired"


@bp.app_template_global()
def approval_labels() -> dict[str, Any]:
    return {"kinds": KIND_LABELS, "states": STATE_LABELS, "state_of": state_of}


def _me() -> StaffUser:
    return current_principal().staff


def _approval_or_404(approval_id: int) -> DeskApproval:
    approval = approvals.get_approval(approval_id)
    if approval is None:
        abort(404)
    return approval


@bp.get("/approvals")
@requires("desk")
def index() -> str:
    return render_template("staff/desk/approvals.html", waiting=approvals.open_requests(),
                           closed=approvals.closed_requests(), me=_me())


@bp.get("/approvals/<int:approval_id>")
@requires("desk")
def show(approval_id: int) -> str:
    approval = _approval_or_404(approval_id)
    return render_template("staff/desk/approval.html", approval=approval,
                           doctor=approval.doctor, change=approval.change or {},
                           state=state_of(approval), me=_me(),
                           button_form=ButtonForm(formdata=None))


def _back(approval_id: int) -> BaseResponse:
    return redirect(url_for("desk_approvals.show", approval_id=approval_id), code=303)


def _refused(approval_id: int, error: Exception) -> BaseResponse:
    """Nothing of the decision is kept; the refusal is audited, and said."""
    db.session.rollback()
    approval = _approval_or_404(approval_id)
    if isinstance(error, DutyConflict):
        duties.record_refusal(current_principal().actor, error)
        message = str(DUTY_REFUSED)
    else:
        code = error.code if isinstance(error, ApprovalRefused | EnrolmentError) else "unknown"
        approvals.record_decision_refused(_me(), approval, code)
        message = str(REFUSALS.get(code) or ERRORS.get(code) or code)
    db.session.commit()
    flash(message, "error")
    return _back(approval_id)


@bp.post("/approvals/<int:approval_id>/approve")
@requires("desk")
def approve(approval_id: int) -> BaseResponse:
    approval = _approval_or_404(approval_id)
    try:
        applied = approvals.approve(approval, _me())
    except (ApprovalRefused, DutyConflict, EnrolmentError) as error:
        return _refused(approval_id, error)
    doctor = approval.doctor
    if applied.credentials is not None:
        login, password = applied.credentials
        keep_credentials(doctor, login, password, approval.kind)
        db.session.commit()
        return redirect(url_for("desk.credentials"), code=303)
    db.session.commit()
    flash(_("Demande approuvée : le changement est fait et le médecin en est averti."), "info")
    return redirect(url_for("desk.doctor", doctor_id=doctor.id), code=303)


@bp.post("/approvals/<int:approval_id>/refuse")
@requires("desk")
def refuse(approval_id: int) -> BaseResponse:
    approval = _approval_or_404(approval_id)
    try:
        approvals.refuse(approval, _me())
    except ApprovalRefused as error:
        return _refused(approval_id, error)
    db.session.commit()
    flash(_("Demande refusée : rien n'a été changé."), "info")
    return _back(approval_id)


@bp.post("/approvals/<int:approval_id>/withdraw")
@requires("desk")
def withdraw(approval_id: int) -> BaseResponse:
    approval = _approval_or_404(approval_id)
    try:
        approvals.withdraw(approval, _me())
    except ApprovalRefused as error:
        return _refused(approval_id, error)
    db.session.commit()
    flash(_("Demande retirée : rien n'a été changé."), "info")
    return _back(approval_id)
