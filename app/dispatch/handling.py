"""The staff worklist's handling: deliveries that need a person.

A blocked or cancelled delivery, or one the doctor reported as "pas mon patient", waits for
hospital staff: the letter goes by post, to the right doctor, or nowhere (with a note), or the
policy is run again. Each operation records how it was handled on the delivery, once (a
compare-and-set on ``handled_at IS NULL``: two people clicking at once handle it once, audited
once). Functions here flush; the caller commits (see :mod:`app.dispatch`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update

from app.audit import Actor, record
from app.dispatch.facts import (
    TREATING_DOCTOR,
    apply_decision,
    doctor_by_gln,
    facts_for,
    iso,
    policy_config,
)
from app.dispatch.policy import Decision, decide
from app.extensions import db
from app.models import Consent, Delivery, Doctor
from app.models.base import utcnow
from app.notify.outbox import note_arrivals
from app.states import NEEDS_A_PERSON, Status

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
            Consent.active,
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
    apply_decision(new, decision, now)
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
    doctor = delivery.doctor or doctor_by_gln(delivery.recipient_gln)
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
