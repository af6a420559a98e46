"""Mon profil: each preference persists and takes effect; a new email address needs its link."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update

from app.extensions import db
from app.models import Doctor, EmailChange
from app.models.base import utcnow
from app.notify.outbox import send_due
from app.profile.preferences import PREFERENCES
from tests.notify.smtp_server import Smtp, serving
from tests.support.pages import csrf_token
from tests.support.signin import sign_in_as
from tests.support.trail import events

OLD = "claire.muller@cabinet.example"
NEW = "c.muller@nouveau-cabinet.example"


@pytest.fixture()
def mail(app: Flask) -> Iterator[Smtp]:
    with serving(app) as server:
        yield server


@pytest.fixture()
def doctor(active_doctor: Doctor, client: FlaskClient) -> Doctor:
    active_doctor.email = OLD
    db.session.commit()
    sign_in_as(client, active_doctor)
    return active_doctor


def form(client: FlaskClient, **changes: Any) -> dict[str, Any]:
    """The profile form as the page fills it, with changes."""
    page = client.get("/profile")
    assert page.status_code == 200
    doctor = db.session.scalar(select(Doctor))
    assert doctor is not None
    data: dict[str, Any] = {"csrf_token": csrf_token(page), "email": doctor.email or ""}
    for p in PREFERENCES:
        value = getattr(doctor, p.name)
        data[p.name] = value if p.kind == "multi" else str(value)
    data.update(changes)
    return data


def reload(doctor: Doctor) -> Doctor:
    db.session.expire_all()
    fresh = db.session.get(Doctor, doctor.id)
    assert fresh is not None
    return fresh


@pytest.mark.parametrize(("field", "value"), [
    ("notification_mode", "digest"),
    ("digest_hour", "18"),
    ("specialties", ["cardiologie", "pediatrie"]),
    ("patients_view", "recent"),
    ("patients_recent_months", "6"),
    ("documents_view", "unread"),
    ("landing_page", "patients"),
    ("language", "en"),
])
def test_each_preference_persists_and_is_audited(
    client: FlaskClient, doctor: Doctor, field: str, value: Any
) -> None:
    response = client.post("/profile", data=form(client, **{field: value}))
    assert response.status_code == 303
    saved = getattr(reload(doctor), field)
    assert saved == (value if isinstance(value, list) else type(saved)(value))
    (event,) = events("profile.updated")
    assert event.details == {"fields": [field]}
    assert event.actor == f"doctor:{doctor.gln}"


def test_the_page_after_sign_in_follows_the_profile(client: FlaskClient, doctor: Doctor) -> None:
    assert client.get("/").headers["Location"].endswith("/documents")
    client.post("/profile", data=form(client, landing_page="profile"))
    assert client.get("/").headers["Location"].endswith("/profile")
    client.post("/profile", data=form(client, landing_page="patients"))
    assert client.get("/").headers["Location"].endswith("/patients")


def test_the_language_follows_the_profile_now_and_at_the_next_sign_in(
    app: Flask, client: FlaskClient, doctor: Doctor
) -> None:
    client.post("/profile", data=form(client, language="en"))
    assert "My profile" in client.get("/profile").get_data(as_text=True)
    # A new browser: the sign-in sets the doctor's language (start_session)
    with app.test_request_context("/"):
        from flask import session

        from app.auth.session import start_session

        start_session(reload(doctor), method="test")
        assert session["lang"] == "en"
        db.session.rollback()


def test_the_header_language_switch_is_the_profile_setting(
    client: FlaskClient, doctor: Doctor
) -> None:
    token = csrf_token(client.get("/profile"))
    client.post("/lang", data={"lang": "en", "next": "/profile", "csrf_token": token})
    assert reload(doctor).language == "en"
    assert [e.details for e in events("profile.updated")] == [{"fields": ["language"]}]


def test_invalid_values_store_nothing(client: FlaskClient, doctor: Doctor) -> None:
    data = form(client, landing_page="admin", digest_hour="25", specialties=["astrologie"],
                patients_recent_months="0", language="de", documents_view="read",
                email="not-an-address")
    response = client.post("/profile", data=data)
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert "Rien n'a été enregistré" in html
    fresh = reload(doctor)
    assert (fresh.landing_page, fresh.digest_hour, fresh.language, fresh.email) == (
        "documents", 7, "fr", OLD)
    assert fresh.specialties == ["medecine_interne_generale"]
    assert events("profile.updated") == []
    assert db.session.scalars(select(EmailChange)).all() == []


def test_a_post_without_csrf_token_is_refused(client: FlaskClient, doctor: Doctor) -> None:
    data = form(client, landing_page="profile")
    del data["csrf_token"]
    assert client.post("/profile", data=data).status_code == 400
    assert reload(doctor).landing_page == "documents"


def confirmation_link(mail: Smtp) -> str:
    messages = [m for m in mail.inbox.parsed() if m["To"] == NEW]
    assert len(messages) == 1
    text = messages[0].get_body(("plain",)).get_content()  # type: ignore[union-attr]
    match = re.search(r"https://relais\.hopital\.example(/profile/email/confirm/[\w-]+)", text)
    assert match is not None
    return match.group(1)


def confirm(client: FlaskClient, path: str) -> Any:
    page = client.get(path)
    assert page.status_code == 200
    return client.post(path, data={"csrf_token": csrf_token(page)})


def test_a_new_address_works_only_after_its_link_and_the_old_one_is_told(
    app: Flask, client: FlaskClient, doctor: Doctor, mail: Smtp
) -> None:
    # Given the doctor asks for a new address
    response = client.post("/profile", data=form(client, email=NEW))
    assert response.status_code == 303
    # Then the old one is still in use, and a link went to the new one at once
    assert reload(doctor).email == OLD
    path = confirmation_link(mail)
    change = db.session.scalar(select(EmailChange))
    assert change is not None and path.rsplit("/", 1)[1] not in change.token_hash
    assert events("profile.email_change_requested")
    # When the link is merely opened (a mail scanner), nothing changes
    client.get(path)
    assert reload(doctor).email == OLD
    # When the doctor confirms, the new address replaces the old, which is told
    assert confirm(client, path).status_code == 303
    assert reload(doctor).email == NEW
    told = [m for m in mail.inbox.parsed() if m["To"] == OLD]
    assert len(told) == 1
    assert NEW not in told[0].as_string()
    (event,) = events("profile.updated")
    assert event.details == {"fields": ["email"]}
    assert NEW not in str(event.details) and OLD not in str(event.details)
    # And the link works only once
    assert confirm(client, path).status_code == 400
    # Nothing is left to send, nothing goes twice
    assert send_due().sent == 0
    assert len(mail.inbox.messages) == 2


def test_an_expired_or_foreign_link_changes_nothing(
    app: Flask, client: FlaskClient, doctor: Doctor, mail: Smtp
) -> None:
    client.post("/profile", data=form(client, email=NEW))
    path = confirmation_link(mail)
    # A day and a minute later
    db.session.execute(update(EmailChange).values(expires_at=utcnow() - timedelta(minutes=1)))
    db.session.commit()
    assert confirm(client, path).status_code == 400
    assert reload(doctor).email == OLD
    assert confirm(client, "/profile/email/confirm/made-up-token").status_code == 400


def test_a_second_request_replaces_the_first_link(
    app: Flask, client: FlaskClient, doctor: Doctor, mail: Smtp
) -> None:
    client.post("/profile", data=form(client, email=NEW))
    first = confirmation_link(mail)
    client.post("/profile", data=form(client, email="third@cabinet.example"))
    assert confirm(client, first).status_code == 400
    assert reload(doctor).email == OLD


def test_switching_to_digest_counts_from_now(client: FlaskClient, doctor: Doctor) -> None:
    client.post("/profile", data=form(client, notification_mode="digest"))
    assert reload(doctor).last_digest_at is not None


def test_the_profile_needs_a_doctor(app: Flask, client: FlaskClient) -> None:
    assert client.get("/profile").status_code == 303


def test_the_preference_defaults_are_the_new_accounts_values(app: Flask) -> None:
    # The defaults are stated once, on the Doctor columns; PREFERENCES reads them from there,
    # and a new account (through the ORM and through the database's own defaults) agrees.
    doctor = Doctor(gln="7601000000019", family_name="Neuve", given_name="Ada")
    db.session.add(doctor)
    db.session.flush()
    for preference in PREFERENCES:
        assert getattr(doctor, preference.name) == preference.default, preference.name
        if preference.kind != "multi":
            server_default = Doctor.__table__.c[preference.name].server_default
            if server_default is not None:
                assert str(server_default.arg) == str(preference.default), preference.name
    db.session.rollback()
