"""Issue 7, faults: Twilio answering 500 or not answering in time, through the real pages.

SMS go through the real ``twilio`` client to the local Twilio-compatible server
(tests/support/twilio_server.py), made to fail for the next N requests only. What must hold:

* the doctor is told clearly (French, English under the en locale) that the SMS did not go,
  and the page no longer claims that a code was sent; no number in clear, no code, no secret;
* the doctor can ask again at once, and once Twilio is healthy gets a code that signs in;
* nothing stays stuck: the pending sign-in survives, no sign-in failure is counted, a failed
  send does not use up the resends (only an SMS that went out does), a code replaced by a new
  one no longer works, and each failure is audited as ``auth.sms_failed`` without the number.
The desk's phone check (enrolment) is held to the same. Each test runs on SQLite and, with
TEST_DATABASE_URL, on PostgreSQL.
"""

from __future__ import annotations

import html
from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from app.auth import codes
from app.extensions import db
from app.models import Doctor, OneTimeCode, StaffUser
from tests.conftest import audit_text
from tests.support.desk import ENROLMENT, desk_user, doctor_by_gln, enter_code, post
from tests.support.desk import code_from as desk_code
from tests.support.factories import MOBILE, make_sms_doctor
from tests.support.login import (
    challenge_of,
    code_from,
    isolated_client_fixture,  # noqa: F401
    move_back,
    post_code,
    post_login,
    signed_in_account,
    token,
    use_twilio,
)
from tests.support.signin import sign_in_as
from tests.support.trail import events
from tests.support.trail import events as desk_events
from tests.support.twilio_server import (
    TwilioServer,
    twilio_server_fixture,  # noqa: F401
)

#: What the doctor reads, by locale: the failure (flashed), the page's own line, the retry
#: button, the line a page shows only when a code did go, and a resend that went out.
TEXTS = {
    "fr": {
        "failed": "L'envoi du SMS a échoué. Réessayez dans un instant.",
        "not_sent": "Le SMS avec votre code n'a pas pu être envoyé au +41******567.",
        "retry": "Renvoyer le code",
        "sent": "Nous avons envoyé un code à 6 chiffres par SMS au +41******567.",
        "resent": "Un nouveau code vous a été envoyé.",
    },
    "en": {
        "failed": "Sending the SMS failed. Try again in a moment.",
        "not_sent": "The SMS with your code could not be sent to +41******567.",
        "retry": "Send the code again",
        "sent": "We sent a 6-digit code by SMS to +41******567.",
        "resent": "A new code has been sent to you.",
    },
}
TIMEOUT = 0.5  # TWILIO_TIMEOUT_SECONDS of these tests
#: How long the stalling server holds a request at most: far beyond the 0.5 s the client waits.
#: The tests release it themselves (twilio.release()) once they have seen the page answer, so
#: no assertion depends on how fast this machine is.
STALL = 60.0


@pytest.fixture()
def twilio(app: Flask, twilio_server: TwilioServer) -> TwilioServer:
    use_twilio(app, twilio_server, TWILIO_TIMEOUT_SECONDS=TIMEOUT)
    make_sms_doctor()
    return twilio_server


def page(client: FlaskClient, path: str = "/auth/code") -> str:
    return html.unescape(client.get(path).get_data(as_text=True))


def doctor() -> Doctor:
    db.session.expire_all()
    found = db.session.scalar(select(Doctor).where(Doctor.login == "cmuller"))
    assert found is not None
    return found


def resend(client: FlaskClient) -> None:
    answer = client.post("/auth/code/resend", data={"csrf_token": token(client, "/auth/code")})
    assert answer.status_code == 303
    assert answer.headers["Location"] == "/auth/code"  # never back to the start


def assert_told_it_failed(text: str, locale: str) -> None:
    words = TEXTS[locale]
    assert words["failed"] in text and words["not_sent"] in text and words["retry"] in text
    assert words["sent"] not in text  # the page does not pretend a code went
    assert MOBILE not in text and MOBILE[1:] not in text


def assert_nothing_stuck(client: FlaskClient, sends: int) -> OneTimeCode:
    """The attempt is open (retriable at once when no SMS went); nothing counted against the
    doctor; ``sends`` SMS counted, those that went out."""
    challenge = challenge_of(client)
    assert challenge.used_at is None and challenge.tries == 0
    assert challenge.sends == sends
    wait = codes.wait_before_resend(challenge)
    assert wait == timedelta(0) if sends == 0 else wait > timedelta(seconds=20)
    account = doctor()
    assert account.failed_sign_ins == 0 and account.sign_in_locked_at is None
    return challenge


@pytest.mark.parametrize("locale", ["fr", "en"])
def test_twilio_500_for_as_many_sends_as_the_budget_then_healthy_the_doctor_signs_in(
    client: FlaskClient, twilio: TwilioServer, locale: str
) -> None:
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = locale
    # Given Twilio answers 500 to as many requests as an attempt may send SMS in all
    twilio.fail_with(500, times=codes.MAX_SENDS)

    # When the doctor gives the right password
    answer = post_login(client, "cmuller")

    # Then the code page says clearly that the SMS did not go, and offers to send it again
    assert answer.headers["Location"] == "/auth/code"
    assert_told_it_failed(page(client), locale)
    assert_nothing_stuck(client, sends=0)

    # When the doctor asks again, at once, while Twilio still fails (three more times)
    for _ in range(codes.MAX_SENDS - 1):
        resend(client)
        assert_told_it_failed(page(client), locale)
        assert_nothing_stuck(client, sends=0)
    assert twilio.messages == [] and twilio.request_count == codes.MAX_SENDS

    # Then, Twilio healthy again, one more request sends a code: the failures used up nothing
    resend(client)
    text = page(client)
    assert TEXTS[locale]["resent"] in text and TEXTS[locale]["sent"] in text
    assert TEXTS[locale]["failed"] not in text and TEXTS[locale]["not_sent"] not in text
    challenge = assert_nothing_stuck(client, sends=1)
    assert codes.resends_left(challenge) == codes.MAX_SENDS - 1
    (message,) = twilio.messages
    assert message.to == MOBILE

    # And that code signs the doctor in
    code = code_from(twilio)
    assert post_code(client, code).status_code == 303
    assert signed_in_account(client) is not None

    # And each failure is in the trail, with the number masked, the reason and no code
    failed = events("auth.sms_failed")
    assert len(failed) == codes.MAX_SENDS
    assert all(e.outcome == "failure" and e.details["phone"] == "+41******567" for e in failed)
    assert all("HTTP 500" in e.details["reason"] for e in failed)
    trail = audit_text()
    assert MOBILE not in trail and MOBILE[1:] not in trail and code not in trail


def test_twilio_timing_out_the_doctor_retries_and_only_the_newest_code_works(
    client: FlaskClient, twilio: TwilioServer
) -> None:
    # Given Twilio holds the next request, far beyond the 0.5 s the client waits
    twilio.hang(STALL, times=1)

    # When the doctor gives the right password
    answer = post_login(client, "cmuller")

    # Then the page answers after the client's timeout, while Twilio still holds the request
    # (it has received it and accepted nothing yet), and says that the SMS did not go
    assert twilio.request_count == 1 and twilio.messages == []
    assert answer.headers["Location"] == "/auth/code"
    assert_told_it_failed(page(client), "fr")
    assert_nothing_stuck(client, sends=0)
    [event] = events("auth.sms_failed")
    assert "timeout" in event.details["reason"] and MOBILE not in audit_text()

    # And the request given up on is delivered late anyway (as it may be at Twilio)
    twilio.release()
    (late,) = twilio.wait_for_messages(1, timeout=10)
    late_code = code_from(twilio)

    # When the doctor asks again at once, Twilio healthy
    resend(client)
    assert len(twilio.messages) == 2
    new_code = code_from(twilio)
    assert late.sid != twilio.messages[-1].sid
    assert TEXTS["fr"]["sent"] in page(client)

    # Then the late code no longer works, the new one does
    refused = post_code(client, late_code)
    if late_code != new_code:  # (one chance in a million that they are equal)
        assert refused.status_code == 200
        assert "Code incorrect." in html.unescape(refused.get_data(as_text=True))
        assert signed_in_account(client) is None
    assert post_code(client, new_code).status_code == 303
    assert signed_in_account(client) is not None


# --- the desk's phone check, at enrolment ---------------------------------------------------


def test_the_desk_phone_check_survives_a_twilio_timeout_on_resend(
    app: Flask, client: FlaskClient, twilio_server: TwilioServer
) -> None:
    use_twilio(app, twilio_server, TWILIO_TIMEOUT_SECONDS=TIMEOUT)
    desk: StaffUser = desk_user()
    sign_in_as(client, desk)
    # Given an enrolment whose first code went out, half a minute ago
    assert post(client, "/staff/desk/enrol", ENROLMENT).status_code == 303
    first = desk_code(twilio_server)
    challenge = db.session.scalar(select(OneTimeCode))
    assert challenge is not None
    move_back(challenge, sent_at=timedelta(seconds=30))

    # When the desk asks for a new code while Twilio does not answer in time
    twilio_server.hang(STALL, times=1)
    answer = post(client, "/staff/desk/enrol/resend")

    # Then the desk is told, stays on the check, and may ask again at once
    assert answer.headers["Location"] == "/staff/desk/enrol/verify"
    text = html.unescape(client.get("/staff/desk/enrol/verify").get_data(as_text=True))
    assert "L'envoi du SMS a échoué. Réessayez dans un instant." in text
    [failed] = desk_events("desk.phone_code_failed")
    assert "timeout" in failed.details["error"] and MOBILE not in audit_text()
    assert len(twilio_server.messages) == 1  # Twilio still holds the resend
    twilio_server.release()
    twilio_server.wait_for_messages(2, timeout=10)  # the late one arrives anyway
    late = desk_code(twilio_server)
    answer = post(client, "/staff/desk/enrol/resend")
    assert answer.headers["Location"] == "/staff/desk/enrol/verify"
    assert len(twilio_server.messages) == 3
    newest = desk_code(twilio_server)

    # And only the newest code proves the phone: the first and the late one are refused
    for old in {first, late} - {newest}:
        assert enter_code(client, old).status_code == 422
    assert doctor_by_gln() is None
    assert enter_code(client, newest).headers["Location"] == "/staff/desk/credentials"
    enrolled = doctor_by_gln()
    assert enrolled is not None and enrolled.state == "active"
