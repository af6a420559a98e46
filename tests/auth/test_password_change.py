"""Changing a password: forced for a temporary one at first sign-in, or by choice.

Each test runs on SQLite and, with TEST_DATABASE_URL, on PostgreSQL.
"""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from app.auth.passwords import verify_password
from app.extensions import db
from app.models import Doctor
from tests.support.factories import PASSWORD, make_sms_doctor
from tests.support.login import (
    GENERIC,
    isolated_client_fixture,  # noqa: F401
    page_text,
    post_login,
    sign_in_doctor,
    signed_in_account,
    token,
)
from tests.support.signin import sign_in_as
from tests.support.trail import events
from tests.support.twilio_server import TwilioServer

NEW = "violet-harbour-cinnamon-piano"


def change(client: FlaskClient, new: str = NEW, confirm: str | None = None,
           current: str | None = None, **headers: str) -> TestResponse:
    data = {"csrf_token": token(client, "/auth/password"), "new_password": new,
            "confirm_password": new if confirm is None else confirm}
    if current is not None:
        data["current_password"] = current
    return client.post("/auth/password", data=data, headers=headers)


def test_a_temporary_password_must_be_changed_first(
    client: FlaskClient, twilio: TwilioServer
) -> None:
    make_sms_doctor(must_change_password=True)

    answer = sign_in_doctor(client, twilio, next_path="/documents")

    assert answer.headers["Location"] == "/auth/password"
    html = page_text(client.get("/auth/password"))
    assert "Votre mot de passe est provisoire" in html
    assert 'name="current_password"' not in html  # proven minutes ago, with the SMS code
    assert html.count('autocomplete="new-password"') == 2
    # Every other page waits for the change
    other = client.post("/auth/logout-everywhere", data={"csrf_token": token(client, "/")})
    assert other.headers["Location"] == "/auth/password"


def test_the_forced_change_leads_on_to_where_the_doctor_was_going(
    client: FlaskClient, twilio: TwilioServer
) -> None:
    doctor = make_sms_doctor(must_change_password=True)
    sign_in_doctor(client, twilio, next_path="/documents")

    answer = change(client)

    assert answer.status_code == 303
    assert answer.headers["Location"] == "/documents"
    db.session.refresh(doctor)
    assert not doctor.must_change_password
    assert doctor.password_hash is not None
    assert doctor.password_hash.startswith("$argon2id$")
    assert verify_password(doctor.password_hash, NEW)
    assert signed_in_account(client) == f"doctor:{doctor.id}:{doctor.session_epoch}"
    assert "Votre mot de passe a été changé." in page_text(client.get("/", follow_redirects=True))
    [event] = events("auth.password_changed")
    assert event.details == {"forced": True}
    assert NEW not in str(event.details)


def test_the_new_password_signs_in_and_the_old_one_no_longer(
    app: Flask, client: FlaskClient, twilio: TwilioServer
) -> None:
    make_sms_doctor(must_change_password=True)
    sign_in_doctor(client, twilio)
    change(client)
    client.post("/auth/logout", data={"csrf_token": token(client, "/")})

    assert GENERIC in page_text(post_login(client, "cmuller", PASSWORD))
    assert post_login(client, "cmuller", NEW).headers["Location"] == "/auth/code"


@pytest.mark.parametrize(
    ("new", "message"),
    [
        ("short-one", "Le mot de passe doit compter au moins 12 caractères."),
        ("password1234", "Ce mot de passe fait partie des plus courants"),
        ("cmuller-the-doctor-2026", "Le mot de passe ne doit contenir ni votre identifiant"),
        ("aaaaaaaaaaaaaaaa", "trop facile à deviner"),
    ],
)
def test_weak_passwords_are_refused_with_the_reason(
    client: FlaskClient, twilio: TwilioServer, new: str, message: str
) -> None:
    doctor = make_sms_doctor(must_change_password=True)
    sign_in_doctor(client, twilio)
    answer = change(client, new)
    assert answer.status_code == 200
    assert message in page_text(answer)
    db.session.refresh(doctor)
    assert doctor.must_change_password


def test_the_reasons_in_english(client: FlaskClient, twilio: TwilioServer) -> None:
    doctor = make_sms_doctor(must_change_password=True)
    doctor.language = "en"  # Mon profil's language applies from sign-in on
    db.session.commit()
    sign_in_doctor(client, twilio)
    answer = change(client, "short-one")
    assert "The password must have at least 12 characters." in page_text(answer)


def test_the_two_new_passwords_must_match(client: FlaskClient, twilio: TwilioServer) -> None:
    make_sms_doctor(must_change_password=True)
    sign_in_doctor(client, twilio)
    answer = change(client, NEW, NEW + "x")
    assert "Les deux nouveaux mots de passe ne sont pas identiques." in page_text(answer)


def test_the_temporary_password_cannot_be_kept(app: Flask, client: FlaskClient) -> None:
    from tests.support.factories import weak_hash

    strong = "copper-lantern-meadow-falcon"
    doctor = make_sms_doctor(must_change_password=True)
    doctor.password_hash = weak_hash(strong)
    db.session.commit()
    sign_in_as(client, doctor)
    answer = change(client, strong)
    assert "Choisissez un mot de passe différent de l'actuel." in page_text(answer)


def test_a_voluntary_change_asks_for_the_current_password(
    app: Flask, client: FlaskClient
) -> None:
    doctor = make_sms_doctor()
    sign_in_as(client, doctor)
    assert 'name="current_password"' in page_text(client.get("/auth/password"))

    wrong = change(client, current="not-my-password")
    assert "Le mot de passe actuel est incorrect." in page_text(wrong)
    db.session.refresh(doctor)
    assert doctor.failed_sign_ins == 1
    assert doctor.password_hash is not None and verify_password(doctor.password_hash, PASSWORD)

    right = change(client, current=PASSWORD)
    assert right.status_code == 303
    db.session.refresh(doctor)
    assert doctor.password_hash is not None and verify_password(doctor.password_hash, NEW)
    assert events("auth.password_changed")[0].details == {"forced": False}


def test_a_change_ends_every_other_session_but_this_one(app: Flask, client: FlaskClient) -> None:
    doctor = make_sms_doctor()
    other_device = app.test_client()
    sign_in_as(other_device, doctor)
    sign_in_as(client, doctor)
    assert other_device.get("/auth/password").status_code == 200

    change(client, current=PASSWORD)

    assert client.get("/auth/password").status_code == 200
    gone = other_device.get("/auth/password")
    assert gone.status_code == 303
    assert gone.headers["Location"].startswith("/auth/login")
    assert db.session.get(Doctor, doctor.id).session_epoch == 1  # type: ignore[union-attr]


def test_a_hin_doctor_has_no_relais_password_to_change(app: Flask, client: FlaskClient) -> None:
    # HIN manages that doctor's password; the form would only count failures up to a lockout.
    doctor = Doctor(gln="7601000000026", family_name="Rochat", given_name="Luc", state="active")
    db.session.add(doctor)
    db.session.commit()
    sign_in_as(client, doctor)
    assert "Changer le mot de passe" not in page_text(client.get("/", follow_redirects=True))

    assert client.get("/auth/password").status_code == 404
    assert change(client, current="anything").status_code == 404
    db.session.refresh(doctor)
    assert doctor.failed_sign_ins == 0
