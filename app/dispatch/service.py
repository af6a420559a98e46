"""Dispatch operations: ingest, release, consent, death, retraction.

Each operation takes the acting party as an argument, works in the caller's transaction and
flushes; the caller (a view, a CLI command, the worker) commits once. Data changes come before
audit events inside an operation, so that row locks are always taken before the audit head's
lock and concurrent operations cannot deadlock on it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from flask import current_app
from sqlalchemy import delete, select, update

from app.audit import Actor, Entry, record, record_all
from app.config.policy import PolicyConfig
from app.crypto import ContentIntegrityError, Sealed, associated_data, key_ring
from app.dispatch.policy import (
    ConsentFacts,
    ConsentGiverError,
    Decision,
    DocumentFacts,
    Facts,
    RecipientFacts,
    cancellation,
    check_consent_giver,
    decide,
    decide_release,
)
from app.dispatch.validation import ConsentIn, DocumentIn, ValidationFailed
from app.extensions import db
from app.models import ApiClient, Consent, Delivery, Doctor, Document, DocumentContent, Patient
from app.models.base import utcnow
from app.notify.outbox import note_arrivals
from app.scopes import Scope
from app.states import NEEDS_A_PERSON, DoctorState, Encounter, Rule, Status

TREATING_DOCTOR = "treating_doctor"


class NoRecipient(Exception):
    """No recipient given and none consented: the DPI sends the letter by post."""


class Conflict(Exception):
    """The same document_id with another body."""


class NotFound(Exception):
    """No such document, patient or consent (or a document of another API client)."""


class Taken(Exception):
    """The document_id is another API client's: document ids are one namespace."""


def policy_config() -> PolicyConfig:
    config: PolicyConfig = current_app.config["DISPATCH_POLICY"]
    return config


# --- facts -------------------------------------------------------------------------------


def _active_consent(patient: Patient, doctor: Doctor | None) -> Consent | None:
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
    consent = _active_consent(patient, doctor)
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


def _doctor_by_gln(gln: str) -> Doctor | None:
    return db.session.scalar(select(Doctor).where(Doctor.gln == gln))


# --- ingest --------------------------------------------------------------------------------


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


def upsert_patient(dpi_id: str, family: str, given: str, birth: date) -> Patient:
    """The DPI is the source of the patient's identity: its latest names win."""
    patient = db.session.scalar(select(Patient).where(Patient.dpi_id == dpi_id))
    if patient is None:
        patient = Patient(dpi_id=dpi_id, family_name=family, given_name=given, birth_date=birth)
        db.session.add(patient)
    else:
        patient.family_name, patient.given_name, patient.birth_date = family, given, birth
    return patient


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
                Consent.electronic_sending.is_(True),
                Consent.revoked_at.is_(None),
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


def iso(value: datetime | None) -> str | None:
    """API times: ISO 8601 in UTC with its offset, the same however the value was computed."""
    return value.astimezone(UTC).isoformat() if value is not None else None


def _apply(delivery: Delivery, decision: Decision, now: datetime) -> None:
    delivery.status = decision.status.value
    delivery.rule = decision.rule.value
    delivery.reason = decision.reason
    delivery.release_at = decision.release_at
    delivery.decided_at = now
    if decision.status is Status.DELIVERED:
        delivery.delivered_at = now
    elif decision.status is Status.CANCELLED:
        delivery.cancelled_at = now


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
        cancelled = _cancel_held(patient, None, Rule.PATIENT_DECEASED, now)

    deliveries: list[tuple[Delivery, Decision]] = []
    for gln in recipients:
        doctor = _doctor_by_gln(gln)
        decision = decide(facts_for(document, patient, doctor), config, now)
        delivery = Delivery(document=document, recipient_gln=gln, doctor=doctor)
        _apply(delivery, decision, now)
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
    entries.extend(_cancelled_entries(cancelled))
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


# --- release, cancellation -----------------------------------------------------------------


def release_due(actor: Actor, now: datetime | None = None, batch: int = 200) -> tuple[int, int]:
    """Re-check and release held deliveries whose time has come: (delivered, cancelled).

    The due rows are locked (``FOR UPDATE SKIP LOCKED`` on PostgreSQL), and each change is a
    compare-and-set on ``status = 'held'``, so two workers running at once release each
    delivery exactly once.
    """
    now = now or utcnow()
    config = policy_config()
    due = db.session.scalars(
        select(Delivery)
        .where(Delivery.status == Status.HELD.value, Delivery.release_at <= now)
        .order_by(Delivery.release_at, Delivery.id)
        .limit(batch)
        .with_for_update(skip_locked=True)
    ).all()
    delivered = cancelled = 0
    changes: list[tuple[Delivery, Decision]] = []
    for delivery in due:
        document = delivery.document
        doctor = delivery.doctor or _doctor_by_gln(delivery.recipient_gln)
        decision = decide_release(facts_for(document, document.patient, doctor), config, now)
        result = db.session.execute(
            update(Delivery)
            .where(Delivery.id == delivery.id, Delivery.status == Status.HELD.value)
            .values(
                status=decision.status.value,
                rule=decision.rule.value,
                reason=decision.reason,
                decided_at=now,
                delivered_at=now if decision.status is Status.DELIVERED else None,
                cancelled_at=now if decision.status is Status.CANCELLED else None,
                doctor_id=doctor.id if doctor else None,
            )
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            continue  # another worker or a revocation got there first
        db.session.expire(delivery)
        changes.append((delivery, decision))
        if decision.status is Status.DELIVERED:
            delivered += 1
        else:
            cancelled += 1
    # Same transaction as the release (data changes before the audit head's lock).
    note_arrivals([d for d, dec in changes if dec.status is Status.DELIVERED], now)
    record_all(actor, [
        Entry("delivery.released" if decision.status is Status.DELIVERED
              else "delivery.cancelled",
              f"document:{delivery.document.document_id}", delivery.document.patient.dpi_id,
              rule=decision.rule.value,
              details={"recipient": delivery.recipient_gln, "status": decision.status.value})
        for delivery, decision in changes
    ])
    db.session.flush()
    return delivered, cancelled


def _cancel_held(
    patient: Patient, doctor: Doctor | None, event: Rule, now: datetime
) -> list[Delivery]:
    """Apply the policy's cancellation to what is still held for this patient (and doctor).

    No audit here: callers audit after all their data changes (see the module docstring).
    """
    decision = cancellation(event, policy_config())
    if decision is None:
        return []
    query = (
        select(Delivery)
        .join(Document, Document.id == Delivery.document_id)
        .where(Document.patient_id == patient.id, Delivery.status == Status.HELD.value)
        .with_for_update()
    )
    if doctor is not None:
        query = query.where(Delivery.recipient_gln == doctor.gln)
    held = db.session.scalars(query).all()
    for delivery in held:
        _apply(delivery, decision, now)
    db.session.flush()
    return list(held)


def _cancelled_entries(cancelled: Sequence[Delivery]) -> list[Entry]:
    return [
        Entry("delivery.cancelled", f"document:{delivery.document.document_id}",
              delivery.document.patient.dpi_id, rule=delivery.rule,
              details={"recipient": delivery.recipient_gln, "status": delivery.status})
        for delivery in cancelled
    ]


def _audit_cancelled(cancelled: Sequence[Delivery], actor: Actor) -> None:
    record_all(actor, _cancelled_entries(cancelled))


# --- patients and consents -----------------------------------------------------------------


def patient_by_dpi_id(dpi_id: str) -> Patient:
    patient = db.session.scalar(select(Patient).where(Patient.dpi_id == dpi_id))
    if patient is None:
        raise NotFound(dpi_id)
    return patient


def record_death(patient: Patient, actor: Actor) -> None:
    """Record the death: further dispatch is blocked and held deliveries are cancelled."""
    if patient.deceased_at is not None:
        return
    now = utcnow()
    patient.deceased_at = now
    cancelled = _cancel_held(patient, None, Rule.PATIENT_DECEASED, now)
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
    doctor = _doctor_by_gln(gln)
    doctor_created = doctor is None
    if doctor is None:
        doctor = Doctor(gln=gln, state=DoctorState.PENDING.value)
        db.session.add(doctor)
    db.session.flush()
    consent = _active_consent(patient, doctor)
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
        else _cancel_held(patient, doctor, Rule.NO_CONSENT, now)
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
    doctor = _doctor_by_gln(gln)
    consent = _active_consent(patient, doctor)
    if consent is None or doctor is None:
        raise NotFound(f"{patient_id}/{gln}")
    now = utcnow()
    if consent.revoked_at is None:
        consent.revoked_at = now
    cancelled = _cancel_held(patient, doctor, Rule.NO_CONSENT, now)
    record(
        actor, "consent.revoked", target=f"consent:{patient.dpi_id}/{gln}", patient=patient.dpi_id
    )
    _audit_cancelled(cancelled, actor)
    db.session.flush()
    return consent


# --- documents -----------------------------------------------------------------------------


def document_by_dpi_id(document_id: str) -> Document:
    """Any document, for Relais itself (the demo data); the API uses ``document_for``."""
    document = db.session.scalar(select(Document).where(Document.document_id == document_id))
    if document is None:
        raise NotFound(document_id)
    return document


def reaches(client: ApiClient, document: Document) -> bool:
    """THE ownership rule of the API: a client reaches the documents it posted; one holding
    ``documents:admin`` reaches every document."""
    return client.holds(Scope.DOCUMENTS_ADMIN) or (
        document.api_client_id is not None and document.api_client_id == client.id
    )


def document_for(client: ApiClient, document_id: str) -> Document:
    """The document with this id if ``client`` reaches it; another client's is NotFound,
    exactly as an unknown id, so that a client never learns that it exists."""
    document = db.session.scalar(select(Document).where(Document.document_id == document_id))
    if document is None or not reaches(client, document):
        raise NotFound(document_id)
    return document


def retract(document: Document, reason: str, actor: Actor) -> None:
    """Withdraw a letter sent in error: every delivery retracted, the content destroyed."""
    if document.retracted_at is not None:
        return
    now = utcnow()
    document.retracted_at = now
    document.retraction_reason = reason
    for delivery in document.deliveries:
        delivery.status = Status.RETRACTED.value
        delivery.rule = Rule.RETRACTED.value
        delivery.reason = "Withdrawn by the hospital."
        delivery.retracted_at = now
        delivery.decided_at = now
    # Nobody may open it again: the ciphertext goes; metadata and hash stay for the record.
    db.session.execute(
        delete(DocumentContent).where(DocumentContent.document_id == document.id)
    )
    db.session.flush()
    db.session.expire(document, ["content"])
    record(
        actor,
        "document.retracted",
        target=f"document:{document.document_id}",
        patient=document.patient.dpi_id,
        details={"deliveries": len(document.deliveries)},
    )


def mark_first_read(document: Document, gln: str, actor: Actor) -> Delivery | None:
    """The doctor opened the letter: ``read`` for the DPI, once; later views change nothing."""
    delivery = next((d for d in document.deliveries if d.recipient_gln == gln), None)
    if delivery is None or delivery.status != Status.DELIVERED.value:
        return delivery
    delivery.status = Status.READ.value
    delivery.first_read_at = utcnow()
    db.session.flush()
    record(
        actor,
        "delivery.read",
        target=f"document:{document.document_id}",
        patient=document.patient.dpi_id,
        details={"recipient": gln},
    )
    return delivery


def read_content(document: Document) -> bytes:
    """Decrypt and verify the content; raises ContentIntegrityError on any mismatch."""
    content = document.content
    if content is None:
        raise NotFound(document.document_id)
    sealed = Sealed(content.key_id, content.nonce, content.ciphertext)
    return key_ring().open(sealed, associated_data(document.document_id), document.sha256)


@dataclass(frozen=True)
class RotationBatch:
    changed: int
    failed: tuple[str, ...]
    last_id: int | None  # None: nothing left after the cursor


def rotate_key_batch(actor: Actor, after_id: int = 0, batch: int = 20) -> RotationBatch:
    """Re-encrypt the next documents not yet under the first key, after ``after_id``.

    The caller commits each batch, so a long rotation holds few rows and little memory; a
    document whose content fails its check is left as it is, audited, and reported.
    """
    ring = key_ring()
    rows = db.session.scalars(
        select(DocumentContent)
        .where(
            DocumentContent.key_id != ring.current_key_id,
            DocumentContent.document_id > after_id,
        )
        .order_by(DocumentContent.document_id)
        .limit(batch)
        .with_for_update(skip_locked=True)
    ).all()
    if not rows:
        return RotationBatch(0, (), None)
    changed = 0
    failed: list[str] = []
    for content in rows:
        document = content.document
        try:
            plaintext = read_content(document)
        except ContentIntegrityError:
            failed.append(document.document_id)
            continue
        sealed = ring.seal(plaintext, associated_data(document.document_id))
        content.key_id, content.nonce, content.ciphertext = (
            sealed.key_id, sealed.nonce, sealed.ciphertext,
        )
        changed += 1
    db.session.flush()
    record(
        actor,
        "documents.keys_rotated",
        outcome="success" if not failed else "failure",
        details={"documents": changed, "key_id": ring.current_key_id, "failed": failed},
    )
    return RotationBatch(changed, tuple(failed), rows[-1].document_id)



# --- the staff worklist: deliveries that need a person -------------------------------------
#
# A blocked or cancelled delivery, or one the doctor reported as "pas mon patient", waits for
# hospital staff: the letter goes by post, to the right doctor, or nowhere (with a note). Each
# operation records how it was handled on the delivery, once (a compare-and-set on
# ``handled_at IS NULL``: two people clicking at once handle it once, audited once).

#: How staff handled a delivery (the ``deliveries.handling`` column).
HANDLED_BY_POST = "post"
HANDLED_BY_OTHER_DOCTOR = "other_doctor"
HANDLED_NO_ACTION = "no_action"
HANDLED_BY_RECHECK = "rechecked"
HANDLINGS = (HANDLED_BY_POST, HANDLED_BY_OTHER_DOCTOR, HANDLED_NO_ACTION, HANDLED_BY_RECHECK)
HANDLING_NOTE_MAX = 500


class HandlingRefused(Exception):
    """The handling asked for is not possible; ``code`` says why (the view words it)."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


#: The codes of :class:`HandlingRefused`.
ALREADY_HANDLED = "already_handled"
NOT_ON_WORKLIST = "not_on_worklist"
DOCUMENT_RETRACTED = "document_retracted"
NOT_CONSENTED = "not_consented"
ALREADY_RECEIVED = "already_received"
NOTE_REQUIRED = "note_required"
NOTE_TOO_LONG = "note_too_long"
STILL_BLOCKED = "still_blocked"


def on_worklist(delivery: Delivery) -> bool:
    return (delivery.status in NEEDS_A_PERSON
            or delivery.reported_not_my_patient_at is not None)


def _check_open(delivery: Delivery) -> None:
    if not on_worklist(delivery):
        raise HandlingRefused(NOT_ON_WORKLIST)
    if delivery.handled_at is not None:
        raise HandlingRefused(ALREADY_HANDLED)


def _check_note(note: str | None, *, required: bool) -> str | None:
    note = (note or "").strip() or None
    if note is None and required:
        raise HandlingRefused(NOTE_REQUIRED)
    if note is not None and len(note) > HANDLING_NOTE_MAX:
        raise HandlingRefused(NOTE_TOO_LONG)
    return note


def _claim(delivery: Delivery, handling: str, actor: Actor, now: datetime,
           note: str | None = None, **changes: Any) -> None:
    """Mark the delivery handled, once: the compare-and-set on ``handled_at IS NULL`` (and on
    the status read, when ``changes`` alter it) loses to whoever got there first."""
    result = db.session.execute(
        update(Delivery)
        .where(Delivery.id == delivery.id, Delivery.handled_at.is_(None),
               Delivery.status == delivery.status)
        .values(handled_at=now, handled_by=actor.name, handling=handling, handling_note=note,
                **changes)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise HandlingRefused(ALREADY_HANDLED)
    db.session.expire(delivery)


def _audit_handling(actor: Actor, action: str, delivery: Delivery, rule: str | None = None,
                    **details: Any) -> None:
    # Ids and codes only: the free-text note may name people and stays on the row.
    document = delivery.document
    record(actor, action, target=f"document:{document.document_id}",
           patient=document.patient.dpi_id, rule=rule,
           details={"delivery": delivery.id, "recipient": delivery.recipient_gln, **details})


def mark_handled(delivery: Delivery, handling: str, actor: Actor,
                 note: str | None = None) -> None:
    """The hospital posted the letter (``post``) or decided nothing is to be done
    (``no_action``, a note required). A withdrawn letter is never posted."""
    if handling not in (HANDLED_BY_POST, HANDLED_NO_ACTION):
        raise ValueError(f"not a direct handling: {handling!r}")
    _check_open(delivery)
    checked = _check_note(note, required=handling == HANDLED_NO_ACTION)
    if handling == HANDLED_BY_POST and delivery.document.retracted_at is not None:
        raise HandlingRefused(DOCUMENT_RETRACTED)
    _claim(delivery, handling, actor, utcnow(), checked)
    _audit_handling(actor, "delivery.handled", delivery, handling=handling)
    db.session.flush()


def redirect_candidates(delivery: Delivery) -> list[Doctor]:
    """The doctors this patient designated and allowed electronic sending to (not revoked),
    but this delivery's recipient, by name."""
    document = delivery.document
    return list(db.session.scalars(
        select(Doctor)
        .join(Consent, Consent.doctor_id == Doctor.id)
        .where(
            Consent.patient_id == document.patient_id,
            Consent.designation == TREATING_DOCTOR,
            Consent.electronic_sending.is_(True),
            Consent.revoked_at.is_(None),
            Doctor.gln != delivery.recipient_gln,
        )
        .order_by(Doctor.family_name, Doctor.given_name, Doctor.gln)
    ))


def redirect_delivery(delivery: Delivery, gln: str, actor: Actor) -> Delivery:
    """Send the letter to another consented doctor: a new delivery decided by the same policy
    as ingest (the doctor is notified when it is delivered); this one is handled."""
    _check_open(delivery)
    document = delivery.document
    if document.retracted_at is not None:
        raise HandlingRefused(DOCUMENT_RETRACTED)
    doctor = next((d for d in redirect_candidates(delivery) if d.gln == gln), None)
    if doctor is None:
        raise HandlingRefused(NOT_CONSENTED)
    if any(d.recipient_gln == gln for d in document.deliveries):
        raise HandlingRefused(ALREADY_RECEIVED)
    now = utcnow()
    _claim(delivery, HANDLED_BY_OTHER_DOCTOR, actor, now)
    decision = decide(facts_for(document, document.patient, doctor), policy_config(), now)
    new = Delivery(document=document, recipient_gln=gln, doctor=doctor)
    _apply(new, decision, now)
    db.session.add(new)
    # The unique (document, recipient) is claimed here, before the audit head's lock.
    db.session.flush()
    note_arrivals([new], now)
    _audit_handling(actor, "delivery.redirected", delivery, to=gln, new_delivery=new.id)
    record(
        actor,
        "delivery.decided",
        target=f"document:{document.document_id}",
        patient=document.patient.dpi_id,
        rule=decision.rule.value,
        details={"recipient": gln, "status": decision.status.value,
                 "release_at": iso(decision.release_at)},
    )
    db.session.flush()
    return new


def recheck(delivery: Delivery, actor: Actor) -> Decision:
    """Run the policy again for the same recipient, now (consent recorded since, account
    activated ...). A letter that may now go is updated and handled; one still refused is left
    as it is (:class:`HandlingRefused` ``still_blocked``). A withdrawn letter is never re-sent."""
    _check_open(delivery)
    if delivery.status not in NEEDS_A_PERSON:
        raise HandlingRefused(NOT_ON_WORKLIST)
    document = delivery.document
    if document.retracted_at is not None:
        raise HandlingRefused(DOCUMENT_RETRACTED)
    now = utcnow()
    doctor = delivery.doctor or _doctor_by_gln(delivery.recipient_gln)
    decision = decide(facts_for(document, document.patient, doctor), policy_config(), now)
    if decision.status not in (Status.DELIVERED, Status.HELD):
        raise HandlingRefused(STILL_BLOCKED)
    previous = delivery.status
    _claim(
        delivery, HANDLED_BY_RECHECK, actor, now,
        status=decision.status.value, rule=decision.rule.value, reason=decision.reason,
        release_at=decision.release_at, decided_at=now, cancelled_at=None,
        delivered_at=now if decision.status is Status.DELIVERED else None,
        doctor_id=doctor.id if doctor else None,
    )
    note_arrivals([delivery], now)
    _audit_handling(actor, "delivery.rechecked", delivery, rule=decision.rule.value,
                    previous_status=previous, status=decision.status.value,
                    release_at=iso(decision.release_at))
    db.session.flush()
    return decision
