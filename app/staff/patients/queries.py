"""What the staff's patient pages read: the patient search, one patient or 404, the
patient's consents and the deliveries of the patient's letters (metadata and statuses, never
content), and the consent rule of the patient's age today."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date

from flask import abort
from sqlalchemy import func, select
from sqlalchemy.orm import contains_eager, joinedload

from app.dispatch.facts import TREATING_DOCTOR
from app.dispatch.policy import ConsentRequirement, age_on, consent_requirement
from app.dispatch.validation import PATIENT_ID_MAX, is_valid_id
from app.extensions import db
from app.models import Consent, Delivery, Doctor, Document, Patient
from app.models.base import contains_pattern, utcnow
from app.staff.patients.messages import MESSAGES
from app.text import has_control

#: Patients shown for a search; one more is fetched to know there are more.
SEARCH_SHOWN = 50
#: Longest name search.
MAX_QUERY = 100

_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


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


def patient_or_404(dpi_id: str) -> Patient:
    if not is_valid_id(dpi_id, PATIENT_ID_MAX):
        abort(404)
    patient: Patient | None = db.session.scalar(select(Patient).where(Patient.dpi_id == dpi_id))
    if patient is None:
        abort(404)
    return patient


def patient_known(dpi_id: str) -> bool:
    """Whether Relais holds a patient with this DPI id."""
    return db.session.scalar(select(Patient.id).where(Patient.dpi_id == dpi_id)) is not None


def treating_consent(patient: Patient, gln: str) -> Consent | None:
    """The patient's treating-doctor consent for the doctor with this GLN, if any."""
    return db.session.scalar(
        select(Consent).join(Doctor, Doctor.id == Consent.doctor_id)
        .where(Consent.patient_id == patient.id, Doctor.gln == gln,
               Consent.designation == TREATING_DOCTOR)
    )


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
