"""A consent as the staff's form gives it: read as the DPI API's ``PUT .../consents/<gln>``
body (the same validation, :func:`parse_consent`), its errors in the page's words, and recorded
through app/dispatch/consent.py with the minors' rule and the separation of duties."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.auth.session import current_principal
from app.dispatch.consent import record_consent
from app.dispatch.facts import TREATING_DOCTOR
from app.dispatch.policy import ConsentRequirement
from app.dispatch.validation import BIRTH_DATE_RANGE, ConsentIn, ValidationFailed, parse_consent
from app.extensions import db
from app.gln import is_valid_gln
from app.models import Consent, Doctor, Patient
from app.staff import duties
from app.staff.patients.messages import MESSAGES
from app.staff.patients.queries import requirement_today


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
