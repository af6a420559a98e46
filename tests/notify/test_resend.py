"""The desk resends an email that failed for good, against a real SMTP server (aiosmtpd).

Every test runs on SQLite and, with TEST_DATABASE_URL, on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from app.audit import CLI, Actor
from app.extensions import db
from app.models import AuditEvent, Doctor, Notification
from app.models.base import utcnow
from app.notify.outbox import (
    MAX_ATTEMPTS,
    NOT_FAILED,
    ResendRefused,
    requeue_failed,
    send_due,
)
from app.staff.accounts import create_staff
from tests.conftest import Api, consent_body, make_app
from tests.notify.smtp_server import Smtp
from tests.support.concurrency import Start, race
from tests.support.notifications import GLN, assert_no_patient_data, post_letter, rows
from tests.support.pages import csrf_token
from tests.support.signin import sign_in_as

DESK = Actor("desk", "desk-resend")


@pytest.fixture()
def doctor(active_doctor: Doctor, api: Api) -> Doctor:
    """Dr Muller, treating doctor of Anna Muster with consent, notified at each arrival."""
    active_doctor.email = "claire.muller@cabinet.example"
    active_doctor.notification_mode = "immediate"
    db.session.commit()
    response = api.put(f"/api/v1/patients/P-0042/consents/{GLN}", json=consent_body())
    assert response.status_code in (200, 201), response.get_json()
    return active_doctor


def fail_for_good(smtp: Smtp) -> tuple[Notification, datetime]:
    """Every attempt of the one outbox row while the SMTP server is down."""
    smtp.stop()
    when = utcnow() + timedelta(minutes=3)
    for _ in range(MAX_ATTEMPTS):
        send_due(now=when)
        when += timedelta(days=1)
    (row,) = rows()
    assert row.failed_at is not None and row.attempts == MAX_ATTEMPTS
    return row, when


def test_smtp_down_fail_for_good_resend_from_the_page_then_exactly_one_email(
    app: Flask, client: FlaskClient, doctor: Doctor, api: Api, smtp: Smtp
) -> None:
    # Given an arrival email that failed for good while the SMTP server was down
    post_letter(api, 1, title="Bilan cardiologique")
    row, _ = fail_for_good(smtp)
    assert row.last_error is not None and "@" not in row.last_error
    # And the server is up again: nothing goes by itself (failed is final)
    smtp.start()
    assert send_due().sent == 0
    assert smtp.inbox.messages == []

    # When the desk presses "Renvoyer" on the page
    desk, _, _ = create_staff("desk-resend", "desk", CLI)
    desk.must_change_password = False
    db.session.commit()
    sign_in_as(client, desk)
    page = client.get("/staff/desk/notifications")
    assert "Renvoyer" in page.get_data(as_text=True)
    answer = client.post(f"/staff/desk/notifications/{row.id}/resend",
                         data={"csrf_token": csrf_token(page)})
    assert answer.status_code == 303
    # And presses it again (a double click)
    client.post(f"/staff/desk/notifications/{row.id}/resend",
                data={"csrf_token": csrf_token(page)})

    # Then the worker's command sends it, once
    result = app.test_cli_runner().invoke(args=["notifications", "send-due"])
    assert result.exit_code == 0, result.output
    assert "1 sent" in result.output
    again = app.test_cli_runner().invoke(args=["notifications", "send-due"])
    assert "0 sent" in again.output
    assert len(smtp.inbox.messages) == 1
    (message,) = smtp.inbox.parsed()
    assert message["To"] == "claire.muller@cabinet.example"
    assert message["Message-ID"] == f"<notification-{row.id}@hopital.example>"
    assert_no_patient_data(smtp)
    (row,) = rows()
    assert row.sent_at is not None and row.failed_at is None and row.attempts == 1
    resent = db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == "notification.resent")).all()
    assert len(resent) == 1 and resent[0].actor == "desk:desk-resend"


def test_a_resent_email_that_fails_again_is_retried_then_failed_again(
    app: Flask, doctor: Doctor, api: Api, smtp: Smtp
) -> None:
    post_letter(api, 1)
    row, when = fail_for_good(smtp)
    requeue_failed(row, DESK)
    db.session.commit()
    # The server is still down: the row goes through its attempts again, then back to the desk
    outcomes = []
    for _ in range(MAX_ATTEMPTS):
        report = send_due(now=when)
        outcomes.append((report.retried, report.failed))
        when += timedelta(days=1)
    assert outcomes[-1] == (0, 1) and all(o == (1, 0) for o in outcomes[:-1])
    assert smtp.inbox.messages == []


def test_two_desks_resending_at_once_requeue_once(
    app: Flask, doctor: Doctor, api: Api, smtp: Smtp
) -> None:
    post_letter(api, 1)
    row, _ = fail_for_good(smtp)
    row_id = row.id
    uri = app.config["SQLALCHEMY_DATABASE_URI"]
    db.session.remove()

    def press(name: str) -> Callable[[Start], str]:
        # Each desk's app is built here, before the threads start: two threads building Flask
        # apps at once can trip CPython 3.11's compiler ("AST constructor recursion depth").
        other = make_app(uri)

        def racer(start: Start) -> str:
            with other.app_context():
                try:
                    mine = db.session.get(Notification, row_id)
                    assert mine is not None
                    start()
                    try:
                        requeue_failed(mine, Actor("desk", name))
                        db.session.commit()
                        return "requeued"
                    except ResendRefused as refused:
                        db.session.rollback()
                        return refused.reason
                    except OperationalError as error:  # SQLite may refuse the second writer
                        db.session.rollback()
                        return type(error).__name__
                finally:
                    db.session.remove()
                    db.engine.dispose()
        return racer

    outcomes = race([press("desk-1"), press("desk-2")])
    assert outcomes.count("requeued") == 1, outcomes
    other_outcome = next(o for o in outcomes if o != "requeued")
    assert other_outcome in (NOT_FAILED, "OperationalError"), outcomes
    resent = db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == "notification.resent")).all()
    assert len(resent) == 1
    smtp.start()
    assert send_due().sent == 1
    assert send_due().sent == 0
    assert len(smtp.inbox.messages) == 1
