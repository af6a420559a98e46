"""The first sign-in step (issue 3): one login namespace, a password, then the second factor.

The helpers at the top are shared by the other sign-in test modules of tests/auth/.
Each test runs on SQLite and, with TEST_DATABASE_URL, on PostgreSQL.
"""

from __future__ import annotations

import html
import re
from typing import Any

import pytest
from argon2 import PasswordHasher, Type
from flask import Flask, has_app_context
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.test import TestResponse

from app.audit import CLI
from app.auth.passwords import needs_rehash, verify_password
from app.extensions import db
from app.models import AuditEvent, Doctor, StaffUser
from app.models.base import utcnow
from app.staff.accounts import create_staff
from tests.conftest import OurPagesClient
from tests.support.twilio_server import (
    TwilioServer,
    twilio_server_fixture,  # noqa: F401
)
from tests.web.test_pages import csrf_token

PASSWORD = "orange-tuba-glacier-mistral"
MOBILE = "+41791234567"
GENERIC = "Identifiant ou mot de passe incorrect, ou compte indisponible."
_CODE_IN_SMS = re.compile(r"\b(\d{6})\b")

# A cheap argon2id hash: fast tests, and a hash that `needs_rehash` wants to upgrade.
_weak_hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1, type=Type.ID)


def weak_hash(password: str = PASSWORD) -> str:
    return _weak_hasher.hash(password)


def make_doctor(login: str | None = "cmuller", *, password: str = PASSWORD,
                mobile: str | None = MOBILE, must_change_password: bool = False,
                state: str = "active", gln: str = "7601000000019") -> Doctor:
    doctor = Doctor(gln=gln, family_name="Muller", given_name="Claire", email="c.muller@example.ch",
                    mobile=mobile, state=state, activated_at=utcnow(), login=login,
                    password_hash=weak_hash(password),
                    must_change_password=must_change_password)
    db.session.add(doctor)
    db.session.commit()
    return doctor


def make_staff(login: str = "m.dupont", role: str = "staff", *, password: str = PASSWORD,
               enrolled: bool = True, must_change_password: bool = False) -> StaffUser:
    user, _, _ = create_staff(login, role, CLI)
    user.password_hash = weak_hash(password)
    user.must_change_password = must_change_password
    if enrolled:
        user.totp_confirmed_at = utcnow()
    db.session.commit()
    return user


def use_twilio(app: Flask, server: TwilioServer, **overrides: Any) -> None:
    app.config.update(server.config(**overrides))


class IsolatedClient(OurPagesClient):
    """A test client whose every request runs in an app context of its own, as on a server.

    The ``app`` fixture keeps one app context pushed, and a request reuses it, so consecutive
    requests would share ``g``: where Flask-Login caches the signed-in user and Flask-WTF the
    CSRF token. Two clients (a doctor and an attacker) must not share them. The test's own
    database session is expired after each request, so that it reads what the request wrote.
    Like every test client, it sends what a browser sends on our own pages (``OurPagesClient``).
    """

    def open(self, *args: Any, **kwargs: Any) -> TestResponse:
        with self.application.app_context():
            response = super().open(*args, **kwargs)
        if has_app_context():
            db.session.expire_all()
        return response


@pytest.fixture(name="client")
def isolated_client_fixture(app: Flask) -> FlaskClient:
    app.test_client_class = IsolatedClient
    return app.test_client()


def token(client: FlaskClient, path: str = "/auth/login") -> str:
    """The CSRF token of ``client``'s session, from a page at ``path``."""
    return csrf_token(client.get(path, follow_redirects=True))


def post_login(client: FlaskClient, login: str, password: str = PASSWORD,
               next_path: str | None = None, **extra: Any) -> TestResponse:
    data = {"csrf_token": token(client), "login": login, "password": password}
    if next_path is not None:
        data["next"] = next_path
    return client.post("/auth/login", data=data, **extra)


def code_from(server: TwilioServer, index: int = -1) -> str:
    messages = server.messages
    assert messages, "no SMS reached the Twilio test server"
    match = _CODE_IN_SMS.search(messages[index].body)
    assert match is not None, "the SMS carries no 6-digit code"
    return match.group(1)


def post_code(client: FlaskClient, code: str) -> TestResponse:
    return client.post("/auth/code", data={"csrf_token": token(client, "/auth/code"),
                                           "code": code})


def sign_in_doctor(client: FlaskClient, server: TwilioServer, login: str = "cmuller",
                   next_path: str | None = None) -> TestResponse:
    """The whole SMS sign-in, as a browser does it; returns the answer to the code."""
    sent = len(server.messages)
    answer = post_login(client, login, next_path=next_path)
    assert answer.status_code == 303, answer.get_data(as_text=True)
    assert answer.headers["Location"] == "/auth/code"
    assert len(server.messages) == sent + 1
    return post_code(client, code_from(server))


def signed_in_account(client: FlaskClient) -> str | None:
    with client.session_transaction() as session:
        value = session.get("_user_id")
    return str(value) if value else None


def copy_session(source: FlaskClient, target: FlaskClient) -> str:
    """Gives ``target`` the session cookie of ``source`` (a stolen or planted cookie)."""
    cookie = source.get_cookie("relais", domain="relais.test")
    assert cookie is not None
    target.set_cookie("relais", cookie.value, domain="relais.test")
    return cookie.value


def page_text(response: TestResponse) -> str:
    """The page's HTML with entities decoded (Jinja writes ' as &#39;)."""
    return html.unescape(response.get_data(as_text=True))


def events(action: str) -> list[AuditEvent]:
    return list(db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)))


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
    make_doctor()
    sign_in_doctor(client, twilio_server)
    answer = client.get("/auth/login?next=/profile")
    assert answer.status_code == 303
    assert answer.headers["Location"] == "/profile"


# --- doctors: password then SMS code -------------------------------------------------------


def test_a_right_password_starts_a_pending_sign_in_and_sends_a_code(
    app: Flask, client: FlaskClient, twilio_server: TwilioServer
) -> None:
    use_twilio(app, twilio_server)
    doctor = make_doctor()

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
    make_doctor()
    post_login(client, "cmuller", headers={"Accept-Language": "en"})
    assert re.fullmatch(r"Relais: your sign-in code is \d{6}\. It is valid for 5 minutes\.",
                        twilio_server.last_message().body)


def test_logins_are_compared_without_case(
    app: Flask, client: FlaskClient, twilio_server: TwilioServer
) -> None:
    use_twilio(app, twilio_server)
    make_doctor()
    answer = post_login(client, "  CMuller ")
    assert answer.headers["Location"] == "/auth/code"


def test_a_wrong_password_counts_a_failure_and_says_nothing_more(
    app: Flask, client: FlaskClient, twilio_server: TwilioServer
) -> None:
    use_twilio(app, twilio_server)
    doctor = make_doctor()

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
    make_doctor(mobile=None)
    answer = post_login(client, "cmuller")
    assert GENERIC in page_text(answer)
    assert twilio_server.messages == []
    assert events("auth.refused")[0].details == {"stage": "password", "reason": "no_mobile"}


def test_an_old_hash_is_upgraded_at_sign_in(
    app: Flask, client: FlaskClient, twilio_server: TwilioServer
) -> None:
    use_twilio(app, twilio_server)
    doctor = make_doctor()
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
    doctor = make_doctor()
    answer = sign_in_doctor(client, twilio_server, next_path=next_path)
    assert answer.status_code == 303
    assert answer.headers["Location"] == landing
    assert signed_in_account(client) == f"doctor:{doctor.id}:{doctor.session_epoch}"
    assert "Claire Muller" in page_text(client.get("/", follow_redirects=True))
