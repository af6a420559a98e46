"""Patients for hospital staff (/staff/patients): search, the patient page, consents.

Staff find a patient by name (and birth date) or by DPI id, read the consents and the
deliveries of the patient's letters (metadata and statuses, never content), record a consent
and revoke one. Recording and revoking go through app/dispatch/consent.py, the very code of the
DPI API's ``PUT`` and ``DELETE .../consents/<gln>``: the same validation (the body is built as
the API's JSON and read by :func:`parse_consent`), the same minors' rule, the same audit events.
The consent's ``recorded_by`` is always the signed-in staff login, and the patient's stored
identity is what is passed to the service, so a consent never rewrites a name.

Opening a patient page is an access to patient data and is audited (``patient.viewed``); a
search is audited with its result count only (no names in the trail).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import contains_eager, joinedload
from werkzeug.wrappers import Response as BaseResponse

from app.audit import record
from app.auth.session import current_principal, requires
from app.dispatch.consent import record_consent, revoke_consent
from app.dispatch.facts import TREATING_DOCTOR
from app.dispatch.policy import ConsentRequirement, age_on, consent_requirement
from app.dispatch.validation import (
    BIRTH_DATE_RANGE,
    PATIENT_ID_MAX,
    ConsentIn,
    ValidationFailed,
    is_valid_id,
    parse_consent,
)
from app.extensions import db
from app.gln import is_valid_gln
from app.labels import RULE_LABELS, STATUS_LABELS, type_label
from app.models import Consent, Delivery, Doctor, Document, Patient
from app.models.base import contains_pattern, utcnow
from app.staff import duties
from app.states import DoctorState
from app.text import has_control
from app.web.origin import from_our_pages

bp = Blueprint("staff_patients", __name__, url_prefix="/staff/patients")

#: Patients shown for a search; one more is fetched to know there are more.
SEARCH_SHOWN = 50
#: Longest name search.
MAX_QUERY = 100
#: Deliveries shown at first, and added by each "more".
DELIVERIES_STEP = 50
DELIVERIES_MAX = 1000
#: Form values kept for showing them again (longer ones are refused anyway).
KEPT = 1000

_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")

CONSENT_FIELDS = ("gln", "electronic_sending", "given_by", "representative_name",
                  "minor_agreement")
IDENTITY_FIELDS = ("dpi_id", "family_name", "given_name", "birth_date")

REQUIREMENT_LABELS = {
    ConsentRequirement.REPRESENTATIVE: _l(
        "Patient de moins de 12 ans : le consentement est donné par un représentant (parent, "
        "tuteur)."),
    ConsentRequirement.REPRESENTATIVE_WITH_AGREEMENT: _l(
        "Patient de 12 à 15 ans : le consentement est donné par un représentant, avec l'accord "
        "signé du jeune."),
    ConsentRequirement.PATIENT_OR_REPRESENTATIVE: _l(
        "Patient de 16 ans ou plus : le patient consent lui-même, ou un représentant (un proche "
        "qu'il a choisi, un tuteur)."),
}
GIVEN_BY_LABELS = {
    "patient": _l("Le patient"),
    "representative": _l("Un représentant"),
}

MESSAGES = {
    "required": _l("Ce champ est obligatoire."),
    "text": _l("200 caractères au plus, sans caractères de contrôle."),
    "query": _l("100 caractères au plus, sans caractères de contrôle."),
    "date": _l("Saisissez une date au format AAAA-MM-JJ."),
    "not_a_date": _l("Cette date n'existe pas."),
    "future_birth": _l("La date de naissance est postérieure à aujourd'hui."),
    "birth_range": _l("La date de naissance doit se situer entre le 1er janvier 1880 et "
                      "aujourd'hui."),
    "dpi_id": _l("Identifiant DPI non valable : lettres, chiffres, points, tirets, deux-points "
                 "ou soulignés, 64 caractères au plus."),
    "gln": _l("Le GLN n'est pas valable : 13 chiffres, dont le dernier est la clé de "
              "contrôle GS1."),
    "electronic_sending": _l("Indiquez si l'envoi électronique est autorisé."),
    "given_by": _l("Indiquez qui donne le consentement : le patient ou un représentant."),
    "invalid": _l("Valeur non valable."),
    "duty": _l("Vous avez inscrit ce médecin au guichet ou modifié sa connexion : vous ne pouvez "
               "pas lui adresser les documents d'un patient. Demandez à un collègue "
               "d'enregistrer ce consentement."),
    # The minors' rule (policy.check_consent_giver), by the field it blames.
    "rule_under_12": _l("Un patient de moins de 12 ans ne peut pas consentir seul : un "
                        "représentant doit donner le consentement."),
    "rule_12_15": _l("Un patient de 12 à 15 ans ne peut pas consentir seul : un représentant "
                     "donne le consentement, avec l'accord signé du jeune."),
    "rule_agreement": _l("Un patient de 12 à 15 ans doit aussi signer son accord au "
                         "consentement du représentant."),
    "rule_representative": _l("Un consentement donné par un représentant doit nommer ce "
                              "représentant."),
}


@bp.app_template_global()
def staff_patient_labels() -> dict[str, Any]:
    return {"statuses": STATUS_LABELS, "rules": RULE_LABELS, "given_by": GIVEN_BY_LABELS,
            "requirements": REQUIREMENT_LABELS}


def today() -> date:
    """The day the service takes the age on when it records a consent (UTC, as it does)."""
    return utcnow().date()


def age_today(birth_date: date) -> int | None:
    day = today()
    return age_on(birth_date, day) if birth_date <= day else None


def requirement_today(birth_date: date) -> ConsentRequirement | None:
    try:
        return consent_requirement(birth_date, today())
    except ValueError:  # a birth date after today: no rule can apply
        return None


# --- search ----------------------------------------------------------------------------------


@dataclass
class PatientSearch:
    q: str = ""
    birth_date: str = ""
    dpi_id: str = ""
    errors: dict[str, str] = field(default_factory=dict)
    patients: list[Patient] = field(default_factory=list)
    more: bool = False

    @property
    def asked(self) -> bool:
        return bool(self.q or self.dpi_id or self.birth_date)


def parse_day(raw: str) -> tuple[date | None, str | None]:
    """A ``YYYY-MM-DD`` date, or the key of the message saying what is wrong."""
    if not _DATE.fullmatch(raw):
        return None, "date"
    try:
        return date.fromisoformat(raw), None
    except ValueError:
        return None, "not_a_date"


def search_patients(q: str, birth_raw: str, dpi_id: str) -> PatientSearch:
    """By exact DPI id, or by every word of ``q`` in the family or given name (any case) and
    the exact birth date when given."""
    found = PatientSearch(q=q, birth_date=birth_raw, dpi_id=dpi_id)
    if len(q) > MAX_QUERY or has_control(q):
        found.errors["q"] = str(MESSAGES["query"])
    birth: date | None = None
    if birth_raw:
        birth, problem = parse_day(birth_raw)
        if problem:
            found.errors["birth_date"] = str(MESSAGES[problem])
    if dpi_id and not is_valid_id(dpi_id, PATIENT_ID_MAX):
        found.errors["dpi_id"] = str(MESSAGES["dpi_id"])
    if found.errors or not found.asked:
        return found
    statement = select(Patient)
    if dpi_id:
        statement = statement.where(Patient.dpi_id == dpi_id)
    for word in q.lower().split()[:5]:
        pattern = contains_pattern(word)
        statement = statement.where(
            func.lower(Patient.family_name).like(pattern, escape="\\")
            | func.lower(Patient.given_name).like(pattern, escape="\\")
        )
    if birth is not None:
        statement = statement.where(Patient.birth_date == birth)
    statement = statement.order_by(Patient.family_name, Patient.given_name, Patient.birth_date,
                                   Patient.id).limit(SEARCH_SHOWN + 1)
    patients = list(db.session.scalars(statement))
    found.patients, found.more = patients[:SEARCH_SHOWN], len(patients) > SEARCH_SHOWN
    return found


@bp.get("")
@requires("staff", "desk")
def index() -> tuple[str, int]:
    args = request.args
    q, birth_date, dpi_id = ((args.get(name) or "").strip()
                             for name in ("q", "birth_date", "dpi_id"))
    if (q or birth_date or dpi_id) and not from_our_pages():
        # A search sent by another site (or a bookmark) is not run: it would put a search under
        # this person's name. The form comes back filled in, for them to run it themselves.
        unrun = PatientSearch(q=q, birth_date=birth_date, dpi_id=dpi_id)
        return render_template("staff/patients/index.html", found=unrun, confirm=True), 200
    found = search_patients(q, birth_date, dpi_id)
    if found.asked and not found.errors:
        record(current_principal().actor, "patients.searched",
               details={"results": len(found.patients), "by": "dpi_id" if found.dpi_id
                        else "name"})
        db.session.commit()
    return render_template("staff/patients/index.html", found=found), (
        422 if found.errors else 200)


# --- the patient page ------------------------------------------------------------------------


def patient_or_404(dpi_id: str) -> Patient:
    if not is_valid_id(dpi_id, PATIENT_ID_MAX):
        abort(404)
    patient: Patient | None = db.session.scalar(select(Patient).where(Patient.dpi_id == dpi_id))
    if patient is None:
        abort(404)
    return patient


def consents_of(patient: Patient) -> list[Consent]:
    """The patient's consents with their doctors (one query), the latest recorded first."""
    return list(db.session.scalars(
        select(Consent).options(joinedload(Consent.doctor))
        .where(Consent.patient_id == patient.id)
        .order_by(Consent.recorded_at.desc(), Consent.id.desc())
    ))


@dataclass(frozen=True)
class DeliveryRow:
    delivery: Delivery
    document: Document
    doctor: Doctor | None
    #: As the API reports it: a delivered letter the doctor opened is ``read``.
    status: str


def deliveries_of(patient: Patient, limit: int) -> tuple[list[DeliveryRow], bool]:
    """Every delivery of every document of the patient, the latest received first (one
    query), at most ``limit``; and whether there are more."""
    rows = db.session.scalars(
        select(Delivery)
        .join(Document, Document.id == Delivery.document_id)
        .options(contains_eager(Delivery.document), joinedload(Delivery.doctor))
        .where(Document.patient_id == patient.id)
        .order_by(Document.received_at.desc(), Document.id.desc(), Delivery.id)
        .limit(limit + 1)
    ).unique().all()
    shown = [
        DeliveryRow(d, d.document, d.doctor,
                    "read" if d.status == "delivered" and d.first_read_at else d.status)
        for d in rows[:limit]
    ]
    return shown, len(rows) > limit


def _shown_deliveries() -> int:
    raw = request.args.get("shown", "")
    if raw.isascii() and raw.isdigit():  # not "²", which int() refuses
        return max(DELIVERIES_STEP, min(int(raw), DELIVERIES_MAX))
    return DELIVERIES_STEP


def render_patient(patient: Patient, values: Mapping[str, str] | None = None,
                   errors: Mapping[str, str] | None = None, status: int = 200
                   ) -> tuple[str, int]:
    """The patient page, audited as an access to the patient's data (and committed)."""
    limit = _shown_deliveries()
    deliveries, more = deliveries_of(patient, limit)
    consents = consents_of(patient)
    record(current_principal().actor, "patient.viewed", target=f"patient:{patient.dpi_id}",
           patient=patient.dpi_id)
    db.session.commit()
    if values is None:
        gln = request.args.get("gln", "")
        values = {"gln": gln if is_valid_gln(gln) else "", "electronic_sending": "yes",
                  "given_by": "", "representative_name": "", "minor_agreement": ""}
    return render_template(
        "staff/patients/show.html", patient=patient, consents=consents, deliveries=deliveries,
        more=more, next_shown=min(limit + DELIVERIES_STEP, DELIVERIES_MAX),
        age=age_today(patient.birth_date), requirement=requirement_today(patient.birth_date),
        values=values, errors=errors or {}, type_label=type_label,
    ), status


@bp.get("/<dpi_id>")
@requires("staff", "desk")
def show(dpi_id: str) -> tuple[str, int]:
    patient = patient_or_404(dpi_id)
    if not from_our_pages():
        # Opened from another site, a mail or a bookmark: ask first, show nothing of the patient
        # and record nothing; the confirmation is a link of our own page, which records the view.
        return render_template("staff/patients/confirm.html", dpi_id=patient.dpi_id,
                               target=request.full_path.rstrip("?")), 200
    return render_patient(patient)


# --- recording a consent ---------------------------------------------------------------------


def form_values(form: Mapping[str, Any], names: tuple[str, ...]) -> dict[str, str]:
    return {name: str(form.get(name, ""))[:KEPT] for name in names}


def normalise_gln(raw: str) -> str:
    return "".join(raw.split())


def consent_body(values: Mapping[str, str], family: str, given: str, birth: str,
                 recorded_by: str) -> dict[str, Any]:
    """The form as the API's ``PUT .../consents/<gln>`` body, for :func:`parse_consent`."""
    sending: object = {"yes": True, "no": False}.get(values.get("electronic_sending", ""), "")
    body: dict[str, Any] = {
        "electronic_sending": sending,
        "designation": TREATING_DOCTOR,
        "given_by": values.get("given_by", ""),
        "minor_agreement": values.get("minor_agreement") == "yes",
        "recorded_by": recorded_by,
        "patient": {"family_name": family, "given_name": given, "birth_date": birth},
    }
    representative = values.get("representative_name", "").strip()
    if representative:
        body["representative_name"] = representative
    return body


def _field_of(api_field: str) -> str:
    return api_field.removeprefix("patient.")


def parse_errors(error: ValidationFailed) -> dict[str, str]:
    """The API's field errors of a form, in the page's language."""
    messages: dict[str, str] = {}
    for item in error.errors:
        name, text = _field_of(item["field"]), item["message"]
        if text in ("is required", "must not be blank"):
            key = "required"
        elif name == "birth_date":
            key = {"is not a real date": "not_a_date", BIRTH_DATE_RANGE: "birth_range"}.get(
                text, "date")
        elif name in ("family_name", "given_name", "representative_name"):
            key = "text"
        elif name in ("electronic_sending", "given_by"):
            key = name
        else:
            key = "invalid"
        messages.setdefault(name, str(MESSAGES[key]))
    return messages


def rule_errors(error: ValidationFailed, birth_date: date) -> dict[str, str]:
    """The minors' rule's refusal (policy.ConsentGiverError, via the service), in words."""
    messages: dict[str, str] = {}
    requirement = requirement_today(birth_date)
    for item in error.errors:
        name = _field_of(item["field"])
        if name == "given_by":
            key = ("rule_under_12" if requirement is ConsentRequirement.REPRESENTATIVE
                   else "rule_12_15")
        elif name == "minor_agreement":
            key = "rule_agreement"
        elif name == "representative_name":
            key = "rule_representative"
        elif name == "birth_date":
            key = "future_birth"
        else:
            key = "invalid"
        messages.setdefault(name, str(MESSAGES[key]))
    return messages


@dataclass(frozen=True)
class Recorded:
    consent: Consent
    #: The doctor before recording: None when Relais did not know the GLN (a pending doctor
    #: was created).
    known_state: str | None


def check_consent_form(values: Mapping[str, str], family: str, given: str, birth: str
                       ) -> tuple[str, ConsentIn | None, dict[str, str]]:
    """The GLN, the consent as the API would read it, and the field errors (nothing stored)."""
    gln = normalise_gln(values.get("gln", ""))
    errors: dict[str, str] = {}
    data: ConsentIn | None = None
    try:
        data = parse_consent(
            consent_body(values, family, given, birth, current_principal().staff.login))
    except ValidationFailed as error:
        errors.update(parse_errors(error))
    if not is_valid_gln(gln):
        errors["gln"] = str(MESSAGES["gln"])
    return gln, data, errors


def apply_consent(dpi_id: str, gln: str, data: ConsentIn) -> Recorded | dict[str, str]:
    """Record a checked consent through the service; the minors' rule's refusal as field
    errors (rolled back: nothing stored). Flushes; the caller commits."""
    actor = current_principal().actor
    known = db.session.scalar(select(Doctor.state).where(Doctor.gln == gln))
    try:
        try:
            result = record_consent(dpi_id, gln, data, actor)
            db.session.flush()
        except IntegrityError:
            # A concurrent request created the same patient, doctor or consent first: write
            # again over it, as the API does, but with the identity now stored (staff never
            # overwrite it).
            db.session.rollback()
            stored = db.session.scalar(select(Patient).where(Patient.dpi_id == dpi_id))
            if stored is not None:
                data = replace(data, family_name=stored.family_name,
                               given_name=stored.given_name, birth_date=stored.birth_date)
            result = record_consent(dpi_id, gln, data, actor)
    except ValidationFailed as error:
        db.session.rollback()
        return rule_errors(error, data.birth_date)
    # Separation of duties (app/staff/duties.py): whoever set up this doctor's account cannot
    # direct a patient's letters to it; whoever does (or creates the doctor, pending, with a
    # new GLN) can no longer set up its account. A designation without electronic sending
    # directs nothing.
    if data.electronic_sending or known is None:
        try:
            duties.claim(result.consent.doctor, current_principal().staff, duties.LETTERS,
                         "consent.recorded" if known is not None else "doctor.created_pending")
        except duties.DutyConflict as conflict:
            # Nothing of the consent is kept; the refusal is, in a transaction of its own.
            db.session.rollback()
            duties.record_refusal(actor, conflict, patient=dpi_id)
            db.session.commit()
            return {"gln": str(MESSAGES["duty"])}
    return Recorded(result.consent, known)


def _flash_recorded(recorded: Recorded) -> None:
    consent = recorded.consent
    if consent.electronic_sending:
        flash(_("Consentement enregistré pour %(name)s (GLN %(gln)s).",
                name=consent.doctor.display_name or consent.doctor.gln, gln=consent.doctor.gln),
              "success")
    else:
        flash(_("Médecin traitant désigné sans envoi électronique : aucun document ne lui sera "
                "envoyé par Relais."), "info")
    if recorded.known_state is None:
        flash(_("Aucun médecin avec ce GLN n'était connu de Relais : il a été ajouté en attente "
                "et ne recevra rien tant que son compte n'est pas activé (connexion HIN ou "
                "inscription au guichet)."), "warning")
    elif recorded.known_state != DoctorState.ACTIVE.value:
        flash(_("Le compte de ce médecin n'est pas actif : il ne recevra rien tant qu'il n'est "
                "pas activé."), "warning")


@bp.post("/<dpi_id>/consents")
@requires("staff", "desk")
def add_consent(dpi_id: str) -> tuple[str, int] | BaseResponse:
    patient = patient_or_404(dpi_id)
    values = form_values(request.form, CONSENT_FIELDS)
    gln, data, errors = check_consent_form(values, patient.family_name, patient.given_name,
                                           patient.birth_date.isoformat())
    outcome = apply_consent(patient.dpi_id, gln, data) if data and not errors else errors
    if not isinstance(outcome, Recorded):
        db.session.rollback()
        return render_patient(patient_or_404(dpi_id), values, outcome, 422)
    db.session.commit()
    _flash_recorded(outcome)
    return redirect(url_for("staff_patients.show", dpi_id=patient.dpi_id), code=303)


@bp.post("/<dpi_id>/consents/<gln>/revoke")
@requires("staff", "desk")
def revoke(dpi_id: str, gln: str) -> BaseResponse:
    patient = patient_or_404(dpi_id)
    if not is_valid_gln(gln):
        abort(404)
    consent = db.session.scalar(
        select(Consent).join(Doctor, Doctor.id == Consent.doctor_id)
        .where(Consent.patient_id == patient.id, Doctor.gln == gln,
               Consent.designation == TREATING_DOCTOR)
    )
    if consent is None:
        abort(404)
    if not consent.active:
        flash(_("Ce consentement était déjà révoqué."), "info")
        return redirect(url_for("staff_patients.show", dpi_id=patient.dpi_id), code=303)
    revoke_consent(patient.dpi_id, gln, current_principal().actor)
    db.session.commit()
    flash(_("Consentement révoqué : les documents encore retenus pour ce médecin sont annulés ; "
            "ceux déjà remis restent chez lui."), "success")
    return redirect(url_for("staff_patients.show", dpi_id=patient.dpi_id), code=303)


# --- a patient not yet known to Relais -------------------------------------------------------


def _render_new(values: Mapping[str, str], errors: Mapping[str, str], status: int = 200
                ) -> tuple[str, int]:
    return render_template("staff/patients/new.html", values=values, errors=errors), status


@bp.route("/new", methods=["GET", "POST"])
@requires("staff", "desk")
def new() -> tuple[str, int] | BaseResponse:
    """Register a patient the DPI has not sent yet, with the consent that makes it known."""
    if request.method == "GET":
        values = form_values(request.args, IDENTITY_FIELDS + CONSENT_FIELDS)
        if not is_valid_id(values["dpi_id"], PATIENT_ID_MAX):
            values["dpi_id"] = ""
        if not is_valid_gln(values["gln"]):
            values["gln"] = ""
        values["electronic_sending"] = values["electronic_sending"] or "yes"
        return _render_new(values, {})
    values = form_values(request.form, IDENTITY_FIELDS + CONSENT_FIELDS)
    dpi_id = values["dpi_id"].strip()
    errors: dict[str, str] = {}
    if not dpi_id:
        errors["dpi_id"] = str(MESSAGES["required"])
    elif not is_valid_id(dpi_id, PATIENT_ID_MAX):
        errors["dpi_id"] = str(MESSAGES["dpi_id"])
    else:
        existing = db.session.scalar(select(Patient.id).where(Patient.dpi_id == dpi_id))
        if existing is not None:
            flash(_("Ce patient est déjà connu de Relais : son identité n'a pas été modifiée. "
                    "Enregistrez le consentement depuis sa page."), "info")
            return redirect(url_for("staff_patients.show", dpi_id=dpi_id), code=303)
    family, given = values["family_name"].strip(), values["given_name"].strip()
    gln, data, consent_errors = check_consent_form(values, family, given,
                                                   values["birth_date"].strip())
    errors = {**consent_errors, **errors}
    outcome: Recorded | dict[str, str] = errors
    if data is not None and not errors:
        outcome = apply_consent(dpi_id, gln, data)
    if isinstance(outcome, Recorded):
        record(current_principal().actor, "patient.registered", target=f"patient:{dpi_id}",
               patient=dpi_id)
        db.session.commit()
        flash(_("Patient enregistré dans Relais."), "success")
        _flash_recorded(outcome)
        return redirect(url_for("staff_patients.show", dpi_id=dpi_id), code=303)
    db.session.rollback()
    return _render_new(values, outcome, 422)
