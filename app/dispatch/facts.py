"""What the dispatch operations share: the policy's facts, read from the database.

The facts of a document for one recipient (:func:`facts_for`), the policy's switches, the
lookups of a patient and a doctor, a decision written on a delivery, and the API's time format.
Functions here flush at most; the caller commits (see :mod:`app.dispatch`).
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from flask import current_app
from sqlalchemy import select

from app.config.policy import PolicyConfig
from app.dispatch.policy import ConsentFacts, Decision, DocumentFacts, Facts, RecipientFacts
from app.extensions import db
from app.models import Consent, Delivery, Doctor, Document, Patient
from app.states import DoctorState, Encounter, Status

TREATING_DOCTOR = "treating_doctor"


class NotFound(Exception):
    """No such document, patient or consent (or a document of another API client)."""


def policy_config() -> PolicyConfig:
    config: PolicyConfig = current_app.config["DISPATCH_POLICY"]
    return config


def consent_of(patient: Patient, doctor: Doctor | None) -> Consent | None:
    """The patient's treating-doctor consent for this doctor, active or not (one row at most)."""
    if doctor is None or patient.id is None:
        return None
    return db.session.scalar(
        select(Consent).where(
            Consent.patient_id == patient.id,
            Consent.doctor_id == doctor.id,
            Consent.designation == TREATING_DOCTOR,
        )
    )


def facts_for(document: Document, patient: Patient, doctor: Doctor | None) -> Facts:
    """What the policy needs to decide on this document for this recipient."""
    consent = consent_of(patient, doctor)
    return Facts(
        document=DocumentFacts(
            signed_at=document.signed_at,
            encounter=Encounter(document.encounter),
            sensitive=document.sensitive,
            third_party_data=document.third_party_data,
            category=document.category,
            service=document.service,
        ),
        recipient=RecipientFacts(state=DoctorState(doctor.state) if doctor else None),
        patient_deceased=patient.deceased,
        consent=(
            ConsentFacts(
                electronic_sending=consent.electronic_sending,
                revoked=consent.revoked_at is not None,
            )
            if consent
            else None
        ),
    )


def doctor_by_gln(gln: str) -> Doctor | None:
    return db.session.scalar(select(Doctor).where(Doctor.gln == gln))


def patient_by_dpi_id(dpi_id: str) -> Patient:
    patient = db.session.scalar(select(Patient).where(Patient.dpi_id == dpi_id))
    if patient is None:
        raise NotFound(dpi_id)
    return patient


def upsert_patient(dpi_id: str, family: str, given: str, birth: date) -> Patient:
    """The DPI is the source of the patient's identity: its latest names win."""
    patient = db.session.scalar(select(Patient).where(Patient.dpi_id == dpi_id))
    if patient is None:
        patient = Patient(dpi_id=dpi_id, family_name=family, given_name=given, birth_date=birth)
        db.session.add(patient)
    else:
        patient.family_name, patient.given_name, patient.birth_date = family, given, birth
    return patient


def apply_decision(delivery: Delivery, decision: Decision, now: datetime) -> None:
    """Write the policy's decision on a delivery (not flushed)."""
    delivery.status = decision.status.value
    delivery.rule = decision.rule.value
    delivery.reason = decision.reason
    delivery.release_at = decision.release_at
    delivery.decided_at = now
    if decision.status is Status.DELIVERED:
        delivery.delivered_at = now
    elif decision.status is Status.CANCELLED:
        delivery.cancelled_at = now


def iso(value: datetime | None) -> str | None:
    """API times: ISO 8601 in UTC with its offset, the same however the value was computed."""
    return value.astimezone(UTC).isoformat() if value is not None else None
