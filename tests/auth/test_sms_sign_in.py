"""Doctors' second step: the SMS code, sent by the real twilio client to a local Twilio server.

Each test runs on SQLite and, with TEST_DATABASE_URL, on PostgreSQL.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update

from app.extensions import db
from tests.conftest import audit_text
from tests.support.factories import make_sms_doctor
from tests.support.login import (
    GENERIC,
    challenge_of,
    code_from,
    copy_session,
    isolated_client_fixture,  # noqa: F401
    move_back,
    page_text,
    post_code,
    post_login,
    sign_in_doctor,
    signed_in_account,
    token,
    use_twilio,
)
from tests.support.trail import events
from tests.support.twilio_server import (
    TwilioServer,
    twilio_server_fixture,  # noqa: F401
)

SMS_FAILED = "L'envoi du SMS a échoué. Réessayez dans un instant."


@pytest.fixture()
def twilio(app: Flask, twilio_server: TwilioServer) -> TwilioServer:
    use_twilio(app, twilio_server, TWILIO_TIMEOUT_SECONDS=0.5)
    make_sms_doctor()
    return twilio_server


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


def resend(client: FlaskClient) -> None:
    answer = client.post("/auth/code/resend", data={"csrf_token": token(client, "/auth/code")})
    assert answer.status_code == 303


def test_the_right_code_signs_the_doctor_in(client: FlaskClient, twilio: TwilioServer) -> None:
    answer = sign_in_doctor(client, twilio, next_path="/documents")
    assert answer.status_code == 303
    assert answer.headers["Location"] == "/documents"
    assert signed_in_account(client) is not None
    with client.session_transaction() as session:
        assert "pending" not in session
    assert events("auth.signed_in")[0].details == {"method": "sms"}


def test_a_wrong_code_counts_a_failure_and_the_right_one_still_works(
    client: FlaskClient, twilio: TwilioServer
) -> None:
    post_login(client, "cmuller")
    code = code_from(twilio)

    answer = post_code(client, wrong(code))

    assert answer.status_code == 200
    assert "Code incorrect." in page_text(answer)
    assert "essai" not in page_text(answer).lower()  # tries left are not told
    assert signed_in_account(client) is None
    assert [e.details["stage"] for e in events("auth.failed")] == ["code"]
    assert post_code(client, code).status_code == 303
    assert signed_in_account(client) is not None


def test_five_wrong_codes_end_the_attempt(client: FlaskClient, twilio: TwilioServer) -> None:
    post_login(client, "cmuller")
    code = code_from(twilio)
    for _ in range(5):
        post_code(client, wrong(code))

    answer = post_code(client, code)

    assert answer.status_code == 303
    assert answer.headers["Location"].startswith("/auth/login")
    assert signed_in_account(client) is None
    assert "Trop de codes incorrects" in page_text(client.get(answer.headers["Location"]))


def test_an_expired_code_is_refused_with_a_way_on(
    client: FlaskClient, twilio: TwilioServer
) -> None:
    post_login(client, "cmuller")
    code = code_from(twilio)
    challenge = challenge_of(client)
    move_back(challenge, expires_at=timedelta(minutes=5, seconds=1),
              sent_at=timedelta(minutes=5, seconds=1))

    answer = post_code(client, code)

    html = page_text(answer)
    assert "Ce code a expiré." in html
    assert "Renvoyer le code" in html and "Recommencer la connexion" in html
    assert signed_in_account(client) is None
    # The way on: a new code, which works.
    resend(client)
    assert post_code(client, code_from(twilio)).status_code == 303
    assert signed_in_account(client) is not None


def test_a_reused_code_does_not_sign_in_a_copy_of_the_attempt(
    app: Flask, client: FlaskClient, twilio: TwilioServer
) -> None:
    # Given an attacker holding a copy of the doctor's pending session and the code
    post_login(client, "cmuller")
    code = code_from(twilio)
    attacker = app.test_client()
    copy_session(client, attacker)
    attacker_token = token(attacker, "/auth/code")
    # When the doctor uses the code first
    assert post_code(client, code).status_code == 303
    # Then the same code in the copy signs nobody in
    answer = attacker.post("/auth/code", data={"csrf_token": attacker_token, "code": code})
    assert answer.status_code == 303
    assert answer.headers["Location"].startswith("/auth/login")
    assert signed_in_account(attacker) is None
    assert "déjà été utilisé" in page_text(attacker.get(answer.headers["Location"]))


def test_a_code_from_another_attempt_never_works(
    app: Flask, client: FlaskClient, twilio: TwilioServer
) -> None:
    other = app.test_client()
    post_login(client, "cmuller")
    mine = code_from(twilio)
    post_login(other, "cmuller")
    theirs = code_from(twilio)
    while theirs == mine:  # one chance in a million: the other browser starts again
        post_login(other, "cmuller")
        theirs = code_from(twilio)

    assert "Code incorrect." in page_text(post_code(client, theirs))
    assert signed_in_account(client) is None
    assert post_code(other, theirs).status_code == 303
    assert post_code(client, mine).status_code == 303


def test_a_resend_waits_30_seconds_and_replaces_the_code(
    client: FlaskClient, twilio: TwilioServer
) -> None:
    post_login(client, "cmuller")
    first = code_from(twilio)
    assert "dans 30 secondes" in page_text(client.get("/auth/code"))

    resend(client)
    assert len(twilio.messages) == 1
    assert "Vous pourrez demander un nouveau code dans" in page_text(client.get("/auth/code"))

    move_back(challenge_of(client), sent_at=timedelta(seconds=30))
    resend(client)
    assert len(twilio.messages) == 2
    second = code_from(twilio)
    if first != second:
        assert "Code incorrect." in page_text(post_code(client, first))
    assert post_code(client, second).status_code == 303


def test_at_most_three_resends(client: FlaskClient, twilio: TwilioServer) -> None:
    post_login(client, "cmuller")
    for _ in range(3):
        move_back(challenge_of(client), sent_at=timedelta(seconds=30))
        resend(client)
    assert len(twilio.messages) == 4
    assert "Renvoyer le code" not in page_text(client.get("/auth/code"))
    move_back(challenge_of(client), sent_at=timedelta(seconds=30))
    answer = client.post("/auth/code/resend",
                         data={"csrf_token": token(client, "/auth/code")})
    assert answer.headers["Location"].startswith("/auth/login")
    assert len(twilio.messages) == 4


def test_a_pending_sign_in_lasts_ten_minutes(client: FlaskClient, twilio: TwilioServer) -> None:
    post_login(client, "cmuller")
    code = code_from(twilio)
    with client.session_transaction() as session:
        pending = session["pending"]
        pending["at"] = time.time() - 10 * 60 - 1
        session["pending"] = pending
    answer = client.post("/auth/code", data={"csrf_token": token(client), "code": code})
    assert answer.headers["Location"].startswith("/auth/login")
    assert signed_in_account(client) is None
    assert "Votre tentative de connexion a expiré" in page_text(client.get("/auth/login"))


def test_no_code_page_without_a_pending_sign_in(client: FlaskClient) -> None:
    answer = client.get("/auth/code")
    assert answer.status_code == 303
    assert answer.headers["Location"].startswith("/auth/login")


@pytest.mark.parametrize("failure", ["http_500", "timeout"])
def test_a_twilio_failure_is_told_audited_and_can_be_retried_at_once(
    client: FlaskClient, twilio: TwilioServer, failure: str
) -> None:
    # Given Twilio answers 500, or not at all within the 0.5 s timeout
    if failure == "http_500":
        twilio.fail_with(500)
    else:
        twilio.hang(5)

    # When the doctor gives the right password
    answer = post_login(client, "cmuller")

    # Then the code page says the SMS failed and offers to send it again
    assert answer.headers["Location"] == "/auth/code"
    html = page_text(client.get("/auth/code"))
    assert SMS_FAILED in html
    assert "Renvoyer le code" in html
    assert "Vous pourrez en demander un nouveau dans" not in html  # no waiting
    [event] = events("auth.sms_failed")
    assert event.outcome == "failure"
    assert event.details["phone"] == "+41******567"
    expected = "HTTP 500" if failure == "http_500" else "timeout"
    assert expected in event.details["reason"]
    assert "+41791234567" not in audit_text()

    # And once Twilio is back, a retry at once delivers a code that works
    twilio.reset()
    if failure == "timeout":
        # The request we gave up on goes through late (as it may at Twilio): its code was
        # replaced by the retry's.
        twilio.wait_for_messages(1)
        twilio.reset()
    resend(client)
    assert len(twilio.messages) == 1
    assert post_code(client, code_from(twilio)).status_code == 303
    assert signed_in_account(client) is not None


def test_a_failed_resend_is_told_too(client: FlaskClient, twilio: TwilioServer) -> None:
    post_login(client, "cmuller")
    move_back(challenge_of(client), sent_at=timedelta(seconds=30))
    twilio.fail_with(503)
    resend(client)
    assert SMS_FAILED in page_text(client.get("/auth/code"))
    twilio.reset()
    resend(client)  # at once
    assert len(twilio.messages) == 1


def test_no_code_in_any_log_line_or_audit_event(
    client: FlaskClient, twilio: TwilioServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    post_login(client, "cmuller")
    first = code_from(twilio)
    post_code(client, wrong(first))
    move_back(challenge_of(client), sent_at=timedelta(seconds=30))
    resend(client)
    second = code_from(twilio)
    post_code(client, second)

    assert signed_in_account(client) is not None
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "SMS sent to +41******567" in logged  # the log was captured
    trail = audit_text()
    for code in (first, second):
        assert code not in logged
        assert code not in trail


def test_a_locked_account_cannot_finish_with_a_code(
    client: FlaskClient, twilio: TwilioServer
) -> None:
    from app.models import Doctor
    from app.models.base import utcnow

    post_login(client, "cmuller")
    code = code_from(twilio)
    db.session.execute(update(Doctor).values(sign_in_locked_at=utcnow()))
    db.session.commit()

    answer = post_code(client, code)

    assert answer.headers["Location"].startswith("/auth/login")
    assert GENERIC in page_text(client.get(answer.headers["Location"]))
    assert signed_in_account(client) is None
