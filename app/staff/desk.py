"""The service desk (``/staff/desk``, role desk): find a doctor, enrol one in person for the SMS
sign-in mode, and reset, unlock, re-verify the mobile of, deactivate or reactivate an account.

Phone possession is checked the way PRODUCT.md describes: the desk sends a code to the number
the doctor gives, and types the code the doctor reads from the phone. Between the two steps the
entered data waits server-side (``app/staff/steps.py``: a row sealed with the key ring, bound to
this desk user); the session cookie holds only the row's random handle, and the code itself is
nowhere but in the SMS (its attempt is bound in the database to the number and to this desk
user).

A temporary password is shown once: the action stores it sealed in such a row, and the printable
page deletes the row as it shows it, so a reload, or a copy of the cookie, shows nothing.

A doctor who can already receive letters is not changed by one desk person: enrolling her,
resetting her password or giving her a new mobile becomes a request that a second desk person
approves (``app/staff/approvals.py``, pages in ``app/staff/desk_approvals.py``). And nobody sets
up the account of a doctor they directed letters to, or the reverse (``app/staff/duties.py``).

Every request is one transaction. Sending an SMS is a side effect, so it happens after the
commit that stored the code (a code that reached a phone always exists); when sending fails,
the code is deleted and the failure audited in a second, compensating transaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import selectinload
from werkzeug.wrappers import Response as BaseResponse

from app.audit import record
from app.auth import codes
from app.auth.session import current_principal, is_locked, requires, target_of, unlock
from app.auth.sms import SmsError, mask_phone
from app.extensions import db
from app.models import AuditEvent, DeskApproval, Doctor, OneTimeCode, StaffUser
from app.models.base import contains_pattern
from app.notify.outbox import failed_count
from app.staff import approvals, duties, steps
from app.staff.approvals import ApprovalRefused
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
    IdDocument,
    change_mobile,
    check_email,
    check_gln,
    check_id_document,
    check_name,
    deactivate_doctor,
    doctor_for_enrolment,
    enrol_sms_doctor,
    normalise_mobile,
    reactivate_doctor,
    reset_password,
)
from app.states import DoctorState
from app.web.origin import from_our_pages

bp = Blueprint("desk", __name__, url_prefix="/staff/desk")

#: Session keys of the desk, each holding the handle of one step kept server-side.
PENDING_ENROLMENT = "desk_enrolment"
PENDING_MOBILE = "desk_mobile_change"
CREDENTIALS = "desk_credentials"

SEARCH_LIMIT = 50
MAX_QUERY = 100

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

FIELDS = ("gln", "family_name", "given_name", "email", "mobile", "id_document", "id_last4")


@bp.app_template_global()
def desk_labels() -> dict[str, Any]:
    return {"states": STATE_LABELS, "modes": MODE_LABELS, "id_documents": ID_DOCUMENT_LABELS,
            "actions": ACTION_LABELS}


@bp.app_template_filter("masked")
def masked(number: str | None) -> str:
    return mask_phone(number) if number else "—"


# --- helpers ---------------------------------------------------------------------------------


def _desk() -> StaffUser:
    return current_principal().staff


def _doctor_or_404(doctor_id: int) -> Doctor:
    doctor = db.session.get(Doctor, doctor_id)
    if doctor is None:
        abort(404)
    return doctor


def _sms_body(code: str) -> str:
    # French: the doctor reads it aloud at the desk of a Geneva hospital.
    minutes = int(codes.CODE_LIFETIME.total_seconds() // 60)
    return (f"Relais : votre code de vérification est {code}. Valable {minutes} minutes. "
            "Ne le communiquez qu'au guichet de l'hôpital.")


def _send(issued: codes.Issued, target: str, reason: str, *, first: bool) -> bool:
    """Commit the code, then send it; audit the outcome. False when the SMS could not go out:
    a first code is then deleted (nothing of the attempt stays but the audit of the failure),
    a resent one may be resent again at once."""
    db.session.commit()
    challenge = issued.challenge
    phone = challenge.phone
    details = {"mobile": mask_phone(phone), "reason": reason, "send": challenge.sends}
    try:
        codes.send(issued, _sms_body(issued.code))  # a failed resend may be retried at once
    except SmsError as error:
        if first:
            db.session.execute(delete(OneTimeCode).where(OneTimeCode.id == challenge.id))
        record(current_principal().actor, "desk.phone_code_failed", target=target,
               outcome="failure", details={**details, "error": str(error)})
        db.session.commit()
        return False
    record(current_principal().actor, "desk.phone_code_sent", target=target, details=details)
    db.session.commit()
    return True


def _challenge(pending: Mapping[str, Any], doctor_id: int | None = None) -> OneTimeCode | None:
    """The code attempt of a pending step, if it is this desk user's, for this number."""
    challenge = codes.find(pending.get("handle"), "phone_check")
    if (
        challenge is None
        or challenge.staff_user_id != _desk().id
        or challenge.phone != pending.get("mobile")
        or (doctor_id is not None and challenge.doctor_id != doctor_id)
    ):
        return None
    return challenge


def _step(kind: str, key: str) -> steps.Step | None:
    """This desk user's step of ``kind`` named by the session's handle (read only)."""
    return steps.find_step(kind, _desk(), session.get(key))


def _drop_handle(step: steps.Step | None) -> None:
    """Forget a step's code attempt, keeping what the desk typed (to start again). Flushes."""
    if step is not None and "handle" in step.data:
        steps.update_step(step, {k: v for k, v in step.data.items() if k != "handle"})


def _close(step: steps.Step | None, key: str) -> None:
    if step is not None:
        steps.close_step(step)
    session.pop(key, None)


def _check_result_message(result: codes.Check) -> str:
    if result is codes.Check.EXPIRED:
        return str(_("Le code a expiré. Recommencez : un nouveau code sera envoyé."))
    if result is codes.Check.TOO_MANY_TRIES:
        return str(_("Trop de codes erronés. Recommencez : un nouveau code sera envoyé."))
    return str(_("Ce code n'est plus valable. Recommencez : un nouveau code sera envoyé."))


def _audit_check(target: str, result: codes.Check, challenge: OneTimeCode) -> None:
    record(
        current_principal().actor, "desk.phone_code_checked", target=target,
        outcome="success" if result is codes.Check.OK else "rejected",
        details={"result": result.value, "mobile": mask_phone(challenge.phone),
                 "tries_left": max(0, codes.MAX_TRIES - challenge.tries)},
    )


def _duty_refused(conflict: DutyConflict) -> None:
    """Audit a refusal for the separation of duties, after the act was rolled back."""
    duties.record_refusal(current_principal().actor, conflict)


def _requested(approval: DeskApproval) -> BaseResponse:
    """After a request was stored (and committed): its page, which says who must approve."""
    flash(_("Demande enregistrée : un second collaborateur du guichet doit l'approuver dans les "
            "30 minutes. Le médecin en est averti par e-mail."), "info")
    return redirect(url_for("desk_approvals.show", approval_id=approval.id), code=303)


# --- the shown-once credentials ------------------------------------------------------------


def keep_credentials(doctor: Doctor, login: str, password: str, reason: str) -> None:
    """Keep the credentials for one showing to the signed-in desk user (flushes; the caller
    commits, then redirects to :func:`credentials`)."""
    handle = steps.open_step(steps.CREDENTIALS, _desk(),
                             {"doctor_id": doctor.id, "login": login, "password": password,
                              "reason": reason}, doctor_id=doctor.id)
    session[CREDENTIALS] = handle


@bp.get("/credentials")
@requires("desk")
def credentials() -> tuple[str, int]:
    """The printable sheet, once: its row is deleted and committed before the page is built."""
    if not from_our_pages():
        # Opened from anywhere but the desk's own redirect (another site, a mail, a bookmark):
        # show nothing and spend nothing, so that no one else's link can use the sheet up.
        return render_template("staff/desk/credentials.html", shown=None), 403
    data = steps.take_step(steps.CREDENTIALS, _desk(), session.pop(CREDENTIALS, None))
    db.session.commit()
    doctor = db.session.get(Doctor, data["doctor_id"]) if data else None
    if data is None or doctor is None:
        return render_template("staff/desk/credentials.html", shown=None), 410
    login_url = str(current_app.config["PUBLIC_BASE_URL"]).rstrip("/") + "/auth/login"
    return render_template("staff/desk/credentials.html", shown=data, doctor=doctor,
                           login_url=login_url), 200


# --- search ----------------------------------------------------------------------------------


def search_doctors(query: str) -> list[Doctor]:
    """Doctors whose name, login or GLN contain every word of ``query`` (any case)."""
    words = query.lower().split()[:5]
    if not words:
        return []
    statement = select(Doctor).options(selectinload(Doctor.identities))
    for word in words:
        pattern = contains_pattern(word)
        statement = statement.where(or_(
            func.lower(Doctor.family_name).like(pattern, escape="\\"),
            func.lower(Doctor.given_name).like(pattern, escape="\\"),
            func.lower(Doctor.login).like(pattern, escape="\\"),
            Doctor.gln.like(pattern, escape="\\"),
        ))
    statement = statement.order_by(Doctor.family_name, Doctor.given_name, Doctor.id)
    return list(db.session.scalars(statement.limit(SEARCH_LIMIT + 1)))


@bp.get("")
@requires("desk")
def index() -> str:
    query = request.args.get("q", "").strip()[:MAX_QUERY]
    found = search_doctors(query) if query else []
    return render_template("staff/desk/index.html", query=query, doctors=found[:SEARCH_LIMIT],
                           more=len(found) > SEARCH_LIMIT, is_locked=is_locked,
                           failed=failed_count(), waiting=approvals.open_count())




# --- enrolment -------------------------------------------------------------------------------


def _enrolment_values(form: Mapping[str, Any]) -> dict[str, str]:
    return {name: str(form.get(name, ""))[:400] for name in FIELDS}


def check_enrolment(values: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """What the desk typed, normalised, and the error code of each wrong field."""
    checked: dict[str, str] = {}
    errors: dict[str, str] = {}
    checks = (("gln", check_gln), ("family_name", check_name), ("given_name", check_name),
              ("email", check_email), ("mobile", normalise_mobile))
    for name, check in checks:
        try:
            checked[name] = check(values.get(name, ""))
        except EnrolmentError as error:
            errors[name] = error.code
    try:
        document = check_id_document(values.get("id_document", ""), values.get("id_last4"))
    except EnrolmentError as error:
        field = "id_last4" if error.code == INVALID_ID_LAST4 else "id_document"
        errors[field] = error.code
    else:
        checked["id_document"] = document.kind
        checked["id_last4"] = document.last4 or ""
    return checked, errors


def _render_enrol(values: Mapping[str, str], errors: Mapping[str, str], status: int = 200,
                  sms_failed: bool = False) -> tuple[str, int]:
    messages = {name: str(ERRORS[code]) if code in ERRORS else code
                for name, code in errors.items()}
    return render_template("staff/desk/enrol.html", values=values, errors=messages,
                           id_documents=ID_DOCUMENTS, sms_failed=sms_failed), status


@bp.route("/enrol", methods=["GET", "POST"])
@requires("desk")
def enrol() -> tuple[str, int] | BaseResponse:
    """Step 1: the doctor's details, the identity document seen, and a code sent to the mobile."""
    if request.method == "GET":
        if request.args.get("new"):
            # Only the handle goes: a GET writes nothing (the row expires by itself).
            session.pop(PENDING_ENROLMENT, None)
        step = _step(steps.ENROLMENT, PENDING_ENROLMENT)
        pending = step.data if step else {}
        return _render_enrol({name: str(pending.get(name, "")) for name in FIELDS}, {})
    typed = _enrolment_values(request.form)
    checked, errors = check_enrolment(typed)
    if errors:
        return _render_enrol(typed, errors, 422)
    try:
        doctor = doctor_for_enrolment(checked["gln"])
        if doctor is not None:
            duties.check(doctor, _desk(), duties.ACCOUNT, "doctor.enrolled")
    except EnrolmentError as error:
        return _render_enrol(typed, {"gln": error.code}, 422)
    except DutyConflict as conflict:
        _duty_refused(conflict)
        db.session.commit()
        return _render_enrol(typed, {"gln": str(DUTY_REFUSED)}, 422)
    target = f"doctor:{checked['gln']}"
    _close(_step(steps.ENROLMENT, PENDING_ENROLMENT), PENDING_ENROLMENT)
    issued = codes.issue("phone_check", checked["mobile"], staff_user_id=_desk().id,
                         doctor_id=doctor.id if doctor else None)
    if not _send(issued, target, "enrolment", first=True):
        return _render_enrol(typed, {}, 502, sms_failed=True)
    session[PENDING_ENROLMENT] = steps.open_step(
        steps.ENROLMENT, _desk(), {**checked, "handle": issued.challenge.handle})
    db.session.commit()
    return redirect(url_for("desk.enrol_verify"), code=303)


def _render_verify(pending: Mapping[str, Any], challenge: OneTimeCode, error: str | None = None,
                   status: int = 200) -> tuple[str, int]:
    known = db.session.scalar(select(Doctor).where(Doctor.gln == pending.get("gln")))
    return render_template(
        "staff/desk/verify.html", pending=pending, error=error,
        tries_left=max(0, codes.MAX_TRIES - challenge.tries),
        action=url_for("desk.enrol_verify"), resend=url_for("desk.enrol_resend"),
        cancel=url_for("desk.enrol", new=1), heading=_("Vérifier le mobile du médecin"),
        needs_approval=approvals.needs_approval(known),
    ), status


def _restart_enrolment(step: steps.Step, message: str) -> BaseResponse:
    """The attempt cannot finish: keep what was typed, forget the code, start again."""
    _drop_handle(step)
    db.session.commit()
    flash(message, "error")
    return redirect(url_for("desk.enrol"), code=303)


@bp.route("/enrol/verify", methods=["GET", "POST"])
@requires("desk")
def enrol_verify() -> tuple[str, int] | BaseResponse:
    """Step 2: the code the doctor reads from the phone; then the account, shown once, or, for
    a doctor who can already receive letters, a request for a second desk person."""
    step = _step(steps.ENROLMENT, PENDING_ENROLMENT)
    challenge = _challenge(step.data) if step else None
    if step is None or challenge is None:
        flash(_("Aucune vérification en cours : saisissez les données du médecin."), "info")
        return redirect(url_for("desk.enrol"), code=303)
    pending = step.data
    if request.method == "GET":
        return _render_verify(pending, challenge)
    target = f"doctor:{pending['gln']}"
    result = codes.check(challenge, str(request.form.get("code", ""))[:32])
    _audit_check(target, result, challenge)
    if result is codes.Check.WRONG:
        db.session.commit()
        return _render_verify(pending, challenge, _("Code incorrect."), 422)
    if result is not codes.Check.OK:
        return _restart_enrolment(step, _check_result_message(result))
    actor, desk = current_principal().actor, _desk()
    doctor = db.session.scalar(select(Doctor).where(Doctor.gln == pending["gln"]))
    document = IdDocument(pending["id_document"], pending.get("id_last4") or None)
    try:
        if approvals.needs_approval(doctor):
            assert doctor is not None  # noqa: S101 - needs_approval is False without one
            change = {name: pending[name] for name in FIELDS if pending.get(name)}
            approval = approvals.request_change(doctor, approvals.ENROLMENT, change, desk)
            _close(step, PENDING_ENROLMENT)
            db.session.commit()
            return _requested(approval)
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
        _duty_refused(conflict)
        return _restart_enrolment(step, str(DUTY_REFUSED))
    except ApprovalRefused:
        db.session.rollback()
        return _restart_enrolment(step, str(ALREADY_WAITING))
    _close(step, PENDING_ENROLMENT)
    keep_credentials(enrolled.doctor, enrolled.login, enrolled.temporary_password, "enrolled")
    db.session.commit()
    return redirect(url_for("desk.credentials"), code=303)


def _resend(key: str, kind: str, doctor_id: int | None, reason: str, verify_url: str,
            restart_url: str) -> BaseResponse:
    step = _step(kind, key)
    challenge = _challenge(step.data, doctor_id) if step else None
    if step is None or challenge is None or (doctor_id is not None
                                             and step.doctor_id != doctor_id):
        flash(_("Aucune vérification en cours : recommencez."), "info")
        return redirect(restart_url, code=303)
    try:
        issued = codes.resend(challenge)
    except codes.ResendRefused as refused:
        db.session.rollback()
        if refused.reason == "too_early":
            seconds = int(refused.wait.total_seconds()) + 1 if refused.wait else 30
            flash(_("Attendez %(seconds)d secondes avant de renvoyer un code.", seconds=seconds),
                  "error")
            return redirect(verify_url, code=303)
        _drop_handle(step)
        db.session.commit()
        flash(_("Plus de renvoi possible pour cette vérification : recommencez."), "error")
        return redirect(restart_url, code=303)
    target = (target_of(_doctor_or_404(doctor_id)) if doctor_id is not None
              else f"doctor:{step.data['gln']}")
    if _send(issued, target, reason, first=False):
        flash(_("Un nouveau code a été envoyé."), "info")
    else:
        flash(_("L'envoi du SMS a échoué. Réessayez dans un instant."), "error")
    return redirect(verify_url, code=303)


@bp.post("/enrol/resend")
@requires("desk")
def enrol_resend() -> BaseResponse:
    return _resend(PENDING_ENROLMENT, steps.ENROLMENT, None, "enrolment",
                   url_for("desk.enrol_verify"), url_for("desk.enrol"))


# --- one doctor ------------------------------------------------------------------------------


def _history(doctor: Doctor) -> list[AuditEvent]:
    """The latest events about this doctor, newest first (action, time, actor, outcome)."""
    return list(db.session.scalars(
        select(AuditEvent).where(AuditEvent.target == target_of(doctor))
        .order_by(AuditEvent.id.desc()).limit(20)
    ))


def _render_doctor(doctor: Doctor, mobile_error: str | None = None, mobile_value: str = "",
                   status: int = 200) -> tuple[str, int]:
    return render_template(
        "staff/desk/doctor.html", doctor=doctor, locked=is_locked(doctor),
        history=_history(doctor), mobile_error=mobile_error, mobile_value=mobile_value,
        waiting=approvals.requests_for(doctor),
        needs_approval=approvals.needs_approval(doctor),
    ), status


@bp.get("/doctors/<int:doctor_id>")
@requires("desk")
def doctor(doctor_id: int) -> tuple[str, int]:
    return _render_doctor(_doctor_or_404(doctor_id))


def _back(doctor: Doctor) -> BaseResponse:
    return redirect(url_for("desk.doctor", doctor_id=doctor.id), code=303)


def _refused_on_doctor(doctor: Doctor, error: Exception) -> BaseResponse:
    """Roll back the act; audit a refusal for the separation of duties; say why."""
    db.session.rollback()
    if isinstance(error, DutyConflict):
        _duty_refused(error)
        db.session.commit()
        message = str(DUTY_REFUSED)
    elif isinstance(error, EnrolmentError):
        message = str(ERRORS[error.code])
    else:
        message = str(ALREADY_WAITING)
    flash(message, "error")
    return _back(doctor)


@bp.post("/doctors/<int:doctor_id>/reset-password")
@requires("desk")
def doctor_reset_password(doctor_id: int) -> BaseResponse:
    doctor = _doctor_or_404(doctor_id)
    desk = _desk()
    try:
        if approvals.needs_approval(doctor):
            approval = approvals.request_change(doctor, approvals.PASSWORD_RESET, {}, desk)
            db.session.commit()
            return _requested(approval)
        password = reset_password(doctor, current_principal().actor)
        duties.claim(doctor, desk, duties.ACCOUNT, "doctor.password_reset")
    except (EnrolmentError, DutyConflict, ApprovalRefused) as error:
        return _refused_on_doctor(doctor, error)
    assert doctor.login is not None  # noqa: S101 - reset_password refuses a doctor without
    keep_credentials(doctor, doctor.login, password, "reset")
    db.session.commit()
    return redirect(url_for("desk.credentials"), code=303)


@bp.post("/doctors/<int:doctor_id>/unlock")
@requires("desk")
def doctor_unlock(doctor_id: int) -> BaseResponse:
    doctor = _doctor_or_404(doctor_id)
    unlock(doctor, current_principal().actor)
    db.session.commit()
    flash(_("La connexion du médecin est débloquée."), "info")
    return _back(doctor)


@bp.post("/doctors/<int:doctor_id>/deactivate")
@requires("desk")
def doctor_deactivate(doctor_id: int) -> BaseResponse:
    doctor = _doctor_or_404(doctor_id)
    if deactivate_doctor(doctor, current_principal().actor):
        db.session.commit()
        flash(_("Le compte est désactivé : le médecin ne peut plus se connecter ni recevoir de "
                "documents."), "info")
    return _back(doctor)


@bp.post("/doctors/<int:doctor_id>/reactivate")
@requires("desk")
def doctor_reactivate(doctor_id: int) -> BaseResponse:
    doctor = _doctor_or_404(doctor_id)
    if reactivate_doctor(doctor, current_principal().actor):
        db.session.commit()
        flash(_("Le compte est réactivé."), "info")
    return _back(doctor)


@bp.post("/doctors/<int:doctor_id>/mobile")
@requires("desk")
def doctor_mobile(doctor_id: int) -> tuple[str, int] | BaseResponse:
    """Change of mobile, step 1: a code goes to the *new* number."""
    doctor = _doctor_or_404(doctor_id)
    typed = str(request.form.get("mobile", ""))[:400]
    try:
        if doctor.state == DoctorState.DEACTIVATED.value:
            raise EnrolmentError(DEACTIVATED)
        mobile = normalise_mobile(typed)
        duties.check(doctor, _desk(), duties.ACCOUNT, "doctor.mobile_changed")
    except EnrolmentError as error:
        return _render_doctor(doctor, str(ERRORS[error.code]), typed, 422)
    except DutyConflict as conflict:
        _duty_refused(conflict)
        db.session.commit()
        return _render_doctor(doctor, str(DUTY_REFUSED), typed, 422)
    _close(_step(steps.MOBILE_CHANGE, PENDING_MOBILE), PENDING_MOBILE)
    issued = codes.issue("phone_check", mobile, staff_user_id=_desk().id, doctor_id=doctor.id)
    if not _send(issued, target_of(doctor), "mobile_change", first=True):
        return _render_doctor(
            doctor, _("L'envoi du SMS a échoué : rien n'a été enregistré. Réessayez."), typed, 502
        )
    session[PENDING_MOBILE] = steps.open_step(
        steps.MOBILE_CHANGE, _desk(), {"mobile": mobile, "handle": issued.challenge.handle},
        doctor_id=doctor.id)
    db.session.commit()
    return redirect(url_for("desk.doctor_mobile_verify", doctor_id=doctor.id), code=303)


def _pending_mobile(doctor: Doctor) -> tuple[steps.Step, OneTimeCode] | None:
    step = _step(steps.MOBILE_CHANGE, PENDING_MOBILE)
    if step is None or step.doctor_id != doctor.id:
        return None
    challenge = _challenge(step.data, doctor.id)
    return (step, challenge) if challenge is not None else None


@bp.route("/doctors/<int:doctor_id>/mobile/verify", methods=["GET", "POST"])
@requires("desk")
def doctor_mobile_verify(doctor_id: int) -> tuple[str, int] | BaseResponse:
    """Change of mobile, step 2: the code read from the new phone; then the number is stored,
    or, for a doctor who can receive letters, a request for a second desk person."""
    doctor = _doctor_or_404(doctor_id)
    found = _pending_mobile(doctor)
    if found is None:
        flash(_("Aucune vérification en cours : saisissez le nouveau numéro."), "info")
        return _back(doctor)
    step, challenge = found
    pending = step.data

    def page(error: str | None = None, status: int = 200) -> tuple[str, int]:
        return render_template(
            "staff/desk/verify.html", pending=pending, doctor=doctor, error=error,
            tries_left=max(0, codes.MAX_TRIES - challenge.tries),
            action=url_for("desk.doctor_mobile_verify", doctor_id=doctor.id),
            resend=url_for("desk.doctor_mobile_resend", doctor_id=doctor.id),
            cancel=url_for("desk.doctor", doctor_id=doctor.id),
            heading=_("Vérifier le nouveau mobile"),
            needs_approval=approvals.needs_approval(doctor),
        ), status

    if request.method == "GET":
        return page()
    result = codes.check(challenge, str(request.form.get("code", ""))[:32])
    _audit_check(target_of(doctor), result, challenge)
    if result is codes.Check.WRONG:
        db.session.commit()
        return page(_("Code incorrect."), 422)
    if result is not codes.Check.OK:
        _close(step, PENDING_MOBILE)
        db.session.commit()
        flash(_check_result_message(result), "error")
        return _back(doctor)
    desk = _desk()
    try:
        if approvals.needs_approval(doctor):
            approval = approvals.request_change(doctor, approvals.MOBILE_CHANGE,
                                                {"mobile": pending["mobile"]}, desk)
            _close(step, PENDING_MOBILE)
            db.session.commit()
            return _requested(approval)
        change_mobile(doctor, pending["mobile"], current_principal().actor)
        duties.claim(doctor, desk, duties.ACCOUNT, "doctor.mobile_changed")
    except (EnrolmentError, DutyConflict, ApprovalRefused) as error:
        session.pop(PENDING_MOBILE, None)
        return _refused_on_doctor(doctor, error)
    _close(step, PENDING_MOBILE)
    db.session.commit()
    flash(_("Le nouveau numéro de mobile est vérifié et enregistré."), "info")
    return _back(doctor)


@bp.post("/doctors/<int:doctor_id>/mobile/resend")
@requires("desk")
def doctor_mobile_resend(doctor_id: int) -> BaseResponse:
    doctor = _doctor_or_404(doctor_id)
    return _resend(PENDING_MOBILE, steps.MOBILE_CHANGE, doctor.id, "mobile_change",
                   url_for("desk.doctor_mobile_verify", doctor_id=doctor.id),
                   url_for("desk.doctor", doctor_id=doctor.id))
