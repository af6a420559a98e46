"""The API's JSON shapes (described in ``openapi.json``): metadata only, never content."""

from __future__ import annotations

from typing import Any

from app.dispatch.facts import iso
from app.models import AuditEvent, Consent, Delivery, Doctor, Document, Patient


def delivery_out(delivery: Delivery) -> dict[str, Any]:
    # A doctor may mark an opened letter unread again (status back to delivered, for the inbox);
    # for the DPI it stays read: first_read_at never goes away.
    status = delivery.status
    if status == "delivered" and delivery.first_read_at is not None:
        status = "read"
    return {
        "recipient": delivery.recipient_gln,
        "status": status,
        "rule": delivery.rule,
        "reason": delivery.reason,
        "release_at": iso(delivery.release_at),
        "decided_at": iso(delivery.decided_at),
        "delivered_at": iso(delivery.delivered_at),
        "first_read_at": iso(delivery.first_read_at),
        "cancelled_at": iso(delivery.cancelled_at),
        "retracted_at": iso(delivery.retracted_at),
        "reported_not_my_patient_at": iso(delivery.reported_not_my_patient_at),
    }


def document_out(document: Document) -> dict[str, Any]:
    return {
        "document_id": document.document_id,
        "patient_id": document.patient.dpi_id,
        "type": document.type,
        "title": document.title,
        "service": document.service,
        "author": document.author,
        "encounter": document.encounter,
        "category": document.category,
        "signed_at": iso(document.signed_at),
        "sensitive": document.sensitive,
        "third_party_data": document.third_party_data,
        "content_type": document.content_type,
        "size": document.size,
        "sha256": document.sha256,
        "received_at": iso(document.received_at),
        "retracted_at": iso(document.retracted_at),
        "retraction_reason": document.retraction_reason,
        # Set when the content was deleted at the end of its retention; metadata and hash stay.
        "purged_at": iso(document.purged_at),
        "deliveries": [delivery_out(d) for d in document.deliveries],
    }


def consent_out(consent: Consent) -> dict[str, Any]:
    return {
        "patient_id": consent.patient.dpi_id,
        "gln": consent.doctor.gln,
        "designation": consent.designation,
        "electronic_sending": consent.electronic_sending,
        "given_by": consent.given_by,
        "representative_name": consent.representative_name,
        "minor_agreement": consent.minor_agreement,
        "recorded_by": consent.recorded_by,
        "recorded_at": iso(consent.recorded_at),
        "revoked_at": iso(consent.revoked_at),
        "doctor_state": consent.doctor.state,
    }


def patient_out(patient: Patient) -> dict[str, Any]:
    return {
        "patient_id": patient.dpi_id,
        "family_name": patient.family_name,
        "given_name": patient.given_name,
        "birth_date": patient.birth_date.isoformat(),
        "deceased": patient.deceased,
        "deceased_at": iso(patient.deceased_at),
    }


def event_out(event: AuditEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "time": iso(event.time),
        "actor": event.actor,
        "action": event.action,
        "target": event.target,
        "patient": event.patient,
        "outcome": event.outcome,
        "rule": event.rule,
        "request_id": event.request_id,
        "details": event.details or {},
        "prev_hash": event.prev_hash,
        "hash": event.hash,
    }


def doctor_out(doctor: Doctor) -> dict[str, Any]:
    return {
        "gln": doctor.gln,
        "family_name": doctor.family_name,
        "given_name": doctor.given_name,
        "specialties": doctor.specialties,
        "locality": doctor.locality,
        "active": doctor.can_receive,
        "state": doctor.state,
        "sign_in_mode": doctor.sign_in_mode,
        "notifications": doctor.notification_mode != "none",
    }
