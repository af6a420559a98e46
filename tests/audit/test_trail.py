"""The audit trail's hash chain: how events are appended, and what ``verify`` finds."""

from __future__ import annotations

import itertools
import json
import threading
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import event as sa_event
from sqlalchemy import func, select, text

from app.audit import CLI, Actor, Entry, record, record_all, verify
from app.audit.trail import compute_hash
from app.extensions import db
from app.models import AuditEvent, AuditHead
from app.models.audit import GENESIS_HASH
from tests.conftest import Api, document_body


def _events() -> list[AuditEvent]:
    db.session.expire_all()
    return list(db.session.scalars(select(AuditEvent).order_by(AuditEvent.id)))


def _record_n(n: int) -> list[AuditEvent]:
    for i in range(n):
        record(Actor("staff", f"user{i}"), "test.event", target=f"thing:{i}",
               patient="P-1", details={"n": i, "text": "é <b>"})
    db.session.commit()
    return _events()


def _set_json(column: str, event_id: int, value: dict[str, Any]) -> None:
    cast = "CAST(:v AS JSON)" if db.engine.dialect.name == "postgresql" else ":v"
    db.session.execute(
        text(f"UPDATE audit_events SET {column} = {cast} WHERE id = :id"),  # noqa: S608
        {"v": json.dumps(value), "id": event_id},
    )
    db.session.commit()


_INSERT = (
    "INSERT INTO audit_events (id, time, actor, action, target, patient, outcome, rule,"
    " request_id, details, prev_hash, hash) VALUES (:id, :time, :actor, :action, :target,"
    " :patient, :outcome, :rule, :request_id, DETAILS, :prev_hash, :hash)"
)


def _insert_raw(values: dict[str, Any]) -> None:
    cast = "CAST(:details AS JSON)" if db.engine.dialect.name == "postgresql" else ":details"
    db.session.execute(text(_INSERT.replace("DETAILS", cast)), values)
    db.session.commit()


def _forged(event_id: int, prev_hash: str, like: AuditEvent) -> dict[str, Any]:
    """A plausible event: right shape, right prev_hash, a hash that matches its own content."""
    forged = AuditEvent(
        id=event_id, time=like.time, actor="staff:mallory", action="consent.recorded",
        target=like.target, patient=like.patient, outcome="success", rule=None,
        request_id=None, details={"forged": True}, prev_hash=prev_hash,
    )
    forged.hash = compute_hash(forged)
    stored_time = like.time
    if db.engine.dialect.name == "sqlite":
        stored_time = like.time.replace(tzinfo=None)
    return {
        "id": forged.id, "time": stored_time, "actor": forged.actor, "action": forged.action,
        "target": forged.target, "patient": forged.patient, "outcome": forged.outcome,
        "rule": None, "request_id": None, "details": json.dumps(forged.details),
        "prev_hash": forged.prev_hash, "hash": forged.hash,
    }


# --- appending -----------------------------------------------------------------------------


def test_record_chains_events(app: Flask) -> None:
    events = _record_n(5)
    assert [e.id for e in events] == [1, 2, 3, 4, 5]
    assert events[0].prev_hash == GENESIS_HASH
    for before, after in itertools.pairwise(events):
        assert after.prev_hash == before.hash
    for event in events:
        assert len(event.hash) == 64
        assert compute_hash(event) == event.hash
    head = db.session.get(AuditHead, 1)
    assert head is not None
    assert (head.seq, head.last_hash) == (5, events[-1].hash)
    assert len({e.hash for e in events}) == 5


def test_hash_covers_the_content(app: Flask) -> None:
    event = _record_n(1)[0]
    original = compute_hash(event)
    for field, value in [("actor", "staff:other"), ("action", "x"), ("target", "t"),
                         ("patient", "P-2"), ("outcome", "failure"), ("rule", "ok"),
                         ("request_id", "r"), ("details", {"n": 1}), ("prev_hash", "1" * 64),
                         ("id", 2), ("time", event.time.replace(microsecond=1))]:
        saved = getattr(event, field)
        setattr(event, field, value)
        assert compute_hash(event) != original, field
        setattr(event, field, saved)
    assert compute_hash(event) == original
    db.session.rollback()


def test_record_rejects_unknown_outcome(app: Flask) -> None:
    with pytest.raises(ValueError, match="outcome"):
        record(CLI, "test.event", outcome="maybe")


def test_record_is_rolled_back_with_the_transaction(app: Flask) -> None:
    _record_n(2)
    record(CLI, "test.event")
    db.session.rollback()
    record(CLI, "test.event")
    db.session.commit()
    assert [e.id for e in _events()] == [1, 2, 3]
    assert verify() is None


# --- verify --------------------------------------------------------------------------------


def test_verify_holds_on_an_intact_trail(app: Flask) -> None:
    assert verify() is None  # the empty trail
    events = _record_n(6)
    assert verify() is None
    assert verify(anchor=(6, events[-1].hash)) is None
    assert verify(anchor=(3, events[2].hash)) is None


def test_verify_finds_modified_details(app: Flask) -> None:
    _record_n(6)
    _set_json("details", 3, {"n": 999, "text": "é <b>"})
    broken = verify()
    assert broken is not None
    assert broken.event_id == 3
    assert "content" in broken.problem
    assert "event 3" in str(broken)


def test_verify_finds_modified_actor(app: Flask) -> None:
    _record_n(6)
    db.session.execute(text("UPDATE audit_events SET actor = 'staff:someone' WHERE id = 4"))
    db.session.commit()
    broken = verify()
    assert broken is not None and broken.event_id == 4


@pytest.mark.parametrize(("column", "garbage"), [("details", "{not json"),
                                                 ("time", "yesterday-ish")])
def test_verify_names_an_undecodable_event(
    app: Flask, db_dialect: str, column: str, garbage: str
) -> None:
    if db_dialect != "sqlite":
        # Not a missing service: the SQLite variant runs every time; PostgreSQL cannot even
        # store such a row, so there is nothing for verify() to decode there.
        pytest.skip("PostgreSQL's json and timestamptz columns refuse such garbage on write")
    _record_n(4)
    db.session.execute(text(f"UPDATE audit_events SET {column} = :g WHERE id = 3"),  # noqa: S608
                       {"g": garbage})
    db.session.commit()
    broken = verify()
    assert broken is not None
    assert broken.event_id == 3
    assert "cannot be read" in broken.problem
    result = app.test_cli_runner().invoke(args=["audit", "verify"])
    assert result.exit_code == 1
    assert "event 3" in result.output


def test_verify_reads_the_database_not_the_session(app: Flask) -> None:
    """Events the session already holds must not hide a change made behind its back."""
    _record_n(3)
    held = list(db.session.scalars(select(AuditEvent).order_by(AuditEvent.id)))
    assert [e.actor for e in held] == ["staff:user0", "staff:user1", "staff:user2"]
    other = db.engine.connect()
    try:
        other.execute(text("UPDATE audit_events SET actor = 'staff:x' WHERE id = 2"))
        other.commit()
    finally:
        other.close()
    broken = verify()
    assert broken is not None and broken.event_id == 2
    db.session.rollback()


def test_verify_leaves_pending_changes_alone(app: Flask) -> None:
    from app.models import Patient

    _record_n(2)
    patient = Patient(dpi_id="P-verify", family_name="A", given_name="B",
                      birth_date=__import__("datetime").date(1970, 1, 1))
    db.session.add(patient)
    assert verify() is None
    db.session.commit()
    assert db.session.scalar(select(Patient.dpi_id).where(Patient.dpi_id == "P-verify"))


def test_verify_finds_a_deleted_event(app: Flask) -> None:
    _record_n(6)
    db.session.execute(text("DELETE FROM audit_events WHERE id = 3"))
    db.session.commit()
    broken = verify()
    assert broken is not None
    assert broken.event_id == 4
    assert "expected event 3" in broken.problem


def test_verify_finds_an_event_inserted_at_the_end(app: Flask) -> None:
    events = _record_n(4)
    _insert_raw(_forged(5, events[-1].hash, events[-1]))
    broken = verify()
    assert broken is not None
    assert broken.event_id == 5
    assert "inserted" in broken.problem


def test_verify_finds_an_event_inserted_in_the_middle(app: Flask) -> None:
    """Renumber the events after 2 and slip a well-formed event in as number 3."""
    events = _record_n(5)
    db.session.execute(text("UPDATE audit_events SET id = -id WHERE id >= 3"))
    db.session.execute(text("UPDATE audit_events SET id = 1 - id WHERE id < 0"))
    db.session.execute(text("UPDATE audit_head SET seq = 6"))
    db.session.commit()
    _insert_raw(_forged(3, events[1].hash, events[1]))
    broken = verify()
    assert broken is not None
    # The forged event itself is consistent; the chain breaks at the event that follows it.
    assert broken.event_id == 4


def test_verify_finds_a_rewritten_last_event(app: Flask) -> None:
    """A last event rewritten with a consistent hash still disagrees with the head."""
    events = _record_n(3)
    forged = _forged(3, events[1].hash, events[2])
    db.session.execute(text("DELETE FROM audit_events WHERE id = 3"))
    db.session.commit()
    _insert_raw(forged)
    broken = verify()
    assert broken is not None and broken.event_id == 3


def test_verify_finds_the_tail_cut_off(app: Flask) -> None:
    _record_n(6)
    db.session.execute(text("DELETE FROM audit_events WHERE id >= 5"))
    db.session.commit()
    broken = verify()
    assert broken is not None
    assert broken.event_id == 5
    assert "cut off" in broken.problem


def test_verify_finds_the_tail_cut_off_and_the_head_rewound(app: Flask) -> None:
    """Cutting the tail and rewinding the head too: only an anchor kept outside catches it."""
    hashes = [e.hash for e in _record_n(6)]
    db.session.execute(text("DELETE FROM audit_events WHERE id >= 5"))
    db.session.execute(text("UPDATE audit_head SET seq = 4, last_hash = :h"), {"h": hashes[3]})
    db.session.commit()
    assert verify() is None
    broken = verify(anchor=(6, hashes[5]))
    assert broken is not None
    assert broken.event_id == 6
    assert "anchored event is missing" in broken.problem


def test_verify_finds_an_anchor_mismatch(app: Flask) -> None:
    events = _record_n(4)
    broken = verify(anchor=(2, "f" * 64))
    assert broken is not None
    assert broken.event_id == 2
    assert "anchored" in broken.problem
    assert verify(anchor=(2, events[1].hash)) is None


def test_verify_finds_a_missing_head(app: Flask) -> None:
    _record_n(1)
    db.session.execute(text("DELETE FROM audit_head"))
    db.session.commit()
    broken = verify()
    assert broken is not None and broken.event_id is None
    db.session.execute(text("INSERT INTO audit_head (id, seq, last_hash) VALUES (1, 1, :h)"),
                       {"h": _events()[0].hash})
    db.session.commit()
    assert verify() is None


# --- the CLI -------------------------------------------------------------------------------


def test_cli_verify_intact(app: Flask) -> None:
    events = _record_n(3)
    runner = app.test_cli_runner()
    result = runner.invoke(args=["audit", "verify"])
    assert result.exit_code == 0, result.output
    assert "intact" in result.output
    result = runner.invoke(args=["audit", "verify", "--anchor", f"3:{events[2].hash}"])
    assert result.exit_code == 0, result.output


def test_cli_verify_broken(app: Flask) -> None:
    _record_n(5)
    db.session.execute(text("UPDATE audit_events SET actor = 'cli' WHERE id = 2"))
    db.session.commit()
    result = app.test_cli_runner().invoke(args=["audit", "verify"])
    assert result.exit_code == 1
    assert "event 2" in result.output
    assert "BROKEN" in result.output


def test_cli_verify_anchor(app: Flask) -> None:
    events = _record_n(3)
    runner = app.test_cli_runner()
    result = runner.invoke(args=["audit", "verify", "--anchor", f"2:{'a' * 64}"])
    assert result.exit_code == 1
    assert "event 2" in result.output
    result = runner.invoke(args=["audit", "verify", "--anchor", f"9:{events[0].hash}"])
    assert result.exit_code == 1
    assert "event 9" in result.output
    result = runner.invoke(args=["audit", "verify", "--anchor", "not-an-anchor"])
    assert result.exit_code == 1
    assert "ID:HASH" in result.output


# --- concurrency and the API ---------------------------------------------------------------


def test_concurrent_writers_keep_the_chain(app: Flask, db_dialect: str) -> None:
    if db_dialect != "postgresql":
        # Not a missing service: the same test runs on PostgreSQL (always under CI); only this
        # database's variant is skipped, because the case cannot arise or be raced on it.
        pytest.skip("concurrent writers need PostgreSQL: SQLite serialises whole-database writes")
    threads_n, per_thread = 8, 25
    barrier = threading.Barrier(threads_n)
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            with app.app_context():
                barrier.wait(timeout=30)
                for i in range(per_thread):
                    record(Actor("staff", f"t{n}"), "test.concurrent", details={"i": i})
                    db.session.commit()
                db.session.remove()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    events = _events()
    assert [e.id for e in events] == list(range(1, threads_n * per_thread + 1))
    assert verify() is None
    by_actor: dict[str, int] = {}
    for event in events:
        by_actor[event.actor] = by_actor.get(event.actor, 0) + 1
    assert by_actor == {f"staff:t{n}": per_thread for n in range(threads_n)}


def test_rejected_api_request_is_audited(app: Flask, api: Api) -> None:
    # The unauthenticated request first: in tests every request shares the test's app context
    # (and so ``g``), and a later request would see the client authenticated by an earlier one.
    response = api.post("/api/v1/documents", json=document_body(),
                        headers={"Authorization": "Bearer wrong"})
    assert response.status_code == 401
    events = _events()
    assert (events[-1].action, events[-1].actor) == ("api.rejected", "api:anonymous")
    assert verify() is None

    before = len(_events())
    body = document_body(signed_at=None)
    response = api.post("/api/v1/documents", json=body)
    assert response.status_code == 422
    events = _events()
    assert len(events) == before + 1
    rejected = events[-1]
    assert rejected.action == "api.rejected"
    assert rejected.outcome == "rejected"
    assert rejected.actor == "api:dpi-test"
    assert rejected.details["status"] == 422
    assert "signed_at" in rejected.details["fields"]
    # Nothing of the rejected document was stored, and the chain still holds.
    assert not [e for e in events if e.action == "document.received"]
    assert verify() is None



def test_record_all_appends_several_events_in_order_with_one_move_of_the_head(
    app: Flask,
) -> None:
    record(CLI, "first")
    statements: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(statement)

    sa_event.listen(db.engine, "before_cursor_execute", count)
    try:
        written = record_all(CLI, [Entry("a", "x:1"), Entry("b", patient="P-1", rule="ok"),
                                   Entry("c", outcome="rejected", details={"n": 1})])
    finally:
        sa_event.remove(db.engine, "before_cursor_execute", count)
    db.session.commit()

    assert [e.id for e in written] == [2, 3, 4]
    assert [e.action for e in written] == ["a", "b", "c"]
    assert written[1].prev_hash == written[0].hash and written[2].prev_hash == written[1].hash
    head_updates = [s for s in statements if s.lstrip().upper().startswith("UPDATE AUDIT_HEAD")]
    assert len(head_updates) == 2  # the sequence once, the last hash once: not per event
    assert verify() is None
    assert record_all(CLI, []) == []


def test_record_all_refuses_a_bad_outcome_before_writing_anything(app: Flask) -> None:
    with pytest.raises(ValueError, match="outcome"):
        record_all(CLI, [Entry("a"), Entry("b", outcome="maybe")])
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(AuditEvent)) == 0
