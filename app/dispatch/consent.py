"""Consent and death: what the DPI or the staff record about a patient, and its effect on letters.

A consent designates a treating doctor and says whether letters may go to them electronically;
revoking it, or recording the patient's death, cancels what is still held (the policy's
cancellation, :func:`app.dispatch.release.cancel_held`). Functions here flush; the caller
commits (see :mod:`app.dispatch`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from app.audit import Actor, record, record_all
from app.dispatch.facts import (
    NotFound,
    consent_of,
    doctor_by_gln,
    patient_by_dpi_id,
    upsert_patient,
)
from app.dispatch.policy import ConsentGiverError, check_consent_giver
from app.dispatch.release import cancel_held, cancelled_entries
from app.dispatch.validation import ConsentIn, ValidationFailed
from app.extensions import db
from app.models import Consent, Delivery, Doctor, Patient
from app.models.base import utcnow
from app.states import DoctorState, Rule


def _audit_cancelled(cancelled: Sequence[Delivery], actor: Actor) -> None:
    record_all(actor, cancelled_entries(cancelled))


def record_death(patient: Patient, actor: Actor) -> None:
    """Record the death: further dispatch is blocked and held deliveries are cancelled."""
    if patient.deceased_at is not None:
        return
    now = utcnow()
    patient.deceased_at = now
    cancelled = cancel_held(patient, None, Rule.PATIENT_DECEASED, now)
    record(actor, "patient.deceased", target=f"patient:{patient.dpi_id}", patient=patient.dpi_id)
    _audit_cancelled(cancelled, actor)
    db.session.flush()


@dataclass(frozen=True)
class ConsentResult:
    created: bool
    consent: Consent


def record_consent(patient_id: str, gln: str, data: ConsentIn, actor: Actor) -> ConsentResult:
    """Designate a treating doctor and record the choice on electronic sending.

    The latest write wins. ``electronic_sending: false`` is a revocation. A GLN not yet known
    creates a pending doctor, who cannot receive until activated.
    """
    now = utcnow()
    try:
        check_consent_giver(
            data.birth_date, now.date(), data.given_by, data.minor_agreement,
            data.representative_name,
        )
    except ConsentGiverError as error:
        raise ValidationFailed(
            [{"field": error.field, "message": error.message}],
            "The consent does not satisfy the rule for who may consent.",
        ) from None
    patient = upsert_patient(patient_id, data.family_name, data.given_name, data.birth_date)
    doctor = doctor_by_gln(gln)
    doctor_created = doctor is None
    if doctor is None:
        doctor = Doctor(gln=gln, state=DoctorState.PENDING.value)
        db.session.add(doctor)
    db.session.flush()
    consent = consent_of(patient, doctor)
    created = consent is None
    if consent is None:
        consent = Consent(patient=patient, doctor=doctor, designation=data.designation)
        db.session.add(consent)
    consent.electronic_sending = data.electronic_sending
    consent.given_by = data.given_by.value
    consent.representative_name = data.representative_name
    consent.minor_agreement = data.minor_agreement
    consent.recorded_by = data.recorded_by
    consent.recorded_at = now
    consent.revoked_at = None if data.electronic_sending else now
    db.session.flush()
    cancelled = (
        [] if data.electronic_sending
        else cancel_held(patient, doctor, Rule.NO_CONSENT, now)
    )
    if doctor_created:
        record(actor, "doctor.created_pending", target=f"doctor:{gln}")
    record(
        actor,
        "consent.recorded" if data.electronic_sending else "consent.revoked",
        target=f"consent:{patient.dpi_id}/{gln}",
        patient=patient.dpi_id,
        details={
            "electronic_sending": data.electronic_sending,
            "given_by": data.given_by.value,
            "minor_agreement": data.minor_agreement,
            "recorded_by": data.recorded_by,
            "created": created,
        },
    )
    _audit_cancelled(cancelled, actor)
    db.session.flush()
    return ConsentResult(created, consent)


def revoke_consent(patient_id: str, gln: str, actor: Actor) -> Consent:
    """Revoke; cancel what is still held for that doctor and patient. Delivered letters stay."""
    patient = patient_by_dpi_id(patient_id)
    doctor = doctor_by_gln(gln)
    consent = consent_of(patient, doctor)
    if consent is None or doctor is None:
        raise NotFound(f"{patient_id}/{gln}")
    now = utcnow()
    if consent.revoked_at is None:
        consent.revoked_at = now
    cancelled = cancel_held(patient, doctor, Rule.NO_CONSENT, now)
    record(
        actor, "consent.revoked", target=f"consent:{patient.dpi_id}/{gln}", patient=patient.dpi_id
    )
    _audit_cancelled(cancelled, actor)
    db.session.flush()
    return consent
