"""Email notifications against a real SMTP server (aiosmtpd) running in the test process."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from sqlalchemy import select, update

from app.audit import SYSTEM
from app.dispatch.release import release_due
from app.extensions import db
from app.models import Delivery, Doctor, Document, Notification
from app.models.base import utcnow
from app.notify.outbox import MAX_ATTEMPTS, send_due
from tests.conftest import Api, consent_body
from tests.notify.smtp_server import Smtp
from tests.support.concurrency import Start, race
from tests.support.notifications import GLN, assert_no_patient_data, post_letter, rows

ZURICH = ZoneInfo("Europe/Zurich")


@pytest.fixture()
def doctor(active_doctor: Doctor, api: Api) -> Doctor:
    """Dr Muller, treating doctor of Anna Muster with consent, notified at each arrival."""
    active_doctor.email = "claire.muller@cabinet.example"
    active_doctor.notification_mode = "immediate"
    db.session.commit()
    response = api.put(f"/api/v1/patients/P-0042/consents/{GLN}", json=consent_body())
    assert response.status_code in (200, 201), response.get_json()
    return active_doctor


def later(minutes: float) -> datetime:
    return utcnow() + timedelta(minutes=minutes)


def test_arrivals_within_two_minutes_gather_into_one_email(
    app: Flask, doctor: Doctor, api: Api, smtp: Smtp
) -> None:
    # Given three letters arriving at once
    for number in (1, 2, 3):
        post_letter(api, number, title="Bilan cardiologique")
    (row,) = rows()
    assert (row.kind, row.count) == ("arrival", 3)
    # When the window has not passed yet, nothing goes
    assert send_due(now=later(1)).sent == 0
    assert smtp.inbox.messages == []
    # Then after two minutes one email announces the three, with a link and nothing else
    assert send_due(now=later(3)).sent == 1
    (message,) = smtp.inbox.parsed()
    assert message["To"] == "claire.muller@cabinet.example"
    assert "3" in message["Subject"]
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "https://relais.hopital.example/documents" in text
    assert 'href="https://relais.hopital.example/documents"' in html
    assert_no_patient_data(smtp)
    # And a letter after the email starts a new one; nothing is sent twice
    post_letter(api, 4)
    assert send_due(now=later(3)).sent == 1
    assert send_due(now=later(30)).sent == 0
    assert len(smtp.inbox.messages) == 2
    assert [r.count for r in rows()] == [3, 1]


def test_a_released_letter_is_announced_too(
    app: Flask, doctor: Doctor, api: Api, smtp: Smtp
) -> None:
    signed = datetime.now(UTC) - timedelta(days=6)
    post_letter(api, 10, sensitive=True, signed_at=signed.isoformat())
    assert rows() == []  # held: not visible, nothing announced
    released_at = utcnow() + timedelta(days=2)
    release_due(SYSTEM, now=released_at)
    db.session.commit()
    (row,) = rows()
    assert (row.kind, row.count, row.due_at) == ("arrival", 1, released_at + timedelta(minutes=2))
    assert send_due(now=released_at + timedelta(minutes=3)).sent == 1
    assert len(smtp.inbox.messages) == 1


def test_none_sends_nothing(app: Flask, doctor: Doctor, api: Api, smtp: Smtp) -> None:
    doctor.notification_mode = "none"
    db.session.commit()
    post_letter(api, 1)
    report = send_due(now=later(60 * 48))
    assert (report.sent, rows(), smtp.inbox.messages) == (0, [], [])


def test_the_digest_goes_at_the_chosen_hour_with_the_count_since_the_last(
    app: Flask, doctor: Doctor, api: Api, smtp: Smtp
) -> None:
    # Given a doctor wanting a digest at 18:00 Zurich time, whose last digest went long ago
    doctor.notification_mode = "digest"
    doctor.digest_hour = 18
    doctor.last_digest_at = utcnow() - timedelta(days=1)
    db.session.commit()
    post_letter(api, 1)
    post_letter(api, 2)
    assert rows() == []  # no email at each arrival
    today = utcnow().astimezone(ZURICH).date()
    day = datetime(today.year, today.month, today.day, tzinfo=ZURICH) + timedelta(days=1)
    # When the hour has not come, nothing
    assert send_due(now=(day + timedelta(hours=17, minutes=59)).astimezone(UTC)).sent == 0
    # Then at 18:00 one digest with the two letters
    at_six = (day + timedelta(hours=18, minutes=1)).astimezone(UTC)
    assert send_due(now=at_six).sent == 1
    assert send_due(now=at_six + timedelta(hours=1)).sent == 0  # once a day
    (message,) = smtp.inbox.parsed()
    assert "2" in message["Subject"]
    assert_no_patient_data(smtp)
    # And the next day's digest counts only what came after
    post_letter(api, 3)
    db.session.execute(  # it arrived in the evening after the first digest
        update(Delivery).where(Delivery.delivered_at > utcnow() - timedelta(minutes=1),
                               Delivery.document_id == select(Document.id).where(
                                   Document.document_id == "DPI-2026-000003").scalar_subquery())
        .values(delivered_at=at_six + timedelta(hours=2))
    )
    db.session.commit()
    next_day = at_six + timedelta(days=1)
    assert send_due(now=next_day).sent == 1
    assert [r.count for r in rows()] == [2, 1]
    # A day with nothing new sends nothing
    assert send_due(now=next_day + timedelta(days=1)).sent == 0


def test_smtp_down_then_up_delivers_exactly_once(
    app: Flask, doctor: Doctor, api: Api, smtp: Smtp
) -> None:
    post_letter(api, 1)
    smtp.stop()
    report = send_due(now=later(3))
    assert (report.sent, report.retried) == (0, 1)
    (row,) = rows()
    assert row.attempts == 1 and row.sent_at is None and row.failed_at is None
    assert row.last_error is not None and "@" not in row.last_error
    # Not due again before its retry delay
    assert send_due(now=later(3.5)).retried == 0
    smtp.start()
    assert send_due(now=later(5)).sent == 1
    assert send_due(now=later(120)).sent == 0
    assert len(smtp.inbox.messages) == 1
    (row,) = rows()
    assert row.sent_at is not None and row.attempts == 2


def test_a_permanent_failure_is_marked_after_the_last_attempt(
    app: Flask, doctor: Doctor, api: Api, smtp: Smtp
) -> None:
    post_letter(api, 1)
    smtp.stop()
    when = later(3)
    outcomes = []
    for _ in range(MAX_ATTEMPTS):
        report = send_due(now=when)
        outcomes.append((report.retried, report.failed))
        when += timedelta(days=1)
    assert outcomes[-1] == (0, 1)
    assert all(o == (1, 0) for o in outcomes[:-1])
    (row,) = rows()
    assert row.failed_at is not None and row.sent_at is None and row.attempts == MAX_ATTEMPTS
    smtp.start()
    assert send_due(now=when).sent == 0  # failed is final: the desk takes it from here
    assert smtp.inbox.messages == []


@pytest.mark.parametrize(("language", "expected", "unexpected"), [
    ("fr", "nouveaux documents", "new documents"),
    ("en", "new documents", "nouveaux documents"),
])
def test_the_email_speaks_the_doctors_language(
    app: Flask, doctor: Doctor, api: Api, smtp: Smtp, language: str, expected: str,
    unexpected: str,
) -> None:
    doctor.language = language
    db.session.commit()
    post_letter(api, 1)
    post_letter(api, 2)
    send_due(now=later(3))
    (message,) = smtp.inbox.parsed()
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert expected in text and unexpected not in text
    assert expected in message["Subject"]
    assert message["Content-Language"] == language


def test_send_due_command_prints_counts(
    app: Flask, doctor: Doctor, api: Api, smtp: Smtp
) -> None:
    post_letter(api, 1)
    db.session.execute(Notification.__table__.update().values(
        next_attempt_at=utcnow() - timedelta(seconds=1)))
    db.session.commit()
    result = app.test_cli_runner().invoke(args=["notifications", "send-due"])
    assert result.exit_code == 0, result.output
    assert "1 sent" in result.output
    assert len(smtp.inbox.messages) == 1
    result = app.test_cli_runner().invoke(args=["worker", "--once"])
    assert result.exit_code == 0, result.output
    assert "released: 0 delivered" in result.output and "0 sent" in result.output


def test_two_workers_at_once_send_each_email_once(
    app: Flask, doctor: Doctor, api: Api, smtp: Smtp
) -> None:
    # Given five due emails (each letter's arrival row closed before the next letter)
    for number in range(1, 6):
        post_letter(api, number)
        db.session.execute(update(Notification).where(
            Notification.idempotency_key == f"arrival:{doctor.id}:open").values(
            idempotency_key=f"arrival:{doctor.id}:test-{number}"))
        db.session.commit()
    assert len(rows()) == 5
    # When two workers run send-due at the same moment
    when = later(3)
    def run(start: Start) -> Any:
        with app.app_context():
            try:
                start()
                return send_due(now=when)
            finally:
                db.session.remove()

    reports = race([run, run])
    # Then every email went exactly once
    assert sum(r.sent for r in reports) == 5
    assert len(smtp.inbox.messages) == 5
    assert all(r.sent_at is not None for r in rows())


def test_the_digest_does_not_count_a_letter_reported_pas_mon_patient(
    app: Flask, doctor: Doctor, api: Api, smtp: Smtp
) -> None:
    # Given a doctor wanting a digest at 18:00, who received two letters
    doctor.notification_mode = "digest"
    doctor.digest_hour = 18
    doctor.last_digest_at = utcnow() - timedelta(days=1)
    db.session.commit()
    post_letter(api, 1)
    post_letter(api, 2)
    # When she reports one as "pas mon patient" before the digest is written
    db.session.execute(
        update(Delivery).where(Delivery.document_id == select(Document.id).where(
            Document.document_id == "DPI-2026-000001").scalar_subquery())
        .values(reported_not_my_patient_at=utcnow())
    )
    db.session.commit()
    today = utcnow().astimezone(ZURICH).date()
    at_six = (datetime(today.year, today.month, today.day, tzinfo=ZURICH)
              + timedelta(days=1, hours=18, minutes=1)).astimezone(UTC)
    # Then the digest counts only the letter still in her lists (Delivery.visible_to)
    assert send_due(now=at_six).sent == 1
    assert [r.count for r in rows()] == [1]
