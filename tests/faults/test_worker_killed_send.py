"""Issue 7, faults: the sending process killed (SIGKILL) in the middle of ``send-due``.

A real ``flask --app wsgi notifications send-due`` process sends many due emails to a real
aiosmtpd server, which holds one message inside DATA, so the process is provably mid-send
when it is killed. What the outbox guarantees (app/notify/outbox.py):

* every row is claimed (a lease: ``next_attempt_at`` moved 10 minutes on) and the claim
  committed *before* the SMTP conversation; the outcome is committed right after it. So a kill
  loses nothing: the rows not reached are still due, the row in flight is taken again once its
  lease is over, and no other sender takes it while the lease runs (it may still be sending);
* between the relay's ``250`` and the commit of ``sent_at`` there is a window that no sender
  can close alone: the relay has the email, the database does not know it. A kill there sends
  that email again after the lease: *at least once*, never lost, and the copy carries the same
  ``Message-ID`` (``<notification-{row id}@domain>``, stable per outbox row), so that the
  receiving side can recognise it. That is the honest promise; "exactly once" across that
  window would need the receiver's help.

The test plays the worst case of that window: the relay accepts the held message after the
sender died (it never saw the ``250``). Every row is then delivered; the rows not in flight
exactly once, the one in flight at most twice, both copies with its own Message-ID.
Runs on SQLite and, with TEST_DATABASE_URL, on PostgreSQL (the process shares the database).
"""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta

import pytest
from flask import Flask
from sqlalchemy import select

from app.extensions import db
from app.models import Doctor, Notification
from app.models.base import utcnow
from app.notify.outbox import LEASE, send_due
from tests.faults.messaging_support import (
    FaultyInbox,
    cli_settings,
    expected_ids,
    faulty_smtp,
    message_id,
)
from tests.notify.smtp_server import Smtp
from tests.support.servers import finish, run_flask, start_flask

DOCTORS = ("7601000000019", "7601000000026", "7601000000033", "7601000000040")
EMAILS_PER_DOCTOR = 3
STALLED = 3  # the third email of the round is held inside DATA


@pytest.fixture()
def due_rows(app: Flask) -> list[int]:
    """Twelve due arrival emails: three for each of four doctors (ids in sending order)."""
    past = utcnow() - timedelta(minutes=1)
    for number, gln in enumerate(DOCTORS):
        doctor = Doctor(gln=gln, family_name=f"Doctor{number}", given_name="Test",
                        state="active", activated_at=utcnow(),
                        email=f"doctor{number}@cabinet.example", notification_mode="immediate")
        db.session.add(doctor)
        db.session.flush()
        for n in range(EMAILS_PER_DOCTOR):
            db.session.add(Notification(
                doctor_id=doctor.id, kind="arrival", idempotency_key=f"test:{doctor.id}:{n}",
                count=n + 1, created_at=past, due_at=past, attempts=0, next_attempt_at=past))
    db.session.commit()
    return list(db.session.scalars(select(Notification.id).order_by(Notification.id)))


@pytest.fixture()
def relay(app: Flask) -> Iterator[tuple[Smtp, FaultyInbox]]:
    with faulty_smtp(app) as pair:
        yield pair


def outbox() -> dict[int, Notification]:
    db.session.expire_all()
    return {row.id: row for row in db.session.scalars(select(Notification))}


@pytest.mark.parametrize("queued_first", [True, False], ids=["relay_kept_it", "relay_lost_it"])
def test_a_sender_killed_mid_send_loses_nothing_and_repeats_only_the_email_in_flight(
    app: Flask, due_rows: list[int], relay: tuple[Smtp, FaultyInbox], queued_first: bool
) -> None:
    server, inbox = relay
    settings = cli_settings(app, server.port)
    # Given the relay will hold the third email inside DATA, before its answer; having queued
    # it already (the worst case: the window between 250 and the commit), or not
    inbox.stall_on(STALLED, queued_first=queued_first)

    # When send-due runs in its own process and is killed while that email is held
    process = start_flask(["notifications", "send-due"], settings)
    try:
        stalled = inbox.stalled.wait(60)
    finally:
        process.send_signal(signal.SIGKILL)
        killed = finish(process, ["send-due"], timeout=10)  # reaps it, closes its pipes
    assert stalled, killed.stderr
    assert killed.returncode == -signal.SIGKILL
    in_flight_id = inbox.stalled_message_id
    # And the relay has dealt with the held email: kept it (queued before the answer that
    # nobody read), or dropped it with the lost connection (aiosmtpd cancels the handler)
    if queued_first:
        inbox.release.set()
    assert inbox.stall_over.wait(10)
    assert len(inbox.messages) == (STALLED if queued_first else STALLED - 1)

    # Then the database knows the two first emails as sent, the one in flight as claimed
    # (neither sent nor failed nor counted as an attempt), the others as still due
    rows = outbox()
    sent = [row_id for row_id, row in rows.items() if row.sent_at is not None]
    assert sorted(sent) == due_rows[:STALLED - 1]
    in_flight = rows[due_rows[STALLED - 1]]
    assert in_flight_id == message_id(in_flight.id)
    assert (in_flight.sent_at, in_flight.failed_at, in_flight.attempts) == (None, None, 0)
    assert in_flight.next_attempt_at > utcnow() + LEASE - timedelta(minutes=1)
    assert all(rows[i].attempts == 0 and rows[i].sent_at is None for i in due_rows[STALLED:])

    # When the sender is started again at once
    result = run_flask(["notifications", "send-due"], settings)

    # Then it sends every email that was not in flight, and leaves the leased one alone
    assert result.returncode == 0, result.stderr
    assert f"{len(due_rows) - STALLED} sent, 0 to retry, 0 failed" in result.stdout
    assert outbox()[in_flight.id].sent_at is None

    # When the lease is over, a round takes the one in flight again; a further round nothing
    after_lease = utcnow() + LEASE + timedelta(seconds=1)
    assert send_due(now=after_lease).sent == 1
    assert send_due(now=after_lease + timedelta(hours=1)).sent == 0

    # Then every row is sent, each once in the database
    rows = outbox()
    assert all(row.sent_at is not None and row.failed_at is None for row in rows.values())
    assert all(row.attempts == 1 for row in rows.values())
    # And every email arrived. The ones not in flight exactly once; the one in flight once,
    # or (relay kept it) twice under the same Message-ID: de-duplicated by it, each row's
    # email is there exactly once, for its own recipient
    repeated = Counter({message_id(in_flight.id): 1}) if queued_first else Counter()
    assert inbox.by_message_id() == expected_ids(due_rows) + repeated
    per_recipient = Counter(rcpt for rcpts in unique_by_message_id(inbox) for rcpt in rcpts)
    assert per_recipient == Counter({f"doctor{n}@cabinet.example": EMAILS_PER_DOCTOR
                                     for n in range(len(DOCTORS))})


def unique_by_message_id(inbox: FaultyInbox) -> list[list[str]]:
    """The recipients of each email a receiver keeps when it drops a Message-ID seen before."""
    seen: dict[str, list[str]] = {}
    for (rcpts, _), message in zip(inbox.messages, inbox.parsed(), strict=True):
        seen.setdefault(str(message["Message-ID"]), rcpts)
    return list(seen.values())
