"""Signing in through the real pages, as a browser does: the password step, the SMS code, and
what a test reads of the outcome (the session's account, the page's text).

Used by the sign-in tests of tests/auth/ and by the tests that need a real sign-in elsewhere
(faults, logs). The ``client`` fixture here (``isolated_client_fixture``) gives each request an
app context of its own; a module imports it to use it.
"""

from __future__ import annotations

import html
import re
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask, has_app_context
from flask.testing import FlaskClient
from sqlalchemy import select, update
from werkzeug.test import TestResponse

from app.extensions import db
from app.models import OneTimeCode
from tests.conftest import OurPagesClient
from tests.support.factories import PASSWORD
from tests.support.pages import csrf_token
from tests.support.twilio_server import TwilioServer

GENERIC = "Identifiant ou mot de passe incorrect, ou compte indisponible."
_CODE_IN_SMS = re.compile(r"\b(\d{6})\b")

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


def challenge_of(client: FlaskClient) -> OneTimeCode:
    """The SMS code challenge of ``client``'s pending sign-in."""
    with client.session_transaction() as session:
        handle = session["pending"]["handle"]
    found = db.session.scalar(select(OneTimeCode).where(OneTimeCode.handle == handle))
    assert found is not None
    return found


def move_back(challenge: OneTimeCode, **columns: timedelta) -> None:
    """Moves the attempt's clock columns into the past (freezegun is not in requirements)."""
    values = {name: getattr(challenge, name) - delta for name, delta in columns.items()}
    db.session.execute(update(OneTimeCode).where(OneTimeCode.id == challenge.id).values(values))
    db.session.commit()
