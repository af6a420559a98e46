"""Separation of duties: whoever set up a doctor's account never directs a patient's letters to
it, and whoever directed letters to a doctor never sets up its account.

The attack: one desk user invents a GLN, enrols it with their own phone, records a patient's
consent for it (or the other way round), and reads the patient's next letter. Every test runs
on SQLite and, with TEST_DATABASE_URL, on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from app.audit import CLI, Actor
from app.extensions import db
from app.inbox.document_actions import report_not_my_patient
from app.models import (
    Consent,
    Delivery,
    DeskApproval,
    Doctor,
    DoctorDuty,
    Patient,
    StaffUser,
)
from app.models.base import utcnow
from app.staff import duties
from app.staff.accounts import create_staff
from app.staff.enrolment import deactivate_doctor, enrol_sms_doctor
from tests.conftest import Api, consent_body, document_body, make_app
from tests.dispatch.api_support import gln
from tests.support.concurrency import Start, race
from tests.support.desk import ENROLMENT, code_from, desk_user, enter_code, post, text
from tests.support.signin import sign_in_as
from tests.support.trail import events
from tests.support.twilio_server import (
    TwilioServer,
    twilio_server_fixture,  # noqa: F401
)

#: A GLN nobody knows: valid check digit, invented by the insider.
INVENTED = gln(31)
PATIENT = "P-0042"
TREATING = "7601000000019"  # the active_doctor fixture
DUTY_MESSAGE = "Vous avez inscrit ce médecin au guichet ou modifié sa connexion"
DESK_MESSAGE = "Vous avez dirigé des documents de patients vers ce médecin"


@pytest.fixture()
def sms(app: Flask, twilio_server: TwilioServer) -> TwilioServer:
    app.config.update(twilio_server.config())
    return twilio_server


@pytest.fixture()
def insider(client: FlaskClient) -> StaffUser:
    user = desk_user("desk-insider")
    sign_in_as(client, user)
    return user


def browser(app: Flask, login: str, role: str = "desk") -> FlaskClient:
    """Another staff or desk person, signed in on a browser of their own."""
    if role == "desk":
        user = desk_user(login)
    else:
        user, _, _ = create_staff(login, role, CLI)
        user.must_change_password = False
        db.session.commit()
    other = app.test_client()
    sign_in_as(other, user)
    return other


def patient() -> Patient:
    anna = Patient(dpi_id=PATIENT, family_name="Muster", given_name="Anna",
                   birth_date=date(1961, 4, 2))
    db.session.add(anna)
    db.session.commit()
    return anna


def record_consent(client: FlaskClient, doctor_gln: str) -> Any:
    return post(client, f"/staff/patients/{PATIENT}/consents",
                {"gln": doctor_gln, "electronic_sending": "yes", "given_by": "patient"})


def consents_for(doctor_gln: str) -> int:
    db.session.expire_all()
    return int(db.session.scalar(
        select(func.count()).select_from(Consent).join(Doctor).where(Doctor.gln == doctor_gln)
    ) or 0)


def enrol_at_the_desk(client: FlaskClient, sms: TwilioServer, doctor_gln: str) -> Any:
    """Both steps of an enrolment, with the insider's own phone; the last answer."""
    answer = post(client, "/staff/desk/enrol",
                  {**ENROLMENT, "gln": doctor_gln, "mobile": "079 555 00 11"})
    if answer.status_code != 303:
        return answer
    return enter_code(client, code_from(sms))


def refusals() -> list[tuple[str, str | None, str, str]]:
    return [(e.actor, e.patient, e.details["act"], e.details["held"])
            for e in events("duty.refused")]


def unescaped(client: FlaskClient, answer: Any) -> str:
    html = text(client.get(answer.headers["Location"])) if answer.status_code == 303 \
        else text(answer)
    return html.replace("&#39;", "'")


# --- an invented GLN ---------------------------------------------------------------------------


def test_an_invented_gln_enrolled_then_given_a_consent_by_the_same_person_is_refused(
    app: Flask, client: FlaskClient, insider: StaffUser, sms: TwilioServer, api: Api
) -> None:
    patient()
    # Given a desk user who enrolled an invented GLN with their own phone (a new doctor: one
    # person may enrol it)
    assert enrol_at_the_desk(client, sms, INVENTED).headers["Location"] == (
        "/staff/desk/credentials")

    # When the same person records a patient's consent naming that doctor
    answer = record_consent(client, INVENTED)

    # Then it is refused, clearly, nothing is stored, and the refusal is audited
    assert answer.status_code == 422
    assert DUTY_MESSAGE in unescaped(client, answer)
    assert consents_for(INVENTED) == 0
    assert refusals() == [("desk:desk-insider", PATIENT, "consent.recorded", "account")]
    assert events("consent.recorded") == []
    # And the patient's next letter goes nowhere near that inbox
    assert api.post("/api/v1/documents",
                    json=document_body("DPI-SOD-1", recipients=None)).status_code == 422

    # When another hospital staff member records the consent (the patient did name that doctor)
    nurse = browser(app, "secretariat-cardio", "staff")
    answer = record_consent(nurse, INVENTED)

    # Then it is recorded
    assert answer.status_code == 303
    assert consents_for(INVENTED) == 1
    assert [e.actor for e in events("consent.recorded")] == ["staff:secretariat-cardio"]


def test_a_consent_naming_a_new_gln_then_its_enrolment_by_the_same_person_is_refused(
    app: Flask, client: FlaskClient, insider: StaffUser, sms: TwilioServer
) -> None:
    patient()
    # Given a desk user who recorded a consent naming a GLN Relais did not know (a pending
    # doctor is created: it cannot receive anything yet)
    assert record_consent(client, INVENTED).status_code == 303
    pending = db.session.scalar(select(Doctor).where(Doctor.gln == INVENTED))
    assert pending is not None and pending.state == "pending"

    # When the same person enrols that doctor at the desk
    answer = enrol_at_the_desk(client, sms, INVENTED)

    # Then it is refused before any SMS goes out, and audited
    assert answer.status_code == 422
    assert DESK_MESSAGE in unescaped(client, answer)
    assert sms.messages == []
    db.session.expire_all()
    assert pending.login is None and pending.state == "pending"
    assert refusals() == [("desk:desk-insider", None, "doctor.enrolled", "letters")]
    # And the same person may record further consents for that doctor: the letters side only
    assert record_consent(client, INVENTED).status_code == 303

    # When another desk person enrols the doctor (who came to the desk with her phone); a
    # patient named her already, so a third desk person approves it
    colleague = browser(app, "desk-colleague")
    answer = enrol_at_the_desk(colleague, sms, INVENTED)
    assert answer.headers["Location"].startswith("/staff/desk/approvals/")
    approval = db.session.scalars(select(DeskApproval)).one()
    third = browser(app, "desk-third")
    answer = post(third, f"/staff/desk/approvals/{approval.id}/approve")

    # Then it is done
    assert answer.headers["Location"] == "/staff/desk/credentials"
    db.session.expire_all()
    assert pending.state == "active" and pending.login is not None


def test_the_check_holds_when_the_code_is_typed_too(
    client: FlaskClient, insider: StaffUser, sms: TwilioServer
) -> None:
    # The enrolment started before the consent; the consent is recorded between the two steps
    patient()
    post(client, "/staff/desk/enrol", {**ENROLMENT, "gln": INVENTED})
    code = code_from(sms)
    assert record_consent(client, INVENTED).status_code == 303
    answer = enter_code(client, code)
    assert answer.headers["Location"] == "/staff/desk/enrol"
    assert DESK_MESSAGE in unescaped(client, answer)
    doctor = db.session.scalar(select(Doctor).where(Doctor.gln == INVENTED))
    assert doctor is not None and doctor.login is None
    assert events("doctor.enrolled") == []


# --- the worklist ------------------------------------------------------------------------------


def test_a_worklist_letter_cannot_go_to_a_doctor_the_same_person_enrolled(
    app: Flask, client: FlaskClient, insider: StaffUser, sms: TwilioServer, api: Api,
    active_doctor: Doctor,
) -> None:
    # Given a doctor the insider enrolled, whom the patient named too (through the DPI)
    enrol_at_the_desk(client, sms, INVENTED)
    for doctor_gln in (TREATING, INVENTED):
        assert api.put(f"/api/v1/patients/{PATIENT}/consents/{doctor_gln}",
                       json=consent_body()).status_code in (200, 201)
    # And a letter the treating doctor reported as "pas mon patient"
    assert api.post("/api/v1/documents", json=document_body(
        "DPI-SOD-2", recipients=[TREATING])).status_code == 201
    delivery = db.session.scalars(select(Delivery)).one()
    report_not_my_patient(delivery, Actor("doctor", TREATING))
    db.session.commit()

    # When the insider sends it to the doctor they enrolled
    answer = post(client, f"/staff/worklist/{delivery.id}/redirect", {"gln": INVENTED})

    # Then it is refused, audited, and the letter is still to handle
    assert answer.headers["Location"] == f"/staff/worklist/{delivery.id}"
    assert "Vous avez inscrit ce médecin" in unescaped(client, answer)
    db.session.expire_all()
    assert db.session.scalar(select(func.count()).select_from(Delivery)) == 1
    assert delivery.handled_at is None
    assert refusals() == [("desk:desk-insider", PATIENT, "delivery.redirected", "account")]

    # When another staff member sends it there, it goes
    nurse = browser(app, "secretariat-cardio", "staff")
    assert post(nurse, f"/staff/worklist/{delivery.id}/redirect",
                {"gln": INVENTED}).status_code == 303
    assert len(events("delivery.redirected")) == 1


# --- no way round it ---------------------------------------------------------------------------


def test_re_enrolling_resetting_or_reactivating_does_not_wash_away_who_set_up_the_account(
    app: Flask, client: FlaskClient, insider: StaffUser, sms: TwilioServer
) -> None:
    patient()
    enrol_at_the_desk(client, sms, INVENTED)
    doctor = db.session.scalar(select(Doctor).where(Doctor.gln == INVENTED))
    assert doctor is not None
    # Other desk people deactivate and reactivate the account, then reset its password
    asker, approver = browser(app, "desk-asker"), browser(app, "desk-approver")
    post(asker, f"/staff/desk/doctors/{doctor.id}/deactivate")
    post(asker, f"/staff/desk/doctors/{doctor.id}/reactivate")
    post(asker, f"/staff/desk/doctors/{doctor.id}/reset-password")
    approval = db.session.scalars(select(DeskApproval)).one()
    post(approver, f"/staff/desk/approvals/{approval.id}/approve")
    assert len(events("doctor.password_reset")) == 1

    # The insider still cannot direct letters to it; nor can those who reset it
    for person in (client, asker, approver):
        assert record_consent(person, INVENTED).status_code == 422
    assert consents_for(INVENTED) == 0
    sides = dict(db.session.execute(
        select(StaffUser.login, DoctorDuty.duty).join(StaffUser)).tuples().all())
    assert sides == {"desk-insider": "account", "desk-asker": "account",
                     "desk-approver": "account"}
    # And the rows cannot be replaced by the other side, even by the service directly
    insider = db.session.scalar(select(StaffUser).where(StaffUser.login == "desk-insider"))
    assert insider is not None
    with pytest.raises(duties.DutyConflict):
        duties.claim(doctor, insider, duties.LETTERS, "consent.recorded")
    # Deactivating (or a CLI enrolment) takes no side and changes none
    deactivate_doctor(doctor, CLI)
    db.session.commit()
    assert db.session.scalar(select(func.count()).select_from(DoctorDuty)) == 3


def test_whoever_directed_letters_to_a_doctor_may_neither_ask_nor_approve_for_her_account(
    app: Flask, client: FlaskClient, insider: StaffUser
) -> None:
    patient()
    enrolled = enrol_sms_doctor(INVENTED, "Rochat", "Luc", "luc@example.ch", "+41791234567",
                                CLI)
    db.session.commit()
    doctor = enrolled.doctor
    # Given the insider recorded a patient's consent for this (active) doctor
    assert record_consent(client, INVENTED).status_code == 303

    # Then the insider may not ask for her password to be reset
    answer = post(client, f"/staff/desk/doctors/{doctor.id}/reset-password")
    assert DESK_MESSAGE in unescaped(client, answer)
    assert db.session.scalar(select(func.count()).select_from(DeskApproval)) == 0

    # And when someone else asks, the insider may not approve it
    asker = browser(app, "desk-asker")
    post(asker, f"/staff/desk/doctors/{doctor.id}/reset-password")
    approval = db.session.scalars(select(DeskApproval)).one()
    answer = post(client, f"/staff/desk/approvals/{approval.id}/approve")
    assert DESK_MESSAGE in unescaped(client, answer)
    db.session.expire_all()
    assert approval.decided_at is None and events("doctor.password_reset") == []
    assert [r[2:] for r in refusals()] == [("desk.password_reset_requested", "letters"),
                                           ("desk.approval_decided", "letters")]
    # A third desk person may
    third = browser(app, "desk-third")
    assert post(third, f"/staff/desk/approvals/{approval.id}/approve").headers[
        "Location"] == "/staff/desk/credentials"


def test_two_acts_of_one_person_racing_take_one_side_only(
    app: Flask, insider: StaffUser
) -> None:
    doctor = Doctor(gln=INVENTED, state="active", activated_at=utcnow())
    db.session.add(doctor)
    db.session.commit()
    doctor_id, person_id = doctor.id, insider.id
    uri = app.config["SQLALCHEMY_DATABASE_URI"]
    # Built here, one after the other: two threads building apps at once can trip
    # CPython 3.11's compiler ("AST constructor recursion depth mismatch").
    apps = [make_app(uri), make_app(uri)]
    db.session.remove()

    def act(duty: str, other: Flask) -> Callable[[Start], str]:
        def racer(start: Start) -> str:
            with other.app_context():
                try:
                    mine = db.session.get(Doctor, doctor_id)
                    person = db.session.get(StaffUser, person_id)
                    assert mine is not None and person is not None
                    start()
                    try:
                        duties.claim(mine, person, duty, "test")
                        db.session.commit()
                        return duty
                    except duties.DutyConflict:
                        db.session.rollback()
                        return "conflict"
                    except OperationalError as error:  # SQLite may refuse the second writer
                        db.session.rollback()
                        return type(error).__name__
                finally:
                    db.session.remove()
                    db.engine.dispose()
        return racer

    outcomes = race([act(duties.ACCOUNT, apps[0]), act(duties.LETTERS, apps[1])])
    assert len([o for o in outcomes if o in (duties.ACCOUNT, duties.LETTERS)]) == 1, outcomes
    assert db.session.scalars(select(DoctorDuty.duty)).all() in (["account"], ["letters"])
