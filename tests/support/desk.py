"""The service desk as a test drives it: a desk user, its forms posted with their CSRF token,
the enrolment form's values and the SMS code the desk reads out.

Used by the desk's tests (tests/staff/) and by the SMS fault tests (tests/faults/).
"""

from __future__ import annotations

import re
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import func, select
from werkzeug.test import TestResponse

from app.extensions import db
from app.models import Doctor, StaffUser
from tests.support.factories import make_staff
from tests.support.pages import csrf_token
from tests.support.twilio_server import TwilioServer

GLN = "7601000000026"
_CODE = re.compile(r"\b(\d{6})\b")

ENROLMENT = {
    "gln": GLN,
    "family_name": "Rochat",
    "given_name": "Luc",
    "email": "luc.rochat@example.ch",
    "mobile": "079 123 45 67",
    "id_document": "identity_card",
    "id_last4": "4b7x",
}


def desk_user(login: str = "desk-test") -> StaffUser:
    """A desk account with its temporary password, signed in by ``sign_in_as`` in the tests."""
    return make_staff(login, "desk", password=None, enrolled=False)


def token(client: FlaskClient, path: str = "/staff/desk") -> str:
    return csrf_token(client.get(path, follow_redirects=True))


def post(client: FlaskClient, path: str, data: dict[str, str] | None = None) -> TestResponse:
    return client.post(path, data={"csrf_token": token(client), **(data or {})})


def text(response: TestResponse) -> str:
    return response.get_data(as_text=True)


def code_from(server: TwilioServer) -> str:
    match = _CODE.search(server.last_message().body)
    assert match is not None, "the SMS carries no 6-digit code"
    return match.group(1)


def count(model: Any) -> int:
    return int(db.session.scalar(select(func.count()).select_from(model)) or 0)


def doctor_by_gln(gln: str = GLN) -> Doctor | None:
    db.session.expire_all()
    return db.session.scalar(select(Doctor).where(Doctor.gln == gln))


def enter_code(client: FlaskClient, code: str) -> TestResponse:
    return post(client, "/staff/desk/enrol/verify", {"code": code})
