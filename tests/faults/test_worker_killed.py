"""A worker killed in the middle of ``release-due`` (issue 7, faults): nothing lost, nothing twice.

``release_due`` releases held deliveries in batches of 200, each batch one transaction: the
deliveries' new status, their ``delivery.released`` audit events and the doctors' arrival
notification rows are committed together or not at all. This test makes a real process die
between two batches, with the second one half-done:

1. a PostgreSQL database of this test's own with 10 doctors notified at each arrival and 50
   held letters to each of them (500 deliveries), all due;
2. the test holds the audit trail's head row locked, then starts ``flask --app wsgi dispatch
   release-due`` (or ``flask --app wsgi worker --once`` in RQ mode, on a throwaway Redis): the
   first batch blocks at its audit events. A second lock request of the test queues behind it,
   so that once the first batch is let through and committed, the second batch blocks in turn,
   its 200 deliveries updated but not committed;
3. the process is SIGKILLed there: 200 deliveries released, 300 still held, the killed batch
   leaving nothing behind;
4. run again, it releases the other 300: every delivery released exactly once, one
   ``delivery.released`` event each, one arrival row per doctor counting each of their letters
   once, and ``audit verify`` passes.

The process is found in ``pg_stat_activity`` by its ``application_name`` (``PGAPPNAME``).
"""

from __future__ import annotations

import re
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import Connection, Engine, create_engine, func, select, text, update

from app.audit import CLI
from app.dispatch.clients import create_client
from app.extensions import db
from app.gln import make_gln
from app.models import AuditEvent, Delivery, Doctor, Notification
from app.models.base import utcnow
from tests.conftest import (
    TEST_KEY,
    Api,
    consent_body,
    document_body,
    empty_tables,
    migrated_app,
    postgres_url,
    private_postgres_database,
    skip_or_fail,
)
from tests.support.redis_server import (
    RedisServer,
    redis_server_fixture,  # noqa: F401
)
from tests.support.servers import finish, run_flask, start_flask

pytestmark = [pytest.mark.postgres]

DOCTORS = [make_gln(f"760100000{n:03d}") for n in range(1, 11)]
LETTERS = 50
DELIVERIES = len(DOCTORS) * LETTERS
BATCH = 200  # release_due's batch
PATIENT = "P-0042"
_RELEASED = re.compile(r"released: (\d+) delivered, (\d+) cancelled")


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    url = postgres_url()
    if url is None:
        skip_or_fail("TEST_DATABASE_URL is not set: the killed-worker test needs PostgreSQL")
    assert url is not None
    with private_postgres_database(url, "killed") as private_url:
        yield private_url


@pytest.fixture(scope="module")
def seeder(database_url: str) -> Iterator[Flask]:
    with migrated_app(database_url) as app:
        yield app


@pytest.fixture()
def engine(database_url: str) -> Iterator[Engine]:
    """The test's own connections: the locks it holds, and what it reads."""
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


def seed_due_letters(app: Flask) -> None:
    """10 doctors notified at each arrival, each with 50 held letters that are now due."""
    empty_tables(app)
    with app.app_context():
        for n, gln in enumerate(DOCTORS):
            db.session.add(Doctor(gln=gln, family_name=f"Docteur{n}", given_name="Test",
                                  email=f"doctor{n}@example.ch", state="active",
                                  activated_at=utcnow(), notification_mode="immediate"))
        _, token = create_client("dpi-killed-worker", CLI)
        db.session.commit()
        api = Api(app.test_client(), token)
        for gln in DOCTORS:
            answer = api.put(f"/api/v1/patients/{PATIENT}/consents/{gln}", json=consent_body())
            assert answer.status_code in (200, 201), answer.get_json()
        signed_at = (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=0)
        for n in range(LETTERS):
            answer = api.post("/api/v1/documents", json=document_body(
                f"DPI-KILL-{n:03d}", sensitive=True, signed_at=signed_at.isoformat(),
                recipients=DOCTORS))
            assert answer.status_code == 201, answer.get_json()
        # The 7 days have passed: every held delivery is due.
        moved = db.session.execute(
            update(Delivery).where(Delivery.status == "held")
            .values(release_at=utcnow() - timedelta(minutes=1))
        ).rowcount  # type: ignore[attr-defined]
        db.session.commit()
        assert moved == DELIVERIES
        db.session.remove()


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.05)


def backends(engine: Engine, name: str, *, waiting: bool = False) -> int:
    """Sessions of the process named ``name``; only those waiting for a lock if ``waiting``."""
    query = "SELECT count(*) FROM pg_stat_activity WHERE application_name = :name"
    if waiting:
        query += " AND wait_event_type = 'Lock'"
    with engine.connect() as conn:
        return int(conn.execute(text(query), {"name": name}).scalar_one())


def waits_for_a_lock(engine: Engine, pid: int) -> bool:
    with engine.connect() as conn:
        return bool(conn.execute(text(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = :pid AND wait_event_type = 'Lock'"
        ), {"pid": pid}).scalar_one())


def lock_audit_head(conn: Connection) -> None:
    """Take the audit head's row lock in ``conn``'s transaction (waiting for it if held)."""
    conn.execute(text("SELECT seq FROM audit_head WHERE id = 1 FOR UPDATE"))


def counts(engine: Engine) -> dict[str, int]:
    """What is committed: deliveries by status, release events, notified arrivals."""
    with engine.connect() as conn:
        statuses = dict(conn.execute(
            select(Delivery.status, func.count()).group_by(Delivery.status)).tuples().all())
        events = conn.execute(select(func.count()).select_from(AuditEvent)
                              .where(AuditEvent.action == "delivery.released")).scalar_one()
        arrivals = conn.execute(select(func.coalesce(func.sum(Notification.count), 0))
                                .where(Notification.kind == "arrival")).scalar_one()
    return {"held": statuses.get("held", 0), "delivered": statuses.get("delivered", 0),
            "other": sum(v for k, v in statuses.items() if k not in ("held", "delivered")),
            "events": int(events), "arrivals": int(arrivals)}


def settings_for(database_url: str, name: str, redis_url: str | None) -> dict[str, str]:
    settings = {
        "RELAIS_ENV": "testing",
        "SECRET_KEY": "killed-worker-secret-key-0123456789abcdef",
        "DOCUMENT_KEYS": f"test1:{TEST_KEY}",
        "DATABASE_URL": database_url,
        "MAIL_BACKEND": "console",
        "PGAPPNAME": name,  # libpq's application_name: how the test finds its sessions
    }
    if redis_url is not None:
        settings["REDIS_URL"] = redis_url
    return settings


@pytest.mark.parametrize("mode", ["release-due", "rq-worker"])
def test_a_worker_killed_mid_release_loses_nothing_and_releases_nothing_twice(
    mode: str, seeder: Flask, engine: Engine, database_url: str,
    tmp_path: Path, request: pytest.FixtureRequest,
) -> None:
    # Given 500 held deliveries, all due
    seed_due_letters(seeder)
    assert counts(engine) == {"held": DELIVERIES, "delivered": 0, "other": 0, "events": 0,
                              "arrivals": 0}
    redis_url = None
    if mode == "rq-worker":
        redis: RedisServer = request.getfixturevalue("redis_server")
        redis.ensure_running()
        redis_url = redis.url
    name = f"relais-killed-{uuid.uuid4().hex[:8]}"
    settings = settings_for(database_url, name, redis_url)
    args = ["dispatch", "release-due"] if mode == "release-due" else ["worker", "--once"]

    first = engine.connect()
    second = engine.connect()
    worker = None
    try:
        # When the worker starts while the audit head is held: its first batch waits there
        first.begin()
        lock_audit_head(first)
        worker = start_flask(args, settings)
        wait_until(lambda: backends(engine, name, waiting=True) == 1,
                   "the first batch waits for the audit head")
        # a second lock request queues behind it, to stop the second batch at the same place
        second.begin()
        second_pid = int(second.execute(text("SELECT pg_backend_pid()")).scalar_one())
        queued = threading.Thread(target=lock_audit_head, args=(second,), daemon=True)
        queued.start()
        wait_until(lambda: waits_for_a_lock(engine, second_pid),
                   "the test's second lock request queues")
        first.commit()  # the first batch goes through and commits
        queued.join(timeout=30)
        assert not queued.is_alive(), "the test's second lock was never granted"
        wait_until(lambda: backends(engine, name, waiting=True) == 1,
                   "the second batch waits for the audit head")
        # and is SIGKILLed with its second batch updated but not committed
        assert counts(engine)["delivered"] == BATCH
        worker.kill()
        killed = finish(worker, args, timeout=30)  # reaps it and closes its pipes
        assert killed.returncode == -signal.SIGKILL
    finally:
        if worker is not None and worker.returncode is None:
            worker.kill()
            finish(worker, args, timeout=30)
        second.rollback()  # the dead process's session goes on, finds its client gone, rolls back
        second.close()
        first.close()
    wait_until(lambda: backends(engine, name) == 0, "the killed worker's session is gone")

    # Then exactly the first batch is released, with its events and its arrival counts
    assert counts(engine) == {"held": DELIVERIES - BATCH, "delivered": BATCH, "other": 0,
                              "events": BATCH, "arrivals": BATCH}

    # When the worker runs again, to its end
    if mode == "release-due":
        result = run_flask(args, settings, timeout=90)
    else:
        result = finish(start_flask(args, settings), args, timeout=90)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    released = _RELEASED.findall(result.stdout)
    assert released and released[0] == (str(DELIVERIES - BATCH), "0"), result.stdout

    # Then every delivery was released exactly once, with one event each
    assert counts(engine) == {"held": 0, "delivered": DELIVERIES, "other": 0,
                              "events": DELIVERIES, "arrivals": DELIVERIES}
    with engine.connect() as conn:
        per_delivery = conn.execute(text(
            "SELECT target, details ->> 'recipient', count(*) FROM audit_events "
            "WHERE action = 'delivery.released' GROUP BY 1, 2")).all()
        arrivals = dict(conn.execute(
            select(Doctor.gln, Notification.count)
            .join(Doctor, Doctor.id == Notification.doctor_id)
            .where(Notification.kind == "arrival")).tuples().all())
        arrival_rows = conn.execute(select(func.count()).select_from(Notification)
                                    .where(Notification.kind == "arrival")).scalar_one()
    assert len(per_delivery) == DELIVERIES
    assert {row[2] for row in per_delivery} == {1}
    # one arrival email per doctor, counting each of their letters once
    assert arrival_rows == len(DOCTORS)
    assert arrivals == dict.fromkeys(DOCTORS, LETTERS)

    # And the audit trail is one intact chain
    verified = run_flask(["audit", "verify"], settings)
    assert verified.returncode == 0, verified.stderr
    assert "audit trail intact" in verified.stdout
