"""The first sign-in step (issue 3): one login namespace, a password, then the second factor.

The helpers at the top are shared by the other sign-in test modules of tests/auth/.
Each test runs on SQLite and, with TEST_DATABASE_URL, on PostgreSQL.
"""

from __future__ import annotations

import re

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.auth.passwords import needs_rehash, verify_password
from app.extensions import db
from tests.support.factories import MOBILE, PASSWORD, make_sms_doctor, make_staff
from tests.support.login import (
    GENERIC,
    isolated_client_fixture,  # noqa: F401
    page_text,
    post_login,
    sign_in_doctor,
    signed_in_account,
    use_twilio,
)
from tests.support.trail import events
from tests.support.twilio_server import (
    TwilioServer,
    twilio_server_fixture,  # noqa: F401
)

# --- the page -------------------------------------------------------------------------------


def test_the_sign_in_page_offers_hin_and_the_password_form(client: FlaskClient) -> None:
    html = page_text(client.get("/auth/login?next=/documents/7"))
    assert 'href="/auth/hin/login?next=%2Fdocuments%2F7"' in html
    assert "Se connecter avec HIN" in html
    for field in ('name="login"', 'autocomplete="username"', 'name="password"',
                  'autocomplete="current-password"', 'name="next" value="/documents/7"',
                  ">Continuer<"):
        assert field in html
    assert "Contactez l'accueil des médecins" in html  # forgotten password


def test_the_sign_in_page_in_english(client: FlaskClient) -> None:
    html = page_text(client.get("/auth/login", headers={"Accept-Language": "en"}))
    assert "Sign in with HIN" in html
    assert ">Continue<" in html


def test_a_signed_in_user_is_sent_on_from_the_sign_in_page(
    app: Flask, client: FlaskClient, twilio_server: TwilioServer
) -> None:
    use_twilio(app, twilio_server)
    make_sms_doctor()
    sign_in_doctor(client, twilio_server)
    answer = client.get("/auth/login?next=/profile")
    assert answer.status_code == 303
    assert answer.headers["Location"] == "/profile"


# --- doctors: password then SMS code -------------------------------------------------------


def test_a_right_password_starts_a_pending_sign_in_and_sends_a_code(
    app: Flask, client: FlaskClient, twilio_server: TwilioServer
) -> None:
    use_twilio(app, twilio_server)
    doctor = make_sms_doctor()

    answer = post_login(client, "cmuller", next_path="/documents")

    assert answer.status_code == 303
    assert answer.headers["Location"] == "/auth/code"
    with client.session_transaction() as session:
        pending = session["pending"]
        assert "_user_id" not in session  # not signed in before the second factor
    assert pending["account"] == f"doctor:{doctor.id}"
    assert pending["stage"] == "code"
    assert pending["next"] == "/documents"
    assert pending["handle"]
    message = twilio_server.last_message()
    assert message.to == MOBILE
    assert re.fullmatch(r"Relais : votre code de connexion est \d{6}\. "
                        r"Il est valable 5 minutes\.", message.body)
    assert "+41******567" in page_text(client.get("/auth/code"))  # masked phone


def test_the_sms_speaks_the_language_of_the_page(
    app: Flask, client: FlaskClient, twilio_server: TwilioServer
) -> None:
    use_twilio(app, twilio_server)
    make_sms_doctor()
    post_login(client, "cmuller", headers={"Accept-Language": "en"})
    assert re.fullmatch(r"Relais: your sign-in code is \d{6}\. It is valid for 5 minutes\.",
                        twilio_server.last_message().body)


def test_logins_are_compared_without_case(
    app: Flask, client: FlaskClient, twilio_server: TwilioServer
) -> None:
    use_twilio(app, twilio_server)
    make_sms_doctor()
    answer = post_login(client, "  CMuller ")
    assert answer.headers["Location"] == "/auth/code"


def test_a_wrong_password_counts_a_failure_and_says_nothing_more(
    app: Flask, client: FlaskClient, twilio_server: TwilioServer
) -> None:
    use_twilio(app, twilio_server)
    doctor = make_sms_doctor()

    answer = post_login(client, "cmuller", "not-the-password")

    assert answer.status_code == 200
    assert GENERIC in page_text(answer)
    assert 'value="cmuller"' in page_text(answer)  # the login stays typed
    db.session.refresh(doctor)
    assert doctor.failed_sign_ins == 1
    assert [e.details["stage"] for e in events("auth.failed")] == ["password"]
    assert twilio_server.messages == []
    with client.session_transaction() as session:
        assert "pending" not in session


def test_a_doctor_without_mobile_cannot_sign_in_by_sms(
    app: Flask, client: FlaskClient, twilio_server: TwilioServer
) -> None:
    use_twilio(app, twilio_server)
    make_sms_doctor(mobile=None)
    answer = post_login(client, "cmuller")
    assert GENERIC in page_text(answer)
    assert twilio_server.messages == []
    assert events("auth.refused")[0].details == {"stage": "password", "reason": "no_mobile"}


def test_an_old_hash_is_upgraded_at_sign_in(
    app: Flask, client: FlaskClient, twilio_server: TwilioServer
) -> None:
    use_twilio(app, twilio_server)
    doctor = make_sms_doctor()
    old = doctor.password_hash
    assert old is not None and needs_rehash(old)

    post_login(client, "cmuller")

    db.session.refresh(doctor)
    assert doctor.password_hash != old
    assert doctor.password_hash is not None
    assert doctor.password_hash.startswith("$argon2id$")
    assert not needs_rehash(doctor.password_hash)
    assert verify_password(doctor.password_hash, PASSWORD)


def test_empty_fields_are_asked_for(client: FlaskClient) -> None:
    answer = post_login(client, "", "")
    assert "Saisissez votre identifiant et votre mot de passe." in page_text(answer)


# --- staff: password then authenticator --------------------------------------------------


def test_staff_go_on_to_their_authenticator(client: FlaskClient) -> None:
    user = make_staff()
    answer = post_login(client, "M.Dupont", next_path="/staff")
    assert answer.status_code == 303
    assert answer.headers["Location"] == "/auth/totp"
    with client.session_transaction() as session:
        assert session["pending"]["account"] == f"staff:{user.id}"
        assert session["pending"]["stage"] == "totp"
        assert "_user_id" not in session


def test_staff_without_a_confirmed_authenticator_enrol_first(client: FlaskClient) -> None:
    make_staff(enrolled=False)
    answer = post_login(client, "m.dupont")
    assert answer.headers["Location"] == "/auth/totp/enrol"


# --- landing --------------------------------------------------------------------------------


@pytest.mark.parametrize(("next_path", "landing"), [(None, "/"), ("/documents?page=2",
                                                                  "/documents?page=2")])
def test_after_sign_in_the_doctor_lands_on_next_or_home(
    app: Flask, client: FlaskClient, twilio_server: TwilioServer, next_path: str | None,
    landing: str
) -> None:
    use_twilio(app, twilio_server)
    doctor = make_sms_doctor()
    answer = sign_in_doctor(client, twilio_server, next_path=next_path)
    assert answer.status_code == 303
    assert answer.headers["Location"] == landing
    assert signed_in_account(client) == f"doctor:{doctor.id}:{doctor.session_epoch}"
    assert "Claire Muller" in page_text(client.get("/", follow_redirects=True))
