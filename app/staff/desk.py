"""The service desk (``/staff/desk``, role desk): find a doctor, enrol one in person for the SMS
sign-in mode, and reset, unlock, re-verify the mobile of, deactivate or reactivate an account.

Phone possession is checked the way PRODUCT.md describes: the desk sends a code to the number
the doctor gives, and types the code the doctor reads from the phone. Between the two steps the
entered data waits in this desk user's session (Flask's signed cookie: the browser cannot alter
it, and it ends with the session); the code itself is never there, only the random handle of
its attempt, which is bound in the database to the number and to this desk user.

A temporary password is shown once: it travels from the action to the printable page sealed with
the document key ring (AES-GCM), inside the session, and the page takes it out as it shows it.

Every request is one transaction. Sending an SMS is a side effect, so it happens after the
commit that stored the code (a code that reached a phone always exists); when sending fails,
the code is deleted and the failure audited in a second, compensating transaction.
"""

from __future__ import annotations

import base64
import binascii
import json
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
from app.crypto import ContentIntegrityError, Sealed
from app.dispatch.policy import DoctorState
from app.dispatch.service import key_ring
from app.extensions import db
from app.models import AuditEvent, Doctor, OneTimeCode, StaffUser
from app.models.base import contains_pattern
from app.notify.outbox import failed_count
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

bp = Blueprint("desk", __name__, url_prefix="/staff/desk")

#: Session keys of the desk, each holding one pending step.
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


def _pending(key: str) -> dict[str, Any] | None:
    value = session.get(key)
    return dict(value) if isinstance(value, dict) else None


def _without_handle(key: str) -> None:
    """Forget a pending step's code attempt, keeping what the desk typed (to start again)."""
    pending = _pending(key)
    if pending is not None:
        pending.pop("handle", None)
        session[key] = pending


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


# --- the shown-once credentials ------------------------------------------------------------


def _credentials_aad() -> bytes:
    return f"relais-desk-credentials:{_desk().id}".encode()


def _keep_credentials(doctor: Doctor, login: str, password: str, reason: str) -> None:
    payload = json.dumps({"doctor_id": doctor.id, "login": login, "password": password,
                          "reason": reason}).encode()
    sealed = key_ring().seal(payload, _credentials_aad())
    session[CREDENTIALS] = {"k": sealed.key_id,
                            "n": base64.b64encode(sealed.nonce).decode(),
                            "c": base64.b64encode(sealed.ciphertext).decode()}


def _take_credentials() -> dict[str, Any] | None:
    raw = session.pop(CREDENTIALS, None)
    if not isinstance(raw, dict):
        return None
    try:
        sealed = Sealed(str(raw["k"]), base64.b64decode(raw["n"]), base64.b64decode(raw["c"]))
        data = json.loads(key_ring().unseal(sealed, _credentials_aad()))
    except (KeyError, TypeError, ValueError, binascii.Error, ContentIntegrityError):
        return None
    return data if isinstance(data, dict) else None


def _show_credentials(doctor: Doctor, login: str, password: str, reason: str) -> BaseResponse:
    _keep_credentials(doctor, login, password, reason)
    return redirect(url_for("desk.credentials"), code=303)


@bp.get("/credentials")
@requires("desk")
def credentials() -> tuple[str, int]:
    data = _take_credentials()
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
                           failed=failed_count())


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
    messages = {name: str(ERRORS[code]) for name, code in errors.items()}
    return render_template("staff/desk/enrol.html", values=values, errors=messages,
                           id_documents=ID_DOCUMENTS, sms_failed=sms_failed), status


@bp.route("/enrol", methods=["GET", "POST"])
@requires("desk")
def enrol() -> tuple[str, int] | BaseResponse:
    """Step 1: the doctor's details, the identity document seen, and a code sent to the mobile."""
    if request.method == "GET":
        if request.args.get("new"):
            session.pop(PENDING_ENROLMENT, None)
        pending = _pending(PENDING_ENROLMENT) or {}
        return _render_enrol({name: str(pending.get(name, "")) for name in FIELDS}, {})
    typed = _enrolment_values(request.form)
    checked, errors = check_enrolment(typed)
    if errors:
        return _render_enrol(typed, errors, 422)
    try:
        doctor = doctor_for_enrolment(checked["gln"])
    except EnrolmentError as error:
        return _render_enrol(typed, {"gln": error.code}, 422)
    target = f"doctor:{checked['gln']}"
    issued = codes.issue("phone_check", checked["mobile"], staff_user_id=_desk().id,
                         doctor_id=doctor.id if doctor else None)
    session.pop(PENDING_ENROLMENT, None)
    if not _send(issued, target, "enrolment", first=True):
        return _render_enrol(typed, {}, 502, sms_failed=True)
    session[PENDING_ENROLMENT] = {**checked, "handle": issued.challenge.handle}
    return redirect(url_for("desk.enrol_verify"), code=303)


def _render_verify(pending: Mapping[str, Any], challenge: OneTimeCode, error: str | None = None,
                   status: int = 200) -> tuple[str, int]:
    return render_template(
        "staff/desk/verify.html", pending=pending, error=error,
        tries_left=max(0, codes.MAX_TRIES - challenge.tries),
        action=url_for("desk.enrol_verify"), resend=url_for("desk.enrol_resend"),
        cancel=url_for("desk.enrol", new=1), heading=_("Vérifier le mobile du médecin"),
    ), status


@bp.route("/enrol/verify", methods=["GET", "POST"])
@requires("desk")
def enrol_verify() -> tuple[str, int] | BaseResponse:
    """Step 2: the code the doctor reads from the phone; then the account, shown once."""
    pending = _pending(PENDING_ENROLMENT)
    challenge = _challenge(pending) if pending else None
    if pending is None or challenge is None:
        flash(_("Aucune vérification en cours : saisissez les données du médecin."), "info")
        _without_handle(PENDING_ENROLMENT)
        return redirect(url_for("desk.enrol"), code=303)
    if request.method == "GET":
        return _render_verify(pending, challenge)
    target = f"doctor:{pending['gln']}"
    result = codes.check(challenge, str(request.form.get("code", ""))[:32])
    _audit_check(target, result, challenge)
    if result is codes.Check.WRONG:
        db.session.commit()
        return _render_verify(pending, challenge, _("Code incorrect."), 422)
    if result is not codes.Check.OK:
        db.session.commit()
        _without_handle(PENDING_ENROLMENT)
        flash(_check_result_message(result), "error")
        return redirect(url_for("desk.enrol"), code=303)
    try:
        enrolled = enrol_sms_doctor(
            pending["gln"], pending["family_name"], pending["given_name"], pending["email"],
            pending["mobile"], current_principal().actor,
            id_document=IdDocument(pending["id_document"], pending.get("id_last4") or None),
        )
    except EnrolmentError as error:
        # Someone enrolled or deactivated this GLN meanwhile: nothing is stored, the code stays
        # unspent (the rollback), and the refusal is audited.
        db.session.rollback()
        record(current_principal().actor, "desk.enrolment_refused", target=target,
               outcome="rejected", details={"reason": error.code})
        db.session.commit()
        _without_handle(PENDING_ENROLMENT)
        flash(str(ERRORS[error.code]), "error")
        return redirect(url_for("desk.enrol"), code=303)
    db.session.commit()
    session.pop(PENDING_ENROLMENT, None)
    return _show_credentials(enrolled.doctor, enrolled.login, enrolled.temporary_password,
                             "enrolled")


def _resend(key: str, doctor_id: int | None, reason: str, verify_url: str,
            restart_url: str) -> BaseResponse:
    pending = _pending(key)
    challenge = _challenge(pending, doctor_id) if pending else None
    if pending is None or challenge is None:
        _without_handle(key)
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
        _without_handle(key)
        flash(_("Plus de renvoi possible pour cette vérification : recommencez."), "error")
        return redirect(restart_url, code=303)
    target = (target_of(_doctor_or_404(doctor_id)) if doctor_id is not None
              else f"doctor:{pending['gln']}")
    if _send(issued, target, reason, first=False):
        flash(_("Un nouveau code a été envoyé."), "info")
    else:
        flash(_("L'envoi du SMS a échoué. Réessayez dans un instant."), "error")
    return redirect(verify_url, code=303)


@bp.post("/enrol/resend")
@requires("desk")
def enrol_resend() -> BaseResponse:
    return _resend(PENDING_ENROLMENT, None, "enrolment", url_for("desk.enrol_verify"),
                   url_for("desk.enrol"))


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
    ), status


@bp.get("/doctors/<int:doctor_id>")
@requires("desk")
def doctor(doctor_id: int) -> tuple[str, int]:
    return _render_doctor(_doctor_or_404(doctor_id))


def _back(doctor: Doctor) -> BaseResponse:
    return redirect(url_for("desk.doctor", doctor_id=doctor.id), code=303)


@bp.post("/doctors/<int:doctor_id>/reset-password")
@requires("desk")
def doctor_reset_password(doctor_id: int) -> BaseResponse:
    doctor = _doctor_or_404(doctor_id)
    try:
        password = reset_password(doctor, current_principal().actor)
    except EnrolmentError as error:
        db.session.rollback()
        flash(str(ERRORS[error.code]), "error")
        return _back(doctor)
    db.session.commit()
    assert doctor.login is not None  # noqa: S101 - reset_password refuses a doctor without
    return _show_credentials(doctor, doctor.login, password, "reset")


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
    except EnrolmentError as error:
        return _render_doctor(doctor, str(ERRORS[error.code]), typed, 422)
    issued = codes.issue("phone_check", mobile, staff_user_id=_desk().id, doctor_id=doctor.id)
    session.pop(PENDING_MOBILE, None)
    if not _send(issued, target_of(doctor), "mobile_change", first=True):
        return _render_doctor(
            doctor, _("L'envoi du SMS a échoué : rien n'a été enregistré. Réessayez."), typed, 502
        )
    session[PENDING_MOBILE] = {"doctor_id": doctor.id, "mobile": mobile,
                               "handle": issued.challenge.handle}
    return redirect(url_for("desk.doctor_mobile_verify", doctor_id=doctor.id), code=303)


def _pending_mobile(doctor: Doctor) -> tuple[dict[str, Any], OneTimeCode] | None:
    pending = _pending(PENDING_MOBILE)
    if pending is None or pending.get("doctor_id") != doctor.id:
        return None
    challenge = _challenge(pending, doctor.id)
    return (pending, challenge) if challenge is not None else None


@bp.route("/doctors/<int:doctor_id>/mobile/verify", methods=["GET", "POST"])
@requires("desk")
def doctor_mobile_verify(doctor_id: int) -> tuple[str, int] | BaseResponse:
    """Change of mobile, step 2: the code read from the new phone; then the number is stored."""
    doctor = _doctor_or_404(doctor_id)
    found = _pending_mobile(doctor)
    if found is None:
        session.pop(PENDING_MOBILE, None)
        flash(_("Aucune vérification en cours : saisissez le nouveau numéro."), "info")
        return _back(doctor)
    pending, challenge = found

    def page(error: str | None = None, status: int = 200) -> tuple[str, int]:
        return render_template(
            "staff/desk/verify.html", pending=pending, doctor=doctor, error=error,
            tries_left=max(0, codes.MAX_TRIES - challenge.tries),
            action=url_for("desk.doctor_mobile_verify", doctor_id=doctor.id),
            resend=url_for("desk.doctor_mobile_resend", doctor_id=doctor.id),
            cancel=url_for("desk.doctor", doctor_id=doctor.id),
            heading=_("Vérifier le nouveau mobile"),
        ), status

    if request.method == "GET":
        return page()
    result = codes.check(challenge, str(request.form.get("code", ""))[:32])
    _audit_check(target_of(doctor), result, challenge)
    if result is codes.Check.WRONG:
        db.session.commit()
        return page(_("Code incorrect."), 422)
    if result is not codes.Check.OK:
        db.session.commit()
        session.pop(PENDING_MOBILE, None)
        flash(_check_result_message(result), "error")
        return _back(doctor)
    try:
        change_mobile(doctor, pending["mobile"], current_principal().actor)
    except EnrolmentError as error:
        db.session.rollback()
        session.pop(PENDING_MOBILE, None)
        flash(str(ERRORS[error.code]), "error")
        return _back(doctor)
    db.session.commit()
    session.pop(PENDING_MOBILE, None)
    flash(_("Le nouveau numéro de mobile est vérifié et enregistré."), "info")
    return _back(doctor)


@bp.post("/doctors/<int:doctor_id>/mobile/resend")
@requires("desk")
def doctor_mobile_resend(doctor_id: int) -> BaseResponse:
    doctor = _doctor_or_404(doctor_id)
    if (_pending(PENDING_MOBILE) or {}).get("doctor_id") != doctor.id:
        flash(_("Aucune vérification en cours : recommencez."), "info")
        return _back(doctor)
    return _resend(PENDING_MOBILE, doctor.id, "mobile_change",
                   url_for("desk.doctor_mobile_verify", doctor_id=doctor.id),
                   url_for("desk.doctor", doctor_id=doctor.id))
