"""The desk's blueprint, its messages and labels, and the helpers its pages share: the signed-in
desk user, a doctor or 404, the steps named by the session, and the answers after a request or a
refusal."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, redirect, session, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from werkzeug.wrappers import Response as BaseResponse

from app.auth.session import current_principal
from app.auth.sms import mask_phone
from app.extensions import db
from app.models import DeskApproval, Doctor, StaffUser
from app.staff import duties, steps
from app.staff.duties import DutyConflict
from app.staff.enrolment import (
    DEACTIVATED,
    HAS_LOGIN,
    ID_DOCUMENTS,
    INVALID_EMAIL,
    INVALID_GLN,
    INVALID_ID_DOCUMENT,
    INVALID_ID_LAST4,
    INVALID_MOBILE,
    NAMES_INVALID,
    NAMES_REQUIRED,
    NO_LOGIN,
    NOT_A_MOBILE,
    EnrolmentError,
)

bp = Blueprint("desk", __name__, url_prefix="/staff/desk")

#: Session keys of the desk, each holding the handle of one step kept server-side.
PENDING_ENROLMENT = "desk_enrolment"
PENDING_MOBILE = "desk_mobile_change"
CREDENTIALS = "desk_credentials"

ERRORS = {
    INVALID_GLN: _l("Le GLN n'est pas valable : 13 chiffres, dont le dernier est la clé de "
                    "contrôle GS1."),
    NAMES_REQUIRED: _l("Ce champ est obligatoire."),
    NAMES_INVALID: _l("200 caractères au plus, sans caractères de contrôle."),
    INVALID_EMAIL: _l("L'adresse e-mail n'est pas valable."),
    INVALID_MOBILE: _l("Ce numéro de téléphone n'est pas valable. Exemples : 079 123 45 67 ou "
                       "+41 79 123 45 67."),
    NOT_A_MOBILE: _l("Ce numéro n'est pas un numéro de téléphone mobile : le code est envoyé "
                     "par SMS."),
    INVALID_ID_DOCUMENT: _l("Choisissez la pièce d'identité présentée dans la liste."),
    INVALID_ID_LAST4: _l("Les 4 derniers caractères du numéro : lettres ou chiffres, "
                         "exactement 4."),
    HAS_LOGIN: _l("Ce médecin a déjà un identifiant : réinitialisez son mot de passe depuis sa "
                  "fiche."),
    DEACTIVATED: _l("Ce compte est désactivé : réactivez-le d'abord depuis la fiche du "
                    "médecin."),
    NO_LOGIN: _l("Ce médecin n'a pas d'identifiant (mode SMS) : inscrivez-le d'abord."),
}

#: A desk person may not set up the account of a doctor they directed letters to.
DUTY_REFUSED = _l("Vous avez dirigé des documents de patients vers ce médecin (consentement "
                  "enregistré ou document envoyé) : un autre collaborateur du guichet doit "
                  "s'occuper de son compte.")
ALREADY_WAITING = _l("Une demande de ce type attend déjà l'approbation d'un second "
                     "collaborateur pour ce médecin.")

ID_DOCUMENT_LABELS = {
    "passport": _l("Passeport"),
    "identity_card": _l("Carte d'identité"),
    "residence_permit": _l("Permis de séjour"),
    "swiss_driving_licence": _l("Permis de conduire suisse"),
}
assert tuple(ID_DOCUMENT_LABELS) == ID_DOCUMENTS  # noqa: S101 - one list, labelled in full

STATE_LABELS = {
    "pending": _l("En attente (ne reçoit pas encore)"),
    "active": _l("Actif"),
    "deactivated": _l("Désactivé"),
}
MODE_LABELS = {
    "hin": _l("HIN"),
    "sms": _l("Identifiant, mot de passe et code SMS"),
    "none": _l("Aucun (jamais connecté)"),
}
ACTION_LABELS = {
    "doctor.enrolled": _l("Inscription"),
    "doctor.password_reset": _l("Mot de passe réinitialisé"),
    "doctor.mobile_changed": _l("Mobile changé"),
    "doctor.deactivated": _l("Compte désactivé"),
    "doctor.reactivated": _l("Compte réactivé"),
    "auth.unlocked": _l("Connexion débloquée"),
    "auth.locked": _l("Connexion bloquée"),
    "auth.signed_in": _l("Connexion"),
    "auth.failed": _l("Échec de connexion"),
    "desk.phone_code_sent": _l("Code envoyé par SMS"),
    "desk.phone_code_failed": _l("Échec de l'envoi du SMS"),
    "desk.phone_code_checked": _l("Code vérifié au guichet"),
    "desk.approval_requested": _l("Demande d'approbation"),
    "desk.approval_decided": _l("Décision sur une demande"),
    "desk.decision_refused": _l("Décision refusée"),
    "duty.refused": _l("Refus : séparation des tâches"),
}

#: What the desk types to enrol a doctor, in the order the page asks for it.
FIELDS = ("gln", "family_name", "given_name", "email", "mobile", "id_document", "id_last4")


@bp.app_template_global()
def desk_labels() -> dict[str, Any]:
    return {"states": STATE_LABELS, "modes": MODE_LABELS, "id_documents": ID_DOCUMENT_LABELS,
            "actions": ACTION_LABELS}


@bp.app_template_filter("masked")
def masked(number: str | None) -> str:
    return mask_phone(number) if number else "—"


def desk_user() -> StaffUser:
    """The signed-in desk user."""
    return current_principal().staff


def doctor_or_404(doctor_id: int) -> Doctor:
    doctor = db.session.get(Doctor, doctor_id)
    if doctor is None:
        abort(404)
    return doctor


def pending_step(kind: str, key: str) -> steps.Step | None:
    """This desk user's step of ``kind`` named by the session's handle (read only)."""
    return steps.find_step(kind, desk_user(), session.get(key))


def drop_handle(step: steps.Step | None) -> None:
    """Forget a step's code attempt, keeping what the desk typed (to start again). Flushes."""
    if step is not None and "handle" in step.data:
        steps.update_step(step, {k: v for k, v in step.data.items() if k != "handle"})


def close_pending(step: steps.Step | None, key: str) -> None:
    """Delete the step (if any) and forget its handle in the session."""
    if step is not None:
        steps.close_step(step)
    session.pop(key, None)


def audit_duty_refusal(conflict: DutyConflict) -> None:
    """Audit a refusal for the separation of duties, after the act was rolled back."""
    duties.record_refusal(current_principal().actor, conflict)


def requested(approval: DeskApproval) -> BaseResponse:
    """After a request was stored (and committed): its page, which says who must approve."""
    flash(_("Demande enregistrée : un second collaborateur du guichet doit l'approuver dans les "
            "30 minutes. Le médecin en est averti par e-mail."), "info")
    return redirect(url_for("desk_approvals.show", approval_id=approval.id), code=303)


def back_to(doctor: Doctor) -> BaseResponse:
    """The doctor's page, after an action on it."""
    return redirect(url_for("desk.doctor", doctor_id=doctor.id), code=303)


def refused_on_doctor(doctor: Doctor, error: Exception) -> BaseResponse:
    """Roll back the act; audit a refusal for the separation of duties; say why."""
    db.session.rollback()
    if isinstance(error, DutyConflict):
        audit_duty_refusal(error)
        db.session.commit()
        message = str(DUTY_REFUSED)
    elif isinstance(error, EnrolmentError):
        message = str(ERRORS[error.code])
    else:
        message = str(ALREADY_WAITING)
    flash(message, "error")
    return back_to(doctor)
