"""Append to the audit trail and verify its hash chain.

Each event's hash is SHA-256 over the previous event's hash and the event's canonical content,
so changing, deleting or inserting an event breaks the chain from that point on. Writers append
in one order on every database: each append first updates the single ``audit_head`` row, which
locks it until the transaction ends (a row lock on PostgreSQL, the write lock on SQLite), and
only then reads the last hash. Event ids come from the head, so they have no gaps.

``record`` only flushes: the caller's transaction commits the event together with the change
it describes, or neither.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flask import g, has_request_context
from sqlalchemy import select, update

from app.extensions import db
from app.models.audit import GENESIS_HASH, AuditEvent, AuditHead
from app.models.base import utcnow

OUTCOMES = ("success", "rejected", "failure")


@dataclass(frozen=True)
class Actor:
    """Who acts: ``kind`` is api, doctor, staff, cli or system."""

    kind: str
    name: str = ""

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}" if self.name else self.kind


SYSTEM = Actor("system")
CLI = Actor("cli")


def canonical(event: dict[str, Any]) -> bytes:
    return json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _time_text(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def event_content(event: Any) -> dict[str, Any]:
    """The fields the hash covers (of an AuditEvent or a stored row), in a form that survives a
    database round trip."""
    return {
        "id": event.id,
        "time": _time_text(event.time),
        "actor": event.actor,
        "action": event.action,
        "target": event.target,
        "patient": event.patient,
        "outcome": event.outcome,
        "rule": event.rule,
        "request_id": event.request_id,
        "details": event.details or {},
        "prev_hash": event.prev_hash,
    }


def compute_hash(event: Any) -> str:
    return hashlib.sha256(canonical(event_content(event))).hexdigest()


def current_request_id() -> str | None:
    if has_request_context():
        value = g.get("request_id")
        return str(value) if value else None
    return None


@dataclass(frozen=True)
class Entry:
    """One event to append, for :func:`record_all`."""

    action: str
    target: str | None = None
    patient: str | None = None
    outcome: str = "success"
    rule: str | None = None
    details: dict[str, Any] | None = None


def record(
    actor: Actor | str,
    action: str,
    *,
    target: str | None = None,
    patient: str | None = None,
    outcome: str = "success",
    rule: str | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one event in the current transaction (flushed, not committed)."""
    return record_all(actor, [Entry(action, target, patient, outcome, rule, details)])[0]


def record_all(actor: Actor | str, entries: Sequence[Entry]) -> list[AuditEvent]:
    """Append ``entries`` in this order, in the current transaction (flushed, not committed).

    The head is locked and moved once for all of them: an operation that writes several events
    (a letter received and its deliveries decided) takes the lock once and sends its events in
    one INSERT, instead of four statements per event.
    """
    if not entries:
        return []
    for entry in entries:
        if entry.outcome not in OUTCOMES:
            raise ValueError(f"unknown audit outcome {entry.outcome!r}")
    session = db.session
    # Take the head's lock first, then read it: concurrent writers queue here.
    session.execute(
        update(AuditHead).where(AuditHead.id == 1).values(seq=AuditHead.seq + len(entries))
    )
    head = session.execute(
        select(AuditHead.seq, AuditHead.last_hash).where(AuditHead.id == 1)
    ).one_or_none()
    if head is None:
        raise RuntimeError("the audit head row is missing: run the migrations")
    now, request_id, previous = utcnow(), current_request_id(), head.last_hash
    events = []
    for number, entry in enumerate(entries, start=head.seq - len(entries) + 1):
        event = AuditEvent(
            id=number,
            time=now,
            actor=str(actor),
            action=entry.action,
            target=entry.target,
            patient=entry.patient,
            outcome=entry.outcome,
            rule=entry.rule,
            request_id=request_id,
            details=dict(entry.details or {}),
            prev_hash=previous,
        )
        event.hash = previous = compute_hash(event)
        events.append(event)
    session.add_all(events)
    session.execute(update(AuditHead).where(AuditHead.id == 1).values(last_hash=previous))
    session.flush()
    return events


@dataclass(frozen=True)
class ChainBreak:
    """The first place where the chain does not hold."""

    event_id: int | None
    problem: str

    def __str__(self) -> str:
        where = f"event {self.event_id}" if self.event_id is not None else "chain head"
        return f"{where}: {self.problem}"


@dataclass(frozen=True)
class _Unreadable:
    """A stored event whose columns cannot even be decoded (rewritten behind Relais' back)."""

    id: int
    error: str


def _events(batch: int = 1000) -> Iterator[Any]:
    """The stored rows, oldest first, read as plain rows.

    Plain rows, not ORM objects: the identity map could otherwise hand back an event as this
    session last saw it rather than as it is stored now (a verifier must read what is on disk),
    and the caller's session is left as it was (no ``expunge_all`` of its pending objects).
    A row that cannot be decoded (a time or JSON rewritten into garbage) comes as ``_Unreadable``
    so that it is reported by its id instead of stopping the walk with a traceback.
    """
    table = AuditEvent.__table__
    last = 0
    while True:
        query = select(table).where(table.c.id > last).order_by(table.c.id).limit(batch)
        try:
            rows: list[Any] = list(db.session.execute(query).all())
        except (ValueError, TypeError):
            rows = []
            ids = db.session.scalars(
                select(table.c.id).where(table.c.id > last).order_by(table.c.id).limit(batch)
            ).all()
            for event_id in ids:
                try:
                    one = select(table).where(table.c.id == event_id)
                    rows.append(db.session.execute(one).one())
                except (ValueError, TypeError) as error:
                    rows.append(_Unreadable(event_id, type(error).__name__))
        if not rows:
            return
        yield from rows
        last = rows[-1].id


@dataclass(frozen=True)
class Verification:
    """What one walk of the chain found: the first break (None when it holds) and the id of the
    last event it checked (0 for an empty trail)."""

    broken: ChainBreak | None
    through: int


def verify(anchor: tuple[int, str] | None = None) -> ChainBreak | None:
    """Walk the whole trail; return the first break, or None when the chain holds.

    ``anchor`` is an (id, hash) pair kept outside Relais (the DPI's copy of the feed): it proves
    that the end of the trail was not cut off or rewritten as a whole.
    """
    return check_chain(anchor).broken


def check_chain(anchor: tuple[int, str] | None = None) -> Verification:
    """:func:`verify`, also telling up to which event the walk went."""
    expected_id = 1
    prev_hash = GENESIS_HASH
    anchor_seen = anchor is None
    head = db.session.execute(
        select(AuditHead.seq, AuditHead.last_hash).where(AuditHead.id == 1)
    ).one_or_none()
    if head is None:
        return Verification(ChainBreak(None, "the head row is missing"), 0)

    def broken(event_id: int | None, problem: str, through: int) -> Verification:
        return Verification(ChainBreak(event_id, problem), through)

    for event in _events():
        if isinstance(event, _Unreadable):
            return broken(event.id, f"cannot be read ({event.error}): rewritten", event.id)
        if event.id != expected_id:
            return broken(event.id, f"expected event {expected_id} here: events are missing",
                          event.id)
        if event.prev_hash != prev_hash:
            return broken(event.id, "does not point at the previous event's hash", event.id)
        if compute_hash(event) != event.hash:
            return broken(event.id, "its content does not match its hash", event.id)
        if anchor is not None and event.id == anchor[0]:
            if event.hash != anchor[1]:
                return broken(event.id, "differs from the anchored copy", event.id)
            anchor_seen = True
        if event.id > head.seq:
            return broken(
                event.id, f"is beyond the chain head ({head.seq} events recorded): inserted",
                event.id,
            )
        if event.id == head.seq and event.hash != head.last_hash:
            return broken(event.id, "differs from the hash recorded by the chain head", event.id)
        prev_hash = event.hash
        expected_id += 1
    last = expected_id - 1
    if head.seq != last:
        return broken(
            expected_id,
            f"missing: the chain head records {head.seq} events but the trail ends at "
            f"{last} (cut off)",
            last,
        )
    if head.last_hash != prev_hash:
        return broken(None, "the head's last hash does not match the trail", last)
    if not anchor_seen:
        assert anchor is not None  # noqa: S101 - anchor_seen starts True without one
        return broken(anchor[0], "the anchored event is missing", last)
    return Verification(None, last)


#: The action of a verification's own event (by the CLI or the desk's button).
VERIFIED = "audit.verified"


def record_verification(actor: Actor | str, result: Verification,
                        anchor: tuple[int, str] | None = None) -> AuditEvent:
    """Record a walk of the chain as an event (flushed, not committed): success, or failure with
    the first break's id and reason; ``through`` is the last event checked."""
    details: dict[str, Any] = {"through": result.through}
    if anchor is not None:
        details["anchor"] = anchor[0]
    if result.broken is not None:
        details["broken_at"] = result.broken.event_id
        details["problem"] = result.broken.problem
    return record(actor, VERIFIED, target="audit:trail",
                  outcome="success" if result.broken is None else "failure", details=details)
