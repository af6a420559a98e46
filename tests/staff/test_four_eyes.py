"""Four eyes on the accounts that can already receive letters: enrolling, resetting the
password of, or giving a new mobile to an active doctor is a request that a second desk person
approves, once, before it expires; the doctor is told at her address before the change.

Attack first: one desk user trying to take over an active HIN doctor and an active SMS doctor.
Every test runs on SQLite and, with TEST_DATABASE_URL, on PostgreSQL; SMS go through the real
twilio client to the local Twilio test server, emails through a real SMTP server (aiosmtpd).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from email.message import EmailMessage
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError

from app.audit import CLI
from app.auth.passwords import verify_password
from app.extensions import db
from app.models import DeskApproval, Doctor, HinIdentity, Notification, StaffUser
from app.models.base import utcnow
from app.notify.outbox import send_due
from app.staff import approvals
from app.staff.accounts import create_staff
from app.staff.approvals import ApprovalRefused
from app.staff.enrolment import enrol_sms_doctor
from tests.conftest import audit_text, consent_body, make_app
from tests.notify.smtp_server import Smtp, serving
from tests.support.concurrency import Start, race
from tests.support.desk import ENROLMENT, code_from, count, desk_user, enter_code, post, text
from tests.support.signin import sign_in_as
from tests.support.trail import events
from tests.support.twilio_server import (
    TwilioServer,
    twilio_server_fixture,  # noqa: F401
)

HIN_GLN = "7601000000019"
SMS_GLN = "7601000000026"
#: The doctor's own address, on file before anything happens.
OLD_EMAIL = "claire.muller@cabinet.example"
#: What the desk user types instead: their own address.
TYPED_EMAIL = "insider@example.org"
#: The desk user's own phone, typed as the doctor's.
INSIDER_PHONE = "079 555 00 11"
INSIDER_E164 = "+41795550011"
DOCTOR_MOBILE = "+41791234567"
_SECRET = re.compile(r'<dd class="secret">([A-Za-z0-9-]+)</dd>')


@pytest.fixture()
def sms(app: Flask, twilio_server: TwilioServer) -> TwilioServer:
    app.config.update(twilio_server.config())
    return twilio_server


@pytest.fixture()
def smtp(app: Flask) -> Iterator[Smtp]:
    with serving(app) as server:
        yield server


@pytest.fixture()
def insider(client: FlaskClient) -> StaffUser:
    """The desk user who asks (signed in on ``client``)."""
    user = desk_user("desk-insider")
    sign_in_as(client, user)
    return user


@pytest.fixture()
def second(app: Flask) -> FlaskClient:
    """Another desk user, signed in on a browser of their own."""
    other = app.test_client()
    sign_in_as(other, desk_user("desk-second"))
    return other


def hin_doctor() -> Doctor:
    """Dr Claire Muller, active since her first HIN sign-in, with her email on file."""
    doctor = Doctor(gln=HIN_GLN, family_name="Muller", given_name="Claire", email=OLD_EMAIL,
                    state="active", activated_at=utcnow(), notification_mode="immediate")
    doctor.identities.append(HinIdentity(provider="https://idp.hin.ch", subject="cmuller-hin"))
    db.session.add(doctor)
    db.session.commit()
    return doctor


def sms_doctor() -> Doctor:
    """Dr Luc Rochat, enrolled for SMS sign-in earlier, who chose his own password."""
    enrolled = enrol_sms_doctor(SMS_GLN, "Rochat", "Luc", OLD_EMAIL, DOCTOR_MOBILE, CLI)
    enrolled.doctor.must_change_password = False
    db.session.commit()
    return enrolled.doctor


def reload(doctor: Doctor) -> Doctor:
    db.session.expire_all()
    fresh = db.session.get(Doctor, doctor.id)
    assert fresh is not None
    return fresh


def the_request() -> DeskApproval:
    db.session.expire_all()
    (approval,) = db.session.scalars(select(DeskApproval)).all()
    return approval


def emails(smtp: Smtp) -> list[EmailMessage]:
    send_due(now=utcnow() + timedelta(minutes=5))
    return smtp.inbox.parsed()


def body_of(message: EmailMessage) -> str:
    return "\n".join(part.get_content() for part in message.walk()
                     if part.get_content_maintype() == "text")


def assert_nothing_sensitive(message: EmailMessage, *secrets: str) -> None:
    content = message.as_string() + body_of(message)
    for value in (*secrets, INSIDER_E164, DOCTOR_MOBILE, "+41******", TYPED_EMAIL, "Muster",
                  "P-0042"):
        assert value not in content, value


def request_enrolment(client: FlaskClient, sms: TwilioServer, gln: str) -> str:
    """The insider enrols ``gln`` with their own phone and address; returns the code."""
    answer = post(client, "/staff/desk/enrol",
                  {**ENROLMENT, "gln": gln, "family_name": "Insider", "given_name": "Ivan",
                   "email": TYPED_EMAIL, "mobile": INSIDER_PHONE})
    assert answer.status_code == 303, text(answer)
    code = code_from(sms)
    answer = enter_code(client, code)
    assert answer.status_code == 303
    assert re.fullmatch(r"/staff/desk/approvals/\d+", answer.headers["Location"])
    return code


# --- the take-over attempts --------------------------------------------------------------------


def test_one_desk_user_cannot_take_over_an_active_hin_doctor(
    app: Flask, client: FlaskClient, insider: StaffUser, second: FlaskClient,
    sms: TwilioServer, smtp: Smtp,
) -> None:
    # Given an active HIN doctor
    doctor = hin_doctor()

    # When one desk user enrols her GLN with their own phone, names and address
    code = request_enrolment(client, sms, HIN_GLN)

    # Then nothing about her changed: no login, no password, her names and email kept
    stored = reload(doctor)
    assert (stored.login, stored.password_hash, stored.mobile) == (None, None, None)
    assert (stored.family_name, stored.given_name, stored.email) == ("Muller", "Claire",
                                                                     OLD_EMAIL)
    assert events("doctor.enrolled") == []
    # And the insider holds no credentials, the request is parked, and it says so
    assert client.get("/staff/desk/credentials").status_code == 410
    approval = the_request()
    assert (approval.kind, approval.decided_at) == ("enrolment", None)
    page = text(client.get(f"/staff/desk/approvals/{approval.id}"))
    assert "un autre collaborateur du guichet doit la décider" in page.replace("&#39;", "'")
    assert "Approuver et appliquer" not in page
    requested = events("desk.approval_requested")
    assert [e.actor for e in requested] == ["desk:desk-insider"]
    assert requested[0].details["doctor_told"] is True
    # And the doctor is told, at her own address, without a code, a number or a password
    (told,) = emails(smtp)
    assert told["To"] == OLD_EMAIL
    assert "demandé" in told["Subject"]
    assert "+41 22 372 62 01" in body_of(told)  # whom to call
    assert_nothing_sensitive(told, code)

    # When a second desk person approves (after seeing the doctor at the counter)
    shown = text(second.get(f"/staff/desk/approvals/{approval.id}"))
    assert "Insider" in shown and "est conservée" in shown  # the names typed differ
    answer = post(second, f"/staff/desk/approvals/{approval.id}/approve")

    # Then the enrolment is made, her names and email untouched, and the temporary password
    # goes to the approver, once; never to the insider
    assert answer.headers["Location"] == "/staff/desk/credentials"
    sheet = text(second.get("/staff/desk/credentials"))
    login, password = _SECRET.findall(sheet)
    assert second.get("/staff/desk/credentials").status_code == 410
    assert client.get("/staff/desk/credentials").status_code == 410
    stored = reload(doctor)
    assert stored.login == login == "cmuller" and stored.mobile == INSIDER_E164
    assert stored.password_hash is not None and verify_password(stored.password_hash, password)
    assert (stored.family_name, stored.given_name, stored.email) == ("Muller", "Claire",
                                                                     OLD_EMAIL)
    enrolled = events("doctor.enrolled")
    assert [e.actor for e in enrolled] == ["desk:desk-second"]
    assert enrolled[0].details["requested_by"] == "desk-insider"
    assert enrolled[0].details["was_active"] is True
    decided = events("desk.approval_decided")
    assert [(e.actor, e.details["decision"]) for e in decided] == [
        ("desk:desk-second", "approved")]
    # And she is told again, at the same address, still without anything sensitive
    _, changed = emails(smtp)
    assert changed["To"] == OLD_EMAIL and "modifiée" in changed["Subject"]
    assert_nothing_sensitive(changed, code, password, login)
    assert password not in audit_text()


def test_one_desk_user_cannot_take_over_an_active_sms_doctor(
    app: Flask, client: FlaskClient, insider: StaffUser, second: FlaskClient,
    sms: TwilioServer, smtp: Smtp,
) -> None:
    # Given an active SMS doctor
    doctor = sms_doctor()
    hash_before = doctor.password_hash

    # When one desk user asks for a new password and for their own phone as her mobile
    answer = post(client, f"/staff/desk/doctors/{doctor.id}/reset-password")
    assert answer.headers["Location"].startswith("/staff/desk/approvals/")
    answer = post(client, f"/staff/desk/doctors/{doctor.id}/mobile", {"mobile": INSIDER_PHONE})
    code = code_from(sms)
    answer = post(client, f"/staff/desk/doctors/{doctor.id}/mobile/verify", {"code": code})
    assert answer.headers["Location"].startswith("/staff/desk/approvals/")

    # Then neither is applied: same password, same mobile, nothing shown to the insider
    stored = reload(doctor)
    assert stored.password_hash == hash_before and stored.mobile == DOCTOR_MOBILE
    assert client.get("/staff/desk/credentials").status_code == 410
    assert events("doctor.password_reset") == events("doctor.mobile_changed") == []
    kinds = sorted(a.kind for a in db.session.scalars(select(DeskApproval)))
    assert kinds == ["mobile_change", "password_reset"]
    page = text(client.get(f"/staff/desk/doctors/{doctor.id}"))
    assert "Demandes en attente d'approbation" in page.replace("&#39;", "'")
    # And she is told of both requests at her address
    told = emails(smtp)
    assert [m["To"] for m in told] == [OLD_EMAIL, OLD_EMAIL]
    for message in told:
        assert_nothing_sensitive(message, code)

    # When the second desk person approves both
    for approval in db.session.scalars(select(DeskApproval).order_by(DeskApproval.id)).all():
        assert post(second, f"/staff/desk/approvals/{approval.id}/approve").status_code == 303

    # Then both are applied, and the new password is the approver's to hand over
    stored = reload(doctor)
    assert stored.password_hash != hash_before and stored.mobile == INSIDER_E164
    _, password = _SECRET.findall(text(second.get("/staff/desk/credentials")))
    assert stored.password_hash is not None and verify_password(stored.password_hash, password)
    assert [e.actor for e in events("doctor.password_reset")] == ["desk:desk-second"]
    assert [e.actor for e in events("doctor.mobile_changed")] == ["desk:desk-second"]
    changed = emails(smtp)[2:]
    assert [m["To"] for m in changed] == [OLD_EMAIL, OLD_EMAIL]
    for message in changed:
        assert_nothing_sensitive(message, code, password)


def test_a_pending_doctor_a_patient_named_is_not_enrolled_by_one_desk_person(
    client: FlaskClient, insider: StaffUser, second: FlaskClient, sms: TwilioServer, api: Any
) -> None:
    # Given a doctor the DPI named for a patient (with electronic sending) who never signed in:
    # pending, letters to her wait on the worklist
    answer = api.put(f"/api/v1/patients/P-0042/consents/{SMS_GLN}", json=consent_body())
    assert answer.status_code == 201
    doctor = db.session.scalar(select(Doctor).where(Doctor.gln == SMS_GLN))
    assert doctor is not None and doctor.state == "pending"

    # When one desk user enrols her with their own phone
    request_enrolment(client, sms, SMS_GLN)

    # Then it waits for a second desk person; nothing is enrolled, nothing shown
    stored = reload(doctor)
    assert (stored.state, stored.login, stored.mobile) == ("pending", None, None)
    assert client.get("/staff/desk/credentials").status_code == 410
    approval = the_request()
    assert approval.told_address is None  # no address on file: the approver is warned
    assert post(second, f"/staff/desk/approvals/{approval.id}/approve").headers[
        "Location"] == "/staff/desk/credentials"
    assert reload(doctor).state == "active"


def test_a_new_doctor_is_still_enrolled_by_one_desk_person(
    client: FlaskClient, insider: StaffUser, sms: TwilioServer
) -> None:
    # A doctor unknown to Relais receives nothing yet: the first enrolment needs no approval
    post(client, "/staff/desk/enrol", ENROLMENT)
    answer = enter_code(client, code_from(sms))
    assert answer.headers["Location"] == "/staff/desk/credentials"
    assert count(DeskApproval) == 0
    assert len(events("doctor.enrolled")) == 1


# --- who may decide ----------------------------------------------------------------------------


def test_the_requester_cannot_approve_their_own_request(
    client: FlaskClient, insider: StaffUser
) -> None:
    doctor = sms_doctor()
    hash_before = doctor.password_hash
    post(client, f"/staff/desk/doctors/{doctor.id}/reset-password")
    approval = the_request()

    for action in ("approve", "refuse"):
        answer = post(client, f"/staff/desk/approvals/{approval.id}/{action}")
        assert answer.headers["Location"] == f"/staff/desk/approvals/{approval.id}"
        assert "un autre collaborateur du guichet doit la décider" in text(
            client.get(answer.headers["Location"])).replace("&#39;", "'")

    assert reload(doctor).password_hash == hash_before
    assert the_request().decided_at is None
    assert client.get("/staff/desk/credentials").status_code == 410
    refused = events("desk.decision_refused")
    assert [(e.actor, e.outcome, e.details["reason"]) for e in refused] == [
        ("desk:desk-insider", "rejected", "own_request")] * 2
    assert events("doctor.password_reset") == []
    # The service refuses it too, whatever page calls it
    with pytest.raises(ApprovalRefused) as refusal:
        approvals.approve(the_request(), insider)
    assert refusal.value.code == "own_request"


@pytest.mark.parametrize("role", ["doctor", "staff"])
def test_a_doctor_or_hospital_staff_cannot_approve(
    app: Flask, client: FlaskClient, insider: StaffUser, role: str
) -> None:
    doctor = sms_doctor()
    hash_before = doctor.password_hash
    post(client, f"/staff/desk/doctors/{doctor.id}/reset-password")
    approval = the_request()
    outsider = app.test_client()
    if role == "doctor":
        # The doctor concerned herself, signed in
        sign_in_as(outsider, doctor)
    else:
        user, _, _ = create_staff("nurse-ward", "staff", CLI)
        user.must_change_password = False
        db.session.commit()
        sign_in_as(outsider, user)

    for path in (f"/staff/desk/approvals/{approval.id}",
                 f"/staff/desk/approvals/{approval.id}/approve"):
        method = "POST" if path.endswith("approve") else "GET"
        answer = outsider.open(path, method=method,
                               data={"csrf_token": _token(outsider)})
        assert answer.status_code == 403, path

    assert reload(doctor).password_hash == hash_before
    assert the_request().decided_at is None
    if role == "staff":
        staff = db.session.scalar(select(StaffUser).where(StaffUser.login == "nurse-ward"))
        assert staff is not None
        with pytest.raises(ApprovalRefused) as refusal:
            approvals.approve(the_request(), staff)
        assert refusal.value.code == "not_desk"


def _token(client: FlaskClient) -> str:
    from tests.support.pages import csrf_token

    return csrf_token(client.get("/help"))


def test_an_expired_request_cannot_be_approved(
    client: FlaskClient, insider: StaffUser, second: FlaskClient
) -> None:
    doctor = sms_doctor()
    hash_before = doctor.password_hash
    post(client, f"/staff/desk/doctors/{doctor.id}/reset-password")
    approval = the_request()
    # Half an hour later, nobody has approved it
    db.session.execute(update(DeskApproval).values(
        expires_at=utcnow() - timedelta(seconds=1)))
    db.session.commit()

    answer = post(second, f"/staff/desk/approvals/{approval.id}/approve")

    assert answer.headers["Location"] == f"/staff/desk/approvals/{approval.id}"
    page = text(second.get(answer.headers["Location"]))
    assert "Cette demande a expiré" in page and "Approuver et appliquer" not in page
    assert reload(doctor).password_hash == hash_before
    assert second.get("/staff/desk/credentials").status_code == 410
    assert the_request().decided_at is None
    assert [e.details["reason"] for e in events("desk.decision_refused")] == ["expired"]
    assert "Aucune demande en attente." in text(second.get("/staff/desk/approvals"))


def test_a_refused_or_withdrawn_request_changes_nothing(
    client: FlaskClient, insider: StaffUser, second: FlaskClient, sms: TwilioServer
) -> None:
    doctor = sms_doctor()
    post(client, f"/staff/desk/doctors/{doctor.id}/reset-password")
    approval = the_request()
    assert post(second, f"/staff/desk/approvals/{approval.id}/refuse").status_code == 303
    # Refused once: neither approved nor refused again afterwards
    again = post(second, f"/staff/desk/approvals/{approval.id}/approve")
    assert "déjà été décidée" in text(second.get(again.headers["Location"])).replace(
        "&#39;", "'")
    assert (the_request().decision, the_request().decided_by_id) == (
        "refused", db.session.scalar(select(StaffUser.id).where(
            StaffUser.login == "desk-second")))

    # The insider asks for a new mobile, then withdraws it; the other desk person cannot
    post(client, f"/staff/desk/doctors/{doctor.id}/mobile", {"mobile": INSIDER_PHONE})
    post(client, f"/staff/desk/doctors/{doctor.id}/mobile/verify", {"code": code_from(sms)})
    mobile = db.session.scalars(select(DeskApproval).where(
        DeskApproval.kind == "mobile_change")).one()
    post(second, f"/staff/desk/approvals/{mobile.id}/withdraw")
    assert post(client, f"/staff/desk/approvals/{mobile.id}/withdraw").status_code == 303
    assert post(second, f"/staff/desk/approvals/{mobile.id}/approve").status_code == 303

    stored = reload(doctor)
    assert stored.mobile == DOCTOR_MOBILE
    assert events("doctor.password_reset") == events("doctor.mobile_changed") == []
    decisions = [(e.actor, e.details["decision"]) for e in events("desk.approval_decided")]
    assert decisions == [("desk:desk-second", "refused"), ("desk:desk-insider", "withdrawn")]
    reasons = [e.details["reason"] for e in events("desk.decision_refused")]
    assert reasons == ["already_decided", "not_requester", "already_decided"]


def test_one_waiting_request_of_a_kind_per_doctor(
    client: FlaskClient, insider: StaffUser, second: FlaskClient
) -> None:
    doctor = sms_doctor()
    post(client, f"/staff/desk/doctors/{doctor.id}/reset-password")
    answer = post(second, f"/staff/desk/doctors/{doctor.id}/reset-password")
    assert answer.headers["Location"] == f"/staff/desk/doctors/{doctor.id}"
    assert "attend déjà" in text(second.get(answer.headers["Location"]))
    assert count(DeskApproval) == 1


def test_a_doctor_without_an_address_is_not_told_and_the_approver_is_warned(
    client: FlaskClient, insider: StaffUser, second: FlaskClient, smtp: Smtp
) -> None:
    doctor = sms_doctor()
    doctor.email = None
    db.session.commit()
    post(client, f"/staff/desk/doctors/{doctor.id}/reset-password")
    approval = the_request()
    assert approval.told_address is None
    assert count(Notification) == 0
    page = text(second.get(f"/staff/desk/approvals/{approval.id}"))
    assert "Appelez le médecin pour confirmer la demande" in page
    assert events("desk.approval_requested")[0].details["doctor_told"] is False


# --- two approvers at once ------------------------------------------------------------------------


def test_two_approvers_racing_apply_the_change_once(
    app: Flask, client: FlaskClient, insider: StaffUser
) -> None:
    doctor = sms_doctor()
    post(client, f"/staff/desk/doctors/{doctor.id}/reset-password")
    approval_id = the_request().id
    logins = ["desk-second", "desk-third"]
    for login in logins:
        desk_user(login)
    uri = app.config["SQLALCHEMY_DATABASE_URI"]
    # Built here, one after the other: two threads building apps at once can trip
    # CPython 3.11's compiler ("AST constructor recursion depth mismatch").
    apps = [make_app(uri), make_app(uri)]
    db.session.remove()

    def approve(login: str, other: Flask) -> Callable[[Start], str]:
        def racer(start: Start) -> str:
            with other.app_context():
                try:
                    approver = db.session.scalar(
                        select(StaffUser).where(StaffUser.login == login))
                    approval = approvals.get_approval(approval_id)
                    assert approver is not None and approval is not None
                    start()
                    try:
                        approvals.approve(approval, approver)
                        db.session.commit()
                        return "approved"
                    except ApprovalRefused as refused:
                        db.session.rollback()
                        return refused.code
                    except OperationalError as error:  # SQLite may refuse the second writer
                        db.session.rollback()
                        return type(error).__name__
                finally:
                    db.session.remove()
                    db.engine.dispose()
        return racer

    outcomes = race([approve(login, other) for login, other in zip(logins, apps, strict=True)])
    assert outcomes.count("approved") == 1, outcomes
    assert next(o for o in outcomes if o != "approved") in ("already_decided",
                                                            "OperationalError"), outcomes
    # One decision, one reset, one email to the doctor: the change was applied once
    assert len(events("desk.approval_decided")) == 1
    assert len(events("doctor.password_reset")) == 1
    assert db.session.scalars(select(Notification.kind)).all().count("account_changed") == 1
    decided = the_request()
    assert decided.decision == "approved"
    winner = db.session.get(StaffUser, decided.decided_by_id)
    assert winner is not None and winner.login in logins
