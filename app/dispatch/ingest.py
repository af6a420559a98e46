"""Ingest: storing a document the DPI posted, and deciding each recipient's delivery.

The content is sealed under the key ring's current key, the policy decides for each recipient
(the ones named, or else the patient's consented doctors), and the arrivals are noted for the
doctors' emails in the same transaction. A request sent again gets its stored answer; the same
id with another body is a :class:`Conflict`, another client's id is :class:`Taken`. Functions
here flush; the caller commits (see :mod:`app.dispatch`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from app.audit import Actor, Entry, record_all
from app.crypto import associated_data, key_ring
from app.dispatch.documents import reaches
from app.dispatch.facts import (
    TREATING_DOCTOR,
    apply_decision,
    doctor_by_gln,
    facts_for,
    iso,
    policy_config,
    upsert_patient,
)
from app.dispatch.policy import Decision, decide
from app.dispatch.release import cancel_held, cancelled_entries
from app.dispatch.validation import DocumentIn
from app.extensions import db
from app.models import ApiClient, Consent, Delivery, Doctor, Document, DocumentContent, Patient
from app.models.base import utcnow
from app.notify.outbox import note_arrivals
from app.states import Rule


class NoRecipient(Exception):
    """No recipient given and none consented: the DPI sends the letter by post."""


class Conflict(Exception):
    """The same document_id with another body."""


class Taken(Exception):
    """The document_id is another API client's: document ids are one namespace."""


@dataclass(frozen=True)
class IngestResult:
    created: bool
    document: Document
    response: dict[str, Any]


def existing_answer(data: DocumentIn, client: ApiClient | None) -> IngestResult | None:
    """An identical earlier request gets its stored answer; another body is a conflict.

    The answer tells what became of the letter: only a client that reaches the document gets
    it. Any other finds the id taken, before any comparison, so that it cannot test guesses of
    the letter against the stored request.
    """
    document = db.session.scalar(select(Document).where(Document.document_id == data.document_id))
    if document is None:
        return None
    if client is not None and not reaches(client, document):
        raise Taken(data.document_id)
    if document.request_hash != data.request_hash:
        raise Conflict(data.document_id)
    return IngestResult(False, document, document.response)


def _consented_glns(patient: Patient) -> list[str]:
    if patient.id is None:
        return []
    return list(
        db.session.scalars(
            select(Doctor.gln)
            .join(Consent, Consent.doctor_id == Doctor.id)
            .where(
                Consent.patient_id == patient.id,
                Consent.designation == TREATING_DOCTOR,
                Consent.active,
            )
            .order_by(Doctor.gln)
        )
    )


def _delivery_answer(delivery: Delivery) -> dict[str, Any]:
    return {
        "recipient": delivery.recipient_gln,
        "status": delivery.status,
        "rule": delivery.rule,
        "reason": delivery.reason,
        "release_at": iso(delivery.release_at),
    }


def ingest(data: DocumentIn, actor: Actor, client: ApiClient | None = None) -> IngestResult:
    """Store a signed document and decide, for each recipient, whether it may be delivered.

    ``client`` is the API client posting it, who owns it from then on; None when Relais stores
    it itself (the demo data), and then only ``documents:admin`` reaches it.
    """
    replay = existing_answer(data, client)
    if replay is not None:
        return replay
    now = utcnow()
    config = policy_config()
    p = data.patient
    patient = upsert_patient(p.id, p.family_name, p.given_name, p.birth_date)
    newly_deceased = p.deceased and patient.deceased_at is None
    if newly_deceased:
        patient.deceased_at = now
    db.session.flush()

    recipients = list(data.recipients) if data.recipients else _consented_glns(patient)
    if not recipients:
        raise NoRecipient(data.document_id)

    digest = hashlib.sha256(data.content).hexdigest()
    sealed = key_ring().seal(data.content, associated_data(data.document_id))
    document = Document(
        document_id=data.document_id,
        patient=patient,
        type=data.type,
        title=data.title,
        service=data.service,
        author=data.author,
        encounter=data.encounter.value,
        signed_at=data.signed_at,
        sensitive=data.sensitive,
        third_party_data=data.third_party_data,
        category=data.category.value,
        content_type=data.content_type,
        size=len(data.content),
        sha256=digest,
        received_at=now,
        request_hash=data.request_hash,
        response={},
        api_client_id=client.id if client is not None else None,
    )
    document.content = DocumentContent(
        key_id=sealed.key_id, nonce=sealed.nonce, ciphertext=sealed.ciphertext
    )
    db.session.add(document)
    # The unique document_id is claimed here, before any audit event takes the head's lock.
    db.session.flush()

    cancelled: list[Delivery] = []
    if newly_deceased:
        cancelled = cancel_held(patient, None, Rule.PATIENT_DECEASED, now)

    deliveries: list[tuple[Delivery, Decision]] = []
    for gln in recipients:
        doctor = doctor_by_gln(gln)
        decision = decide(facts_for(document, patient, doctor), config, now)
        delivery = Delivery(document=document, recipient_gln=gln, doctor=doctor)
        apply_decision(delivery, decision, now)
        db.session.add(delivery)
        deliveries.append((delivery, decision))
    db.session.flush()
    # Same transaction: the outbox row exists exactly when the deliveries do.
    note_arrivals([d for d, _ in deliveries], now)

    response = {
        "document_id": document.document_id,
        "deliveries": [_delivery_answer(d) for d, _ in deliveries],
    }
    document.response = response

    # One append for all of the letter's events: the head's lock is taken once.
    entries: list[Entry] = []
    if newly_deceased:
        entries.append(Entry("patient.deceased", f"patient:{patient.dpi_id}", patient.dpi_id))
    entries.extend(cancelled_entries(cancelled))
    entries.append(Entry(
        "document.received", f"document:{document.document_id}", patient.dpi_id,
        details={"size": document.size, "sha256": digest, "recipients": len(recipients)},
    ))
    entries.extend(
        Entry("delivery.decided", f"document:{document.document_id}", patient.dpi_id,
              rule=decision.rule.value,
              details={"recipient": delivery.recipient_gln, "status": decision.status.value,
                       "release_at": iso(decision.release_at)})
        for delivery, decision in deliveries
    )
    record_all(actor, entries)
    db.session.flush()
    return IngestResult(True, document, response)
