"""The worker's RQ mode, with the real Redis (REDIS_URL): rounds enqueued once across every
scheduler, jobs run by a real RQ worker against the database and a real SMTP server, and the
command stopped cleanly by SIGTERM.

Needs Redis: skipped on a laptop without REDIS_URL, a failure under CI=true.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from flask import Flask
from rq import Queue
from sqlalchemy import select, update

from app.cli.jobs import (
    ROUND_KEY,
    claim_round,
    enqueue_round,
    job_queue,
    make_worker,
    release_due_job,
    send_due_job,
)
from app.extensions import db
from app.models import Delivery, Doctor, Notification
from app.models.base import utcnow
from tests.conftest import TEST_KEY, Api, consent_body, document_body, skip_or_fail
from tests.notify.smtp_server import Smtp
from tests.support.concurrency import Start, race

ROOT = Path(__file__).resolve().parents[2]
GLN = "7601000000019"  # the active_doctor fixture


@pytest.fixture()
def redis_url() -> str:
    url = os.environ.get("REDIS_URL", "")
    if not url:
        skip_or_fail("REDIS_URL is not set: the RQ worker tests need Redis")
    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as error:
        skip_or_fail(f"Redis at REDIS_URL is unreachable ({type(error).__name__})")
    finally:
        client.close()
    return url


@pytest.fixture()
def connection(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture()
def queue(connection: redis.Redis) -> Iterator[Queue]:
    """A queue of this test's own, so that nothing else on the server takes its jobs."""
    own = job_queue(connection, f"relais-test-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    yield own
    own.delete(delete_jobs=True)


def a_round() -> int:
    """A round number no other run uses (the lock keys outlive a test)."""
    return int(uuid.uuid4().int % 10**12) + 10**12


# --- rounds ------------------------------------------------------------------------------------


def test_two_schedulers_racing_enqueue_a_round_once(connection: redis.Redis,
                                                    queue: Queue) -> None:
    # Given two schedulers (two servers) waking at the start of the same round
    number = a_round()
    def scheduler(start: Start) -> bool:
        start()
        return enqueue_round(connection, queue, 30, number)

    won = race([scheduler, scheduler])

    # Then one of them enqueued the round's two jobs, the other nothing
    assert sorted(won) == [False, True]
    assert sorted(job.func_name for job in queue.get_jobs()) == [
        "app.cli.jobs.release_due_job", "app.cli.jobs.send_due_job"]
    # And the lock expires on its own, after its round and the next
    ttl = connection.pttl(f"{ROUND_KEY}:30:{number}")
    assert 0 < ttl <= 60_000
    # And the next round is enqueued again, once
    assert enqueue_round(connection, queue, 30, number + 1)
    assert not enqueue_round(connection, queue, 30, number + 1)
    assert len(queue) == 4


def test_many_claims_of_one_round_have_one_winner(connection: redis.Redis) -> None:
    number = a_round()
    def claim(start: Start) -> bool:
        start()
        return claim_round(connection, 5, number)

    won = race([claim] * 8)
    assert won.count(True) == 1 and len(won) == 8


# --- the jobs, run by a real RQ worker -----------------------------------------------------------


@pytest.fixture()
def doctor(active_doctor: Doctor, api: Api) -> Doctor:
    """Dr Muller, with Anna Muster's consent, notified by email at each arrival."""
    active_doctor.email = "claire.muller@cabinet.example"
    active_doctor.notification_mode = "immediate"
    db.session.commit()
    response = api.put(f"/api/v1/patients/P-0042/consents/{GLN}", json=consent_body())
    assert response.status_code in (200, 201), response.get_json()
    return active_doctor


def run_round(connection: redis.Redis, queue: Queue) -> dict[str, object]:
    """Enqueue a round and let a real RQ worker (in-process, burst) run it; the results."""
    assert enqueue_round(connection, queue, 30, a_round())
    jobs = queue.get_jobs()
    # RQ installs its own SIGINT/SIGTERM handlers: give pytest back its own afterwards.
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        assert make_worker(connection, queue).work(burst=True)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    results: dict[str, object] = {}
    for job in jobs:
        job.refresh()
        assert job.get_status() == "finished", job.latest_result()
        results[job.func_name.rsplit(".", 1)[1]] = job.return_value()
    return results


def test_a_worker_releases_a_due_letter_then_sends_its_email(
    app: Flask, doctor: Doctor, api: Api, smtp: Smtp, connection: redis.Redis, queue: Queue
) -> None:
    # Given a sensitive letter held until its time, which has now come
    signed = datetime.now(UTC) - timedelta(hours=1)
    posted = api.post("/api/v1/documents", json=document_body(
        "DPI-2026-000777", sensitive=True, signed_at=signed.isoformat()))
    assert posted.get_json()["deliveries"][0]["status"] == "held"
    db.session.execute(update(Delivery).values(release_at=utcnow() - timedelta(minutes=1)))
    db.session.commit()

    # When a round runs on the RQ worker
    first = run_round(connection, queue)

    # Then the letter is delivered, and its email waits for the two-minute gathering
    assert first == {"release_due_job": "released: 1 delivered, 0 cancelled",
                     "send_due_job": "notifications: 0 sent, 0 to retry, 0 failed, "
                                     "0 digest(s) written"}
    assert db.session.scalars(select(Delivery.status)).all() == ["delivered"]
    assert smtp.inbox.messages == []

    # When the gathering window has passed and the next round runs
    db.session.execute(update(Notification).values(
        due_at=utcnow() - timedelta(minutes=10), next_attempt_at=utcnow() - timedelta(minutes=10)))
    db.session.commit()
    second = run_round(connection, queue)

    # Then the email reached the SMTP server, once, and the letter is not released again
    assert second["release_due_job"] == "released: 0 delivered, 0 cancelled"
    assert str(second["send_due_job"]).startswith("notifications: 1 sent")
    [(recipients, raw)] = smtp.inbox.messages
    assert recipients == ["claire.muller@cabinet.example"]
    assert b"P-0042" not in raw and b"Muster" not in raw


def test_the_jobs_run_outside_any_app_context_too(app: Flask, redis_url: str) -> None:
    """``rq worker`` started alone (no flask command) builds the app from the environment."""
    env = {**os.environ, "RELAIS_ENV": "testing",
           "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
           "SECRET_KEY": "test-secret-key-that-is-long-enough-0123456789",
           "DOCUMENT_KEYS": f"test1:{TEST_KEY}", "MAIL_BACKEND": "console"}
    code = ("from app.cli.jobs import release_due_job, send_due_job;"
            "print(release_due_job()); print(send_due_job())")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "released: 0 delivered, 0 cancelled" in done.stdout
    assert "notifications: 0 sent" in done.stdout
    assert callable(release_due_job) and callable(send_due_job)


# --- the command ---------------------------------------------------------------------------------


def test_the_rq_worker_command_runs_rounds_and_stops_cleanly_on_sigterm(
    app: Flask, redis_url: str
) -> None:
    env = {**os.environ, "RELAIS_ENV": "testing", "REDIS_URL": redis_url,
           "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
           "SECRET_KEY": "test-secret-key-that-is-long-enough-0123456789",
           "DOCUMENT_KEYS": f"test1:{TEST_KEY}", "MAIL_BACKEND": "console",
           "LOG_FORMAT": "json", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "wsgi", "worker", "--interval", "1"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    seen: list[str] = []
    try:
        # Wait for a round's two jobs to have run (however slow the machine), then stop it.
        assert process.stderr is not None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = process.stderr.readline()
            if not line:
                break
            seen.append(line)
            if "job send_due: " in line:
                break
        process.send_signal(signal.SIGTERM)
        out, rest = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    err = "".join(seen) + rest
    assert process.returncode == 0, err
    assert "worker: RQ queue 'relais'" in out
    assert out.rstrip().endswith("worker: stopped")
    assert "job release_due: released: 0 delivered, 0 cancelled" in err
    assert "job send_due: notifications: 0 sent" in err


def test_worker_once_runs_one_round_on_rq_and_prints_its_lines(
    app: Flask, redis_url: str, active_doctor: Doctor, api: Api
) -> None:
    # Given a held letter whose time has come, and the worker configured with Redis
    api.put(f"/api/v1/patients/P-0042/consents/{GLN}", json=consent_body())
    signed = datetime.now(UTC) - timedelta(hours=1)
    api.post("/api/v1/documents", json=document_body(
        "DPI-2026-000778", sensitive=True, signed_at=signed.isoformat()))
    db.session.execute(update(Delivery).values(release_at=utcnow() - timedelta(minutes=1)))
    db.session.commit()
    app.config["REDIS_URL"] = redis_url

    # When `worker --once` runs (RQ replaces the signal handlers: pytest gets its own back)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        result = app.test_cli_runner().invoke(args=["worker", "--once"])
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)

    # Then the round ran as RQ jobs and printed the same lines as the loop
    assert result.exit_code == 0, result.output
    assert "worker: one round on the RQ queue 'relais'" in result.output
    assert "released: 1 delivered, 0 cancelled" in result.output
    assert "notifications: 0 sent" in result.output
    assert result.output.rstrip().endswith("worker: stopped")
    assert db.session.scalars(select(Delivery.status)).all() == ["delivered"]
