"""Issue 7, faults: the SMTP relay down for a while, refusing for a while, or hanging up.

A real aiosmtpd server (tests/notify/smtp_server.py) on a fixed loopback port, several doctors
with emails due (at each arrival, and a daily digest). Whatever the relay does, no email is
lost (rows wait for a retry, neither sent nor failed) and, once it accepts again, each email
arrives exactly once: counted by recipient and by Message-ID. Time is injected (``now``),
never slept. Every test runs on SQLite and, with TEST_DATABASE_URL, on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from flask import Flask
from sqlalchemy import select, update

from app.extensions import db
from app.models import Doctor, Notification
from app.models.base import utcnow
from app.notify.outbox import RETRY_DELAYS, send_due
from tests.conftest import Api, consent_body, document_body
from tests.faults.messaging_support import FaultyInbox, cli_settings, expected_ids, faulty_smtp
from tests.notify.smtp_server import Smtp
from tests.support.servers import run_flask

#: Three doctors of Anna Muster: two want an email at each arrival, one a daily digest.
DOCTORS = {
    "7601000000019": ("claire.muller@cabinet.example", "immediate", "fr"),
    "7601000000026": ("paul.rey@cabinet.example", "immediate", "en"),
    "7601000000033": ("ines.favre@cabinet.example", "digest", "fr"),
}
ADDRESSES = sorted(address for address, _, _ in DOCTORS.values())


@pytest.fixture()
def doctors(app: Flask, api: Api) -> list[Doctor]:
    """The three doctors, each with Anna Muster's consent, and two letters for them."""
    found = []
    for number, (gln, (email, mode, language)) in enumerate(DOCTORS.items()):
        doctor = Doctor(gln=gln, family_name=f"Doctor{number}", given_name="Test",
                        state="active", activated_at=utcnow(), email=email,
                        notification_mode=mode, language=language,
                        # the digest is due from midnight (Zurich) and the last went long ago
                        digest_hour=0, last_digest_at=utcnow() - timedelta(days=2))
        db.session.add(doctor)
        found.append(doctor)
    db.session.commit()
    for gln in DOCTORS:
        answer = api.put(f"/api/v1/patients/P-0042/consents/{gln}", json=consent_body())
        assert answer.status_code in (200, 201), answer.get_json()
    for number, recipients in ((1, list(DOCTORS)), (2, ["7601000000019", "7601000000033"])):
        answer = api.post("/api/v1/documents",
                          json=document_body(f"DPI-2026-{number:06d}", recipients=recipients))
        assert answer.status_code == 201, answer.get_json()
        assert {d["status"] for d in answer.get_json()["deliveries"]} == {"delivered"}
    return found


@pytest.fixture()
def relay(app: Flask) -> Iterator[tuple[Smtp, FaultyInbox]]:
    with faulty_smtp(app) as pair:
        yield pair


def outbox() -> list[Notification]:
    db.session.expire_all()
    return list(db.session.scalars(select(Notification).order_by(Notification.id)))


def assert_waiting_for_a_retry(rows: list[Notification], attempts: int) -> None:
    """Nothing lost, nothing counted as sent: every row waits for its next attempt."""
    for row in rows:
        assert (row.sent_at, row.failed_at, row.attempts) == (None, None, attempts), row.kind
        assert row.last_error and "@" not in row.last_error  # no address in the error
        assert row.next_attempt_at > utcnow()


def assert_each_email_once(inbox: FaultyInbox, rows: list[Notification]) -> None:
    """One email per row, none twice: by recipient and by Message-ID; every row sent."""
    assert sorted(inbox.by_recipient().elements()) == ADDRESSES
    assert inbox.by_message_id() == expected_ids(row.id for row in rows)
    assert all(row.sent_at is not None and row.failed_at is None for row in rows)


def test_relay_down_for_three_rounds_then_back_delivers_every_email_exactly_once(
    app: Flask, doctors: list[Doctor], relay: tuple[Smtp, FaultyInbox]
) -> None:
    server, inbox = relay
    # Given the relay is down (nothing listens on its port any more)
    server.stop()

    # When the first round runs (the arrivals' gathering window has passed)
    first = utcnow() + timedelta(minutes=3)
    report = send_due(now=first)

    # Then the digest was written, and all three emails wait for a retry: none sent or failed
    assert (report.sent, report.retried, report.failed, report.digests) == (0, 3, 0, 1)
    rows = outbox()
    assert sorted(row.kind for row in rows) == ["arrival", "arrival", "digest"]
    assert_waiting_for_a_retry(rows, attempts=1)
    assert {row.next_attempt_at for row in rows} == {first + RETRY_DELAYS[0]}

    # When the worker's command runs in a process of its own once the first delay is over
    db.session.execute(update(Notification).values(
        next_attempt_at=utcnow() - timedelta(seconds=1)))
    db.session.commit()
    result = run_flask(["notifications", "send-due"], cli_settings(app, server.port))

    # Then it too leaves them waiting, for the second, longer delay; and says so
    assert result.returncode == 0, result.stderr
    assert "0 sent, 3 to retry, 0 failed" in result.stdout
    assert "@" not in result.stdout + result.stderr  # no address in its output or logs
    rows = outbox()
    assert_waiting_for_a_retry(rows, attempts=2)
    retry_at = max(row.next_attempt_at for row in rows)

    # And a round before that delay is over touches nothing
    assert send_due(now=retry_at - timedelta(seconds=5)).retried == 0
    assert [row.attempts for row in outbox()] == [2, 2, 2]

    # When the relay is back on the same port and the delay is over, two rounds run
    server.start()
    report = send_due(now=retry_at)
    again = send_due(now=retry_at + timedelta(hours=2))

    # Then every email arrived exactly once, on the third attempt, and nothing more went
    assert (report.sent, report.retried, report.failed) == (3, 0, 0)
    assert (again.sent, again.retried, again.failed) == (0, 0, 0)
    rows = outbox()
    assert_each_email_once(inbox, rows)
    assert [row.attempts for row in rows] == [3, 3, 3]
    subjects = inbox.subjects_by_recipient()
    assert subjects["claire.muller@cabinet.example"] == ["Relais : 2 nouveaux documents"]
    assert subjects["paul.rey@cabinet.example"] == ["Relais: 1 new document"]
    assert subjects["ines.favre@cabinet.example"] == [
        "Relais : résumé du jour, 2 nouveaux documents"]


@pytest.mark.parametrize("fault", ["rcpt_451", "data_451", "data_dropped"])
def test_a_relay_that_refuses_or_hangs_up_then_recovers_delivers_exactly_once(
    app: Flask, doctors: list[Doctor], relay: tuple[Smtp, FaultyInbox], fault: str
) -> None:
    _, inbox = relay
    # Given a relay that accepts connections but, for the next two emails, answers 451 to the
    # recipient or to the data, or hangs up once the data arrived, before answering it
    {"rcpt_451": inbox.fail_rcpt, "data_451": inbox.fail_data,
     "data_dropped": inbox.drop_data}[fault](2)

    # When a round runs
    when = utcnow() + timedelta(minutes=3)
    report = send_due(now=when)

    # Then one email went, the two refused ones wait for a retry (neither sent nor failed)
    assert inbox.refused == [fault, fault]
    assert (report.sent, report.retried, report.failed) == (1, 2, 0)
    rows = outbox()
    waiting = [row for row in rows if row.sent_at is None]
    assert len(waiting) == 2
    assert_waiting_for_a_retry(waiting, attempts=1)
    assert len(inbox.messages) == 1

    # When the relay has recovered and two rounds run after the retry delay
    report = send_due(now=when + RETRY_DELAYS[0])
    again = send_due(now=when + timedelta(hours=5))

    # Then the two arrived, and each email exactly once
    assert (report.sent, again.sent, again.retried) == (2, 0, 0)
    assert_each_email_once(inbox, outbox())
