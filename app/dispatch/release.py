"""What becomes of held deliveries: released when their time has come, or cancelled.

The worker's ``release_due`` re-checks each due delivery against the policy and releases or
cancels it; ``cancel_held`` applies the policy's cancellation when the patient dies or revokes a
consent (ingest and :mod:`app.dispatch.consent` call it, and audit afterwards). Functions here
flush; the caller commits (see :mod:`app.dispatch`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, update

from app.audit import Actor, Entry, record_all
from app.dispatch.facts import apply_decision, doctor_by_gln, facts_for, policy_config
from app.dispatch.policy import Decision, cancellation, decide_release
from app.extensions import db
from app.models import Delivery, Doctor, Document, Patient
from app.models.base import utcnow
from app.notify.outbox import note_arrivals
from app.states import Rule, Status


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
        doctor = delivery.doctor or doctor_by_gln(delivery.recipient_gln)
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


def cancel_held(
    patient: Patient, doctor: Doctor | None, event: Rule, now: datetime
) -> list[Delivery]:
    """Apply the policy's cancellation to what is still held for this patient (and doctor).

    No audit here: callers audit after all their data changes (:func:`cancelled_entries`).
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
        apply_decision(delivery, decision, now)
    db.session.flush()
    return list(held)


def cancelled_entries(cancelled: Sequence[Delivery]) -> list[Entry]:
    """The audit events of the deliveries :func:`cancel_held` cancelled."""
    return [
        Entry("delivery.cancelled", f"document:{delivery.document.document_id}",
              delivery.document.patient.dpi_id, rule=delivery.rule,
              details={"recipient": delivery.recipient_gln, "status": delivery.status})
        for delivery in cancelled
    ]
