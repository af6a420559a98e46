"""The portal served on a loopback port for browser tests, with its SMS going to a local
Twilio-compatible server, a DPI API token, and the steps every doctor journey starts with."""

from __future__ import annotations

import itertools
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pyotp
from flask import Flask
from werkzeug.serving import make_server

from app.audit import CLI
from app.auth.passwords import hash_password
from app.auth.staff_factors import totp_secret
from app.dispatch.clients import create_client
from app.extensions import db
from app.models.base import utcnow
from app.staff.accounts import create_staff
from app.staff.enrolment import enrol_sms_doctor
from tests.conftest import make_app, upgrade
from tests.support.twilio_server import TwilioServer

_CODE = re.compile(r"\b(\d{6})\b")


@dataclass
class Portal:
    url: str
    app: Flask
    twilio: TwilioServer
    token: str

    def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """A DPI API call (through the test client, with the bearer token); asserts success."""
        with self.app.app_context():
            response = self.app.test_client().open(
                path, method=method, json=body, headers={"Authorization": f"Bearer {self.token}"}
            )
            assert response.status_code < 300, response.get_json()
            return response.get_json()

    def latest_code(self, count: int) -> str:
        """The code in the ``count``-th SMS the Twilio server received (waiting for it)."""
        match = _CODE.search(self.twilio.wait_for_messages(count)[-1].body)
        assert match is not None
        return match.group(1)


@contextmanager
def serve_portal(folder: Path, **overrides: Any) -> Iterator[Portal]:
    """A fresh portal on SQLite in ``folder``, served until the block ends."""
    with TwilioServer() as twilio:
        app = make_app(f"sqlite:///{folder / 'relais.db'}", SERVER_NAME=None, **twilio.config(),
                       **overrides)
        upgrade(app)
        with app.app_context():
            _, token = create_client("dpi-browser", CLI)
            db.session.commit()
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield Portal(f"http://127.0.0.1:{server.server_port}", app, twilio, token)
        finally:
            server.shutdown()
            with app.app_context():
                db.engine.dispose()


def enrol(portal: Portal, gln: str, family: str, given: str, mobile: str) -> tuple[str, str]:
    """A doctor enrolled at the desk: (login, temporary password)."""
    with portal.app.app_context():
        enrolled = enrol_sms_doctor(gln, family, given, f"{given.lower()}@example.ch", mobile,
                                    CLI)
        db.session.commit()
        return enrolled.login, enrolled.temporary_password


def sign_in(page: Any, portal: Portal, login: str, password: str) -> None:
    """Through the real pages: login and password, then the code read from the SMS."""
    sent = len(portal.twilio.messages)
    page.goto(portal.url + "/auth/login")
    page.get_by_label("Identifiant").fill(login)
    page.get_by_label("Mot de passe").fill(password)
    page.get_by_role("button", name="Continuer").click()
    page.wait_for_url("**/auth/code")
    page.get_by_label("Code reçu par SMS").fill(portal.latest_code(sent + 1))
    page.get_by_role("button", name="Se connecter").click()
    page.wait_for_load_state()


STAFF_PASSWORD = "Relais-staff-2026!"
_staff_logins = itertools.count(1)


class Served(Protocol):
    """A portal served for a browser: its address and its app."""

    @property
    def url(self) -> str: ...

    @property
    def app(self) -> Flask: ...


def sign_in_staff(page: Any, portal: Served, role: str, landing: str = "/staff/patients") -> str:
    """A new ``staff`` or ``desk`` account (known password, confirmed authenticator), signed in
    through the real pages: ``landing`` sends to the login page, then password, then the
    authenticator's code, then back to ``landing``. Returns the login."""
    login = f"{role}-browser-{next(_staff_logins)}"
    with portal.app.app_context():
        user, _, _ = create_staff(login, role, CLI)
        user.password_hash = hash_password(STAFF_PASSWORD)
        user.must_change_password = False
        user.totp_confirmed_at = utcnow()
        db.session.commit()
        secret = totp_secret(user)
        db.session.remove()
    page.goto(portal.url + landing)
    assert "/auth/login" in page.url
    page.fill("#login", login)
    page.fill("#password", STAFF_PASSWORD)
    page.get_by_role("button", name="Continuer").click()
    page.wait_for_url(re.compile(r"/auth/totp"))
    page.fill("#code", pyotp.TOTP(secret).now())
    page.get_by_role("button", name="Se connecter").click()
    page.wait_for_url(re.compile(re.escape(landing) + "$"))
    return login
