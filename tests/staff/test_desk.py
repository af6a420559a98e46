"""The service desk (/staff/desk): in-person enrolment with a phone possession check, and the
desk's actions on a doctor's account. Attack tests first, then the stories.

Every test runs on SQLite and, with TEST_DATABASE_URL, on PostgreSQL. SMS go through the real
twilio client to the local Twilio test server.
"""

from __future__ import annotations

import logging
import re
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update
from werkzeug.test import TestResponse

from app.audit import CLI
from app.auth.passwords import verify_password
from app.extensions import db
from app.models import DeskStep, Doctor, OneTimeCode, StaffUser
from app.models.base import utcnow
from app.staff.accounts import create_staff
from app.staff.enrolment import enrol_sms_doctor
from tests.conftest import Api, audit_text, consent_body, document_body
from tests.support.desk import (
    ENROLMENT,
    GLN,
    code_from,
    count,
    desk_user,
    doctor_by_gln,
    enter_code,
    post,
    text,
    token,
)
from tests.support.signin import sign_in_as
from tests.support.trail import events
from tests.support.twilio_server import (
    TwilioServer,
    twilio_server_fixture,  # noqa: F401
)

MOBILE = "+41791234567"
NEW_MOBILE = "+41781112233"
DESK_ACTOR = "desk:desk-test"


#: Every desk route with a method (1 is a doctor id). Who may reach them: tests/web/test_access.py.
ROUTES = [
    ("GET", "/staff/desk"),
    ("GET", "/staff/desk?q=muller"),
    ("GET", "/staff/desk/enrol"),
    ("POST", "/staff/desk/enrol"),
    ("GET", "/staff/desk/enrol/verify"),
    ("POST", "/staff/desk/enrol/verify"),
    ("POST", "/staff/desk/enrol/resend"),
    ("GET", "/staff/desk/credentials"),
    ("GET", "/staff/desk/doctors/1"),
    ("POST", "/staff/desk/doctors/1/reset-password"),
    ("POST", "/staff/desk/doctors/1/unlock"),
    ("POST", "/staff/desk/doctors/1/deactivate"),
    ("POST", "/staff/desk/doctors/1/reactivate"),
    ("POST", "/staff/desk/doctors/1/mobile"),
    ("GET", "/staff/desk/doctors/1/mobile/verify"),
    ("POST", "/staff/desk/doctors/1/mobile/verify"),
    ("POST", "/staff/desk/doctors/1/mobile/resend"),
    ("GET", "/staff/desk/approvals"),
    ("GET", "/staff/desk/approvals/1"),
    ("POST", "/staff/desk/approvals/1/approve"),
    ("POST", "/staff/desk/approvals/1/refuse"),
    ("POST", "/staff/desk/approvals/1/withdraw"),
]
POST_ROUTES = [path for method, path in ROUTES if method == "POST"]


# --- fixtures and helpers --------------------------------------------------------------------


@pytest.fixture()
def desk(client: FlaskClient) -> StaffUser:
    """A desk user, signed in on ``client``."""
    user = desk_user()
    sign_in_as(client, user)
    return user


@pytest.fixture()
def sms(app: Flask, twilio_server: TwilioServer) -> TwilioServer:
    app.config.update(twilio_server.config())
    return twilio_server


def other_code(code: str) -> str:
    """A wrong code, unlike any GLN or number of these tests (the trail is searched for it)."""
    return "918273" if code != "918273" else "827364"


def start_enrolment(client: FlaskClient, **changes: str) -> TestResponse:
    return post(client, "/staff/desk/enrol", {**ENROLMENT, **changes})


def enrolled_doctor() -> Doctor:
    """A doctor enrolled earlier (by the CLI), who has changed the temporary password."""
    enrolled = enrol_sms_doctor(GLN, "Rochat", "Luc", "luc.rochat@example.ch", MOBILE, CLI)
    enrolled.doctor.must_change_password = False
    db.session.commit()
    return enrolled.doctor


def copy_cookie(source: FlaskClient, target: FlaskClient) -> None:
    """Give ``target`` the very session cookie ``source`` holds (a copied cookie)."""
    cookie = source.get_cookie("relais", domain="relais.test")
    assert cookie is not None
    target.set_cookie("relais", cookie.value, domain="relais.test")


def approve_as_another_desk_user(app: Flask, login: str = "desk-second") -> FlaskClient:
    """A second desk user, signed in on a browser of their own, approves the open request."""
    from app.models import DeskApproval

    second = app.test_client()
    sign_in_as(second, desk_user(login))
    db.session.expire_all()
    (approval,) = db.session.scalars(
        select(DeskApproval).where(DeskApproval.decided_at.is_(None))).all()
    answer = post(second, f"/staff/desk/approvals/{approval.id}/approve")
    assert answer.status_code == 303, text(answer)
    return second


def is_signed_in(client: FlaskClient) -> bool:
    """Whether the gate still sees a signed-in user (the header's sign-out button)."""
    return 'action="/auth/logout"' in text(client.get("/", follow_redirects=True))


# --- attacks: who may reach the desk ---------------------------------------------------------


@pytest.mark.parametrize("path", POST_ROUTES)
def test_a_post_without_csrf_token_is_refused(
    client: FlaskClient, desk: StaffUser, sms: TwilioServer, path: str
) -> None:
    doctor = enrolled_doctor()
    path = path.replace("/doctors/1/", f"/doctors/{doctor.id}/")
    answer = client.post(path, data={**ENROLMENT, "mobile": NEW_MOBILE, "code": "123456"})
    assert answer.status_code == 400
    assert sms.messages == []
    assert events("doctor.password_reset") == events("doctor.deactivated") == []


def test_an_unknown_doctor_is_404(client: FlaskClient, desk: StaffUser) -> None:
    for method, path in ROUTES:
        if "/doctors/" not in path:
            continue
        path = path.replace("/doctors/1", "/doctors/424242")
        answer = client.open(path, method=method, data={"csrf_token": token(client)})
        assert answer.status_code == 404, (method, path)


# --- enrolment -------------------------------------------------------------------------------


def test_enrolment_end_to_end(
    app: Flask, client: FlaskClient, desk: StaffUser, sms: TwilioServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    # Given the desk enters the doctor's details and the identity card it saw
    form = client.get("/staff/desk/enrol")
    assert form.status_code == 200
    assert "Passeport" in text(form) and "Permis de conduire suisse" in text(form)
    answer = start_enrolment(client)

    # Then a code goes to the mobile, normalised to E.164, and the desk is asked for it
    assert answer.status_code == 303
    assert answer.headers["Location"] == "/staff/desk/enrol/verify"
    assert [m.to for m in sms.messages] == [MOBILE]
    code = code_from(sms)
    page = client.get("/staff/desk/enrol/verify")
    assert "+41******567" in text(page) and MOBILE not in text(page)
    assert doctor_by_gln() is None  # nothing stored before the phone is proved
    with client.session_transaction() as session:
        assert code not in repr(dict(session))  # the code never travels in the cookie

    # When the desk types the code the doctor reads from the phone
    answer = enter_code(client, code)

    # Then the doctor exists, active, in SMS mode, with a temporary password to change
    assert answer.status_code == 303
    assert answer.headers["Location"] == "/staff/desk/credentials"
    doctor = doctor_by_gln()
    assert doctor is not None
    assert (doctor.state, doctor.sign_in_mode, doctor.mobile) == ("active", "sms", MOBILE)
    assert doctor.login == "lrochat"
    assert doctor.must_change_password is True
    assert doctor.activated_at is not None

    # And the printable page shows the login and the password once, with the instructions
    sheet = client.get("/staff/desk/credentials")
    assert sheet.status_code == 200
    assert sheet.headers["Cache-Control"] == "no-store"
    html = text(sheet)
    password = re.search(r'<dd class="secret">([A-Za-z0-9-]{19})</dd>', html)
    assert password is not None
    assert "lrochat" in html and "/auth/login" in html and "SMS" in html
    assert "changer" in html or "choisir votre propre mot de passe" in html
    assert doctor.password_hash is not None
    assert verify_password(doctor.password_hash, password.group(1))

    # And a reload does not show it again
    again = client.get("/staff/desk/credentials")
    assert again.status_code == 410
    assert password.group(1) not in text(again)

    # And the trail says the desk enrolled the doctor, checked the phone and the identity card
    enrolled = events("doctor.enrolled")
    assert len(enrolled) == 1
    assert enrolled[0].actor == DESK_ACTOR
    assert enrolled[0].target == f"doctor:{GLN}"
    assert enrolled[0].details["id_document"] == "identity_card"
    assert enrolled[0].details["id_number_last4"] == "4B7X"
    assert enrolled[0].details["phone_verified"] == "desk_code"
    assert [e.actor for e in events("desk.phone_code_sent")] == [DESK_ACTOR]
    assert [e.outcome for e in events("desk.phone_code_checked")] == ["success"]

    # And neither the password nor the code nor the full number is in the trail or the logs
    trail = audit_text()
    for secret in (password.group(1), password.group(1).replace("-", ""), code, MOBILE):
        assert secret not in trail
        assert secret not in caplog.text


def test_a_copied_cookie_shows_the_credentials_nothing_the_second_time(
    app: Flask, client: FlaskClient, desk: StaffUser, sms: TwilioServer
) -> None:
    # Given an enrolment whose credentials wait to be shown, and a copy of the desk's cookie
    start_enrolment(client)
    enter_code(client, code_from(sms))
    copy = app.test_client()
    copy_cookie(client, copy)
    with client.session_transaction() as session:
        handle = session["desk_credentials"]
        assert isinstance(handle, str) and "lrochat" not in repr(dict(session))

    # When the desk opens the sheet, then the copy of the cookie opens it too
    sheet = client.get("/staff/desk/credentials")
    again = copy.get("/staff/desk/credentials")

    # Then the first sees the password, the copy sees nothing
    password = re.search(r'<dd class="secret">([A-Za-z0-9-]{19})</dd>', text(sheet))
    assert sheet.status_code == 200 and password is not None
    assert again.status_code == 410
    assert password.group(1) not in text(again) and "lrochat" not in text(again)
    assert count(DeskStep) == 0


def test_the_copy_that_comes_first_takes_the_credentials_and_the_desk_gets_nothing(
    app: Flask, client: FlaskClient, desk: StaffUser, sms: TwilioServer
) -> None:
    start_enrolment(client)
    enter_code(client, code_from(sms))
    copy = app.test_client()
    copy_cookie(client, copy)
    assert copy.get("/staff/desk/credentials").status_code == 200
    assert client.get("/staff/desk/credentials").status_code == 410


def test_the_pending_enrolment_is_kept_server_side_not_in_the_cookie(
    app: Flask, client: FlaskClient, desk: StaffUser, sms: TwilioServer
) -> None:
    start_enrolment(client)
    copy = app.test_client()
    copy_cookie(client, copy)
    with client.session_transaction() as session:
        kept = repr(dict(session))
    for typed in (GLN, "Rochat", "luc.rochat@example.ch", MOBILE, "4B7X", "identity_card"):
        assert typed not in kept, typed
    # Sealed in the database too: nothing typed is readable in the row
    step = db.session.scalars(select(DeskStep)).one()
    assert b"Rochat" not in step.ciphertext and step.kind == "enrolment"
    # Once the enrolment is done, the copy of the cookie finds nothing of it
    enter_code(client, code_from(sms))
    assert 'value="Rochat"' not in text(copy.get("/staff/desk/enrol"))
    assert copy.get("/staff/desk/enrol/verify").headers["Location"] == "/staff/desk/enrol"


def test_a_cross_site_request_neither_shows_nor_spends_the_credentials(
    client: FlaskClient, desk: StaffUser, sms: TwilioServer
) -> None:
    start_enrolment(client)
    enter_code(client, code_from(sms))
    from_elsewhere = client.get("/staff/desk/credentials",
                                headers={"Sec-Fetch-Site": "cross-site"})
    assert from_elsewhere.status_code == 403
    assert "lrochat" not in text(from_elsewhere)
    ours = client.get("/staff/desk/credentials", headers={"Sec-Fetch-Site": "same-origin"})
    assert ours.status_code == 200 and "lrochat" in text(ours)


def test_the_enrolled_doctor_can_start_signing_in(
    app: Flask, client: FlaskClient, desk: StaffUser, sms: TwilioServer
) -> None:
    start_enrolment(client)
    enter_code(client, code_from(sms))
    password = re.search(r'<dd class="secret">([A-Za-z0-9-]{19})</dd>',
                         text(client.get("/staff/desk/credentials")))
    assert password is not None

    # The doctor, on another browser, signs in with the printed login and password
    doctor_browser = app.test_client()
    answer = doctor_browser.post("/auth/login", data={
        "csrf_token": token(doctor_browser, "/auth/login"), "login": "lrochat",
        "password": password.group(1)})
    assert answer.status_code == 303
    assert answer.headers["Location"] == "/auth/code"
    assert sms.last_message().to == MOBILE


def test_a_wrong_code_is_refused_and_nothing_is_stored(
    client: FlaskClient, desk: StaffUser, sms: TwilioServer
) -> None:
    start_enrolment(client)
    right = code_from(sms)
    wrong = other_code(right)

    answer = enter_code(client, wrong)

    assert answer.status_code == 422
    assert "Code incorrect." in text(answer)
    assert "Essais restants : 4." in text(answer)
    assert doctor_by_gln() is None
    assert [e.outcome for e in events("desk.phone_code_checked")] == ["rejected"]
    assert wrong not in audit_text()
    # The right code still works afterwards
    assert enter_code(client, right).headers["Location"] == "/staff/desk/credentials"


def test_too_many_wrong_codes_start_again(
    client: FlaskClient, desk: StaffUser, sms: TwilioServer
) -> None:
    start_enrolment(client)
    right = code_from(sms)
    wrong = other_code(right)
    for _ in range(5):
        enter_code(client, wrong)

    answer = enter_code(client, right)

    assert answer.status_code == 303
    assert answer.headers["Location"] == "/staff/desk/enrol"
    assert doctor_by_gln() is None
    page = client.get("/staff/desk/enrol")
    assert "Recommencez" in text(page)
    assert 'value="Rochat"' in text(page)  # the desk does not type everything again


def test_an_expired_code_starts_again(
    client: FlaskClient, desk: StaffUser, sms: TwilioServer
) -> None:
    start_enrolment(client)
    code = code_from(sms)
    db.session.execute(update(OneTimeCode).values(expires_at=utcnow() - timedelta(seconds=1)))
    db.session.commit()

    answer = enter_code(client, code)

    assert answer.status_code == 303
    assert answer.headers["Location"] == "/staff/desk/enrol"
    assert "expiré" in text(client.get("/staff/desk/enrol"))
    assert doctor_by_gln() is None
    assert events("desk.phone_code_checked")[0].details["result"] == "expired"


def test_a_code_is_good_for_one_enrolment_only(
    app: Flask, client: FlaskClient, desk: StaffUser, sms: TwilioServer
) -> None:
    start_enrolment(client)
    code = code_from(sms)
    old_cookie = app.test_client()
    copy_cookie(client, old_cookie)
    assert enter_code(client, code).status_code == 303

    # Replaying the pending step (an old copy of the cookie) with the same code enrols nobody
    # else, and shows nothing of what was typed: the step is gone from the database
    answer = enter_code(old_cookie, code)
    assert answer.headers["Location"] == "/staff/desk/enrol"
    assert count(Doctor) == 1 and len(events("doctor.enrolled")) == 1
    assert 'value="Rochat"' not in text(old_cookie.get("/staff/desk/enrol"))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("mobile", "022 379 11 11", "n'est pas un numéro de téléphone mobile"),
        ("mobile", "+4179123", "n'est pas valable"),
        ("mobile", "appelez-moi", "n'est pas valable"),
        ("gln", "7601000000020", "clé de contrôle GS1"),
        ("gln", "760100000002", "clé de contrôle GS1"),
        ("email", "luc.rochat", "L'adresse e-mail n'est pas valable."),
        ("family_name", "  ", "Ce champ est obligatoire."),
        ("given_name", "Luc\x1b[31m", "sans caractères de contrôle"),
        ("id_document", "", "Choisissez la pièce d'identité"),
        ("id_document", "library_card", "Choisissez la pièce d'identité"),
        ("id_last4", "12", "exactement 4"),
    ],
    ids=["landline", "short-mobile", "not-a-number", "gln-check-digit", "short-gln",
         "email", "blank-name", "control-character", "no-id-document", "unlisted-id-document",
         "short-id-number"],
)
def test_bad_input_is_refused_clearly_and_nothing_is_stored(
    client: FlaskClient, desk: StaffUser, sms: TwilioServer, field: str, value: str,
    message: str,
) -> None:
    answer = start_enrolment(client, **{field: value})

    assert answer.status_code == 422
    html = text(answer)
    assert message in html.replace("&#39;", "'")
    assert f'id="{field}-error"' in html
    assert sms.messages == []
    assert count(Doctor) == count(OneTimeCode) == 0
    assert events("desk.phone_code_sent") == []


def test_a_gln_that_already_has_a_login_is_refused_before_any_sms(
    client: FlaskClient, desk: StaffUser, sms: TwilioServer
) -> None:
    doctor = enrolled_doctor()
    hash_before = doctor.password_hash

    answer = start_enrolment(client, email="other@example.ch")

    assert answer.status_code == 422
    assert "déjà un identifiant" in text(answer)
    assert sms.messages == []
    refreshed = doctor_by_gln()
    assert refreshed is not None
    assert refreshed.password_hash == hash_before and refreshed.email == "luc.rochat@example.ch"


def test_a_login_is_unique_across_staff_and_doctors(
    client: FlaskClient, desk: StaffUser, sms: TwilioServer
) -> None:
    # Given a staff account and a doctor that already use "lrochat" and "lrochat2"
    create_staff("lrochat", "staff", CLI)
    db.session.add(Doctor(gln="7601000000033", family_name="Rochat", given_name="Léa",
                          login="lrochat2", state="active", activated_at=utcnow()))
    db.session.commit()

    start_enrolment(client)
    enter_code(client, code_from(sms))

    doctor = doctor_by_gln()
    assert doctor is not None and doctor.login == "lrochat3"


def test_an_sms_failure_is_explained_audited_and_stores_nothing(
    client: FlaskClient, desk: StaffUser, sms: TwilioServer
) -> None:
    # Given Twilio is failing
    sms.fail_with(503)

    answer = start_enrolment(client)

    # Then the desk sees why, can retry with the same data, and nothing is kept
    assert answer.status_code == 502
    html = text(answer)
    assert "L'envoi du SMS a échoué" in html.replace("&#39;", "'")
    assert 'value="Rochat"' in html and "Envoyer le code par SMS" in html
    assert count(OneTimeCode) == count(Doctor) == 0
    failed = events("desk.phone_code_failed")
    assert len(failed) == 1 and failed[0].outcome == "failure" and failed[0].actor == DESK_ACTOR
    assert "503" in failed[0].details["error"]

    # When Twilio is back, the retry works
    sms.reset()
    assert start_enrolment(client).status_code == 303
    assert len(sms.messages) == 1


def test_a_code_can_be_resent_after_30_seconds(
    client: FlaskClient, desk: StaffUser, sms: TwilioServer
) -> None:
    start_enrolment(client)
    first = code_from(sms)

    too_early = post(client, "/staff/desk/enrol/resend")
    assert too_early.headers["Location"] == "/staff/desk/enrol/verify"
    assert len(sms.messages) == 1

    db.session.execute(update(OneTimeCode).values(sent_at=utcnow() - timedelta(seconds=31)))
    db.session.commit()
    assert post(client, "/staff/desk/enrol/resend").status_code == 303
    assert len(sms.messages) == 2
    second = code_from(sms)
    if second != first:
        assert enter_code(client, first).status_code == 422  # the old code is void
    assert enter_code(client, second).headers["Location"] == "/staff/desk/credentials"


def test_another_desk_user_cannot_finish_an_enrolment(
    app: Flask, client: FlaskClient, desk: StaffUser, sms: TwilioServer
) -> None:
    start_enrolment(client)
    code = code_from(sms)
    with client.session_transaction() as session:
        pending = session["desk_enrolment"]

    # A second desk user, given the first one's pending step and the code
    other = app.test_client()
    sign_in_as(other, desk_user("desk-other"))
    with other.session_transaction() as session:
        session["desk_enrolment"] = pending
    answer = enter_code(other, code)

    assert answer.headers["Location"] == "/staff/desk/enrol"
    assert doctor_by_gln() is None


# --- search ----------------------------------------------------------------------------------


def test_search_finds_doctors_by_name_gln_and_login(
    client: FlaskClient, desk: StaffUser, active_doctor: Doctor
) -> None:
    rochat = enrolled_doctor()
    for query in ("rochat", "Luc Rochat", GLN, "lroch"):
        html = text(client.get("/staff/desk", query_string={"q": query}))
        assert f'href="/staff/desk/doctors/{rochat.id}"' in html, query
        assert "Muller" not in html, query
        assert "+41******567" in html and MOBILE not in html
        assert "Identifiant, mot de passe et code SMS" in html
    html = text(client.get("/staff/desk", query_string={"q": "%"}))
    assert "Aucun médecin" in html  # a LIKE wildcard is a plain character
    assert "Inscrire un médecin" in text(client.get("/staff/desk"))


# --- one doctor: the desk's actions ----------------------------------------------------------


def test_the_doctor_page_shows_the_account(
    client: FlaskClient, desk: StaffUser
) -> None:
    doctor = enrolled_doctor()
    html = text(client.get(f"/staff/desk/doctors/{doctor.id}"))
    for expected in (GLN, "lrochat", "Actif", "+41******567", "Jamais", "Aucune identité HIN",
                     "Réinitialiser le mot de passe", "Désactiver le compte", "Inscription"):
        assert expected in html, expected
    assert MOBILE not in html


def test_reset_password_shows_a_new_one_once_and_ends_the_doctors_sessions(
    app: Flask, client: FlaskClient, desk: StaffUser
) -> None:
    # Given a doctor signed in elsewhere, with a few failed sign-ins
    doctor = enrolled_doctor()
    doctor.failed_sign_ins = 4
    db.session.commit()
    old_hash = doctor.password_hash
    elsewhere = app.test_client()
    sign_in_as(elsewhere, doctor)
    assert is_signed_in(elsewhere)

    # When the desk asks for a reset (the doctor can receive letters: a second person approves)
    answer = post(client, f"/staff/desk/doctors/{doctor.id}/reset-password")
    assert answer.headers["Location"].startswith("/staff/desk/approvals/")
    db.session.expire_all()
    assert doctor.password_hash == old_hash and is_signed_in(elsewhere)
    second = approve_as_another_desk_user(app)

    # Then a new temporary password is shown once, to the approver, to be changed, and the
    # other session ended
    assert client.get("/staff/desk/credentials").status_code == 410
    sheet = text(second.get("/staff/desk/credentials"))
    password = re.search(r'<dd class="secret">([A-Za-z0-9-]{19})</dd>', sheet)
    assert password is not None
    assert second.get("/staff/desk/credentials").status_code == 410
    db.session.expire_all()
    assert doctor.password_hash != old_hash
    assert doctor.password_hash is not None
    assert verify_password(doctor.password_hash, password.group(1))
    assert doctor.must_change_password is True
    assert doctor.failed_sign_ins == 0
    assert not is_signed_in(elsewhere)
    reset = events("doctor.password_reset")
    assert [e.actor for e in reset] == ["desk:desk-second"]
    assert reset[0].details["requested_by"] == "desk-test"
    assert password.group(1) not in audit_text()


def test_reset_password_of_a_doctor_without_login_is_refused(
    client: FlaskClient, desk: StaffUser, active_doctor: Doctor
) -> None:
    answer = post(client, f"/staff/desk/doctors/{active_doctor.id}/reset-password")
    assert answer.headers["Location"] == f"/staff/desk/doctors/{active_doctor.id}"
    assert "pas d&#39;identifiant" in text(client.get(answer.headers["Location"]))
    assert events("doctor.password_reset") == []
    assert client.get("/staff/desk/credentials").status_code == 410


def test_unlock_lifts_a_lockout(client: FlaskClient, desk: StaffUser) -> None:
    doctor = enrolled_doctor()
    doctor.failed_sign_ins = 10
    doctor.sign_in_locked = True
    doctor.sign_in_locked_at = utcnow()
    db.session.commit()
    assert "Oui, après 10 échecs" in text(client.get(f"/staff/desk/doctors/{doctor.id}"))

    post(client, f"/staff/desk/doctors/{doctor.id}/unlock")

    db.session.expire_all()
    assert doctor.sign_in_locked_at is None and doctor.failed_sign_ins == 0
    assert not doctor.sign_in_locked
    assert [e.actor for e in events("auth.unlocked")] == [DESK_ACTOR]


def ingest(api: Api, document_id: str) -> dict[str, Any]:
    answer = api.post("/api/v1/documents", json=document_body(document_id))
    assert answer.status_code == 201, answer.get_json()
    delivery: dict[str, Any] = answer.get_json()["deliveries"][0]
    return delivery


def test_deactivate_ends_sessions_and_stops_letters_reactivate_restores(
    app: Flask, client: FlaskClient, desk: StaffUser, active_doctor: Doctor, api: Api
) -> None:
    # Given an active doctor with the patient's consent, signed in elsewhere
    assert api.put(f"/api/v1/patients/P-0042/consents/{active_doctor.gln}",
                   json=consent_body()).status_code in (200, 201)
    active_doctor.login = "cmuller"
    db.session.commit()
    elsewhere = app.test_client()
    sign_in_as(elsewhere, active_doctor)
    assert ingest(api, "DPI-1")["rule"] == "ok"

    # When the desk deactivates the account
    post(client, f"/staff/desk/doctors/{active_doctor.id}/deactivate")

    # Then the doctor is signed out and letters no longer reach them
    db.session.expire_all()
    assert active_doctor.state == "deactivated" and active_doctor.deactivated_at is not None
    assert not is_signed_in(elsewhere)
    assert ingest(api, "DPI-2")["rule"] == "recipient_inactive"
    assert [e.actor for e in events("doctor.deactivated")] == [DESK_ACTOR]
    assert "Réactiver le compte" in text(client.get(f"/staff/desk/doctors/{active_doctor.id}"))

    # When the desk reactivates it, letters reach the doctor again
    post(client, f"/staff/desk/doctors/{active_doctor.id}/reactivate")
    db.session.expire_all()
    assert active_doctor.state == "active" and active_doctor.deactivated_at is None
    assert ingest(api, "DPI-3")["rule"] == "ok"
    # And the sessions the deactivation ended do not come back with the account
    assert not is_signed_in(elsewhere)
    assert [e.actor for e in events("doctor.reactivated")] == [DESK_ACTOR]


def test_change_mobile_needs_the_code_sent_to_the_new_number(
    app: Flask, client: FlaskClient, desk: StaffUser, sms: TwilioServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    doctor = enrolled_doctor()
    elsewhere = app.test_client()
    sign_in_as(elsewhere, doctor)

    # When the desk enters the new number, as the doctor writes it
    answer = post(client, f"/staff/desk/doctors/{doctor.id}/mobile", {"mobile": "078 111 22 33"})

    # Then a code goes to the new number, and nothing changes yet
    verify = f"/staff/desk/doctors/{doctor.id}/mobile/verify"
    assert answer.headers["Location"] == verify
    assert [m.to for m in sms.messages] == [NEW_MOBILE]
    code = code_from(sms)
    wrong = other_code(code)
    refused = post(client, verify, {"code": wrong})
    assert refused.status_code == 422
    assert doctor_by_gln() is not None and doctor.mobile == MOBILE

    # When the desk types the code read from the new phone, the change waits for a second
    # desk person (the doctor can receive letters); once approved, the number is stored
    assert post(client, verify, {"code": code}).headers["Location"].startswith(
        "/staff/desk/approvals/")
    db.session.expire_all()
    assert doctor.mobile == MOBILE and is_signed_in(elsewhere)
    approve_as_another_desk_user(app)
    db.session.expire_all()
    assert doctor.mobile == NEW_MOBILE
    assert not is_signed_in(elsewhere)
    changed = events("doctor.mobile_changed")
    assert [e.actor for e in changed] == ["desk:desk-second"]
    assert changed[0].details["new"] == "+41******233"
    trail = audit_text()
    for secret in (MOBILE, NEW_MOBILE, code):
        assert secret not in trail
        assert secret not in caplog.text


def test_change_mobile_refuses_a_landline_and_sends_nothing(
    client: FlaskClient, desk: StaffUser, sms: TwilioServer
) -> None:
    doctor = enrolled_doctor()
    answer = post(client, f"/staff/desk/doctors/{doctor.id}/mobile", {"mobile": "022 379 11 11"})
    assert answer.status_code == 422
    assert "n&#39;est pas un numéro de téléphone mobile" in text(answer)
    assert sms.messages == [] and count(OneTimeCode) == 0


def test_a_mobile_code_is_bound_to_its_doctor(
    client: FlaskClient, desk: StaffUser, sms: TwilioServer, active_doctor: Doctor
) -> None:
    doctor = enrolled_doctor()
    post(client, f"/staff/desk/doctors/{doctor.id}/mobile", {"mobile": NEW_MOBILE})
    code = code_from(sms)

    # The code for Dr Rochat's new phone, typed on another doctor's page, changes nothing: the
    # pending step (server-side, named by the session's handle) is bound to Dr Rochat
    answer = post(client, f"/staff/desk/doctors/{active_doctor.id}/mobile/verify", {"code": code})
    assert answer.headers["Location"] == f"/staff/desk/doctors/{active_doctor.id}"
    db.session.expire_all()
    assert active_doctor.mobile is None and doctor.mobile == MOBILE


def test_the_desk_sees_notification_emails_that_failed_for_good(
    client: FlaskClient, desk: StaffUser, active_doctor: Doctor
) -> None:
    from app.models import Notification

    now = utcnow()
    db.session.add(Notification(doctor_id=active_doctor.id, kind="arrival", count=2,
                                idempotency_key="arrival:test:failed", due_at=now,
                                next_attempt_at=now, attempts=6, failed_at=now,
                                last_error="SMTPRecipientsRefused 550"))
    db.session.commit()
    html = client.get("/staff/desk").get_data(as_text=True)
    assert "E-mails de notification en échec" in html
    # The first page counts them and links to the desk's list (tests/staff/test_admin.py)
    assert "1 e-mail n'a pas pu être remis" in html
    assert 'href="/staff/desk/notifications"' in html
    assert "Aucun e-mail en échec." not in html
