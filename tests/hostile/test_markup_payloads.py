"""Markup and script payloads in every free-text field that reaches a page, an email or an export.

The DPI may send any text in a letter's title, service, type and author and in the patient's
names (stored as sent, INTERFACES.md); the desk enrols doctors under names it is given; staff
record consents with a free "recorded by". Each such field here carries a payload (script and
markup, an attribute breakout, a javascript: URL, template syntax, </title>, a spreadsheet
formula, quotes, an entity, the right-to-left override). Every page that shows them is rendered
and parsed: the payload is there as text, never as markup; emails carry none of it; the CSV
export neutralises formulas; the FHIR export is JSON; file names and Content-Disposition headers
cannot be broken by it.
"""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from email import message_from_bytes, policy
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from app.audit import CLI
from app.extensions import db
from app.models import Delivery, Doctor, Document, Patient, StaffUser
from app.models.base import utcnow
from app.notify.outbox import send_due
from app.staff.accounts import create_staff
from app.staff.enrolment import enrol_sms_doctor
from tests.conftest import Api, consent_body, document_body
from tests.hostile.payloads import assert_shown_as_text, formula_payload, payload
from tests.notify.smtp_server import Smtp, serving
from tests.support.signin import sign_in_as

GLN = "7601000000019"
CONSENTED = "P-0042"  # the letter reaches the doctor
NOT_CONSENTED = "P-0099"  # the letter is blocked: it waits on the staff worklist

FIELDS = {
    "title": payload("title", 500),
    "service": payload("service", 64),
    "type": payload("type", 64),
    "author": payload("author", 200),
    "family_name": payload("family", 200),
    "given_name": payload("given", 200),
    "doctor_family": payload("docfamily", 200),
    "doctor_given": payload("docgiven", 200),
    "recorded_by": payload("recorded", 200),
    "blocked_family": payload("blockedfamily", 200),
}


@dataclass
class World:
    doctor: FlaskClient
    desk: FlaskClient
    api: Api
    doctor_id: int
    delivered: int
    blocked: int
    patient_id: int
    smtp: Smtp


def _patient(dpi_id: str, family: str) -> dict[str, Any]:
    return {"id": dpi_id, "family_name": family, "given_name": FIELDS["given_name"],
            "birth_date": "1961-04-02", "deceased": False}


def _letter(document_id: str, patient: dict[str, Any]) -> dict[str, Any]:
    return document_body(document_id, patient=patient, title=FIELDS["title"],
                         service=FIELDS["service"], type=FIELDS["type"],
                         author=FIELDS["author"])


@pytest.fixture()
def world(app: Flask, api: Api) -> Iterator[World]:
    app.config["WTF_CSRF_ENABLED"] = False  # the ZIP is a POST; CSRF is tested elsewhere
    with serving(app) as smtp:
        # Given a doctor the desk enrolled under hostile names, notified at each arrival,
        enrolled = enrol_sms_doctor(GLN, FIELDS["doctor_family"], FIELDS["doctor_given"],
                                    "claire.muller@cabinet.example", "+41791234567", CLI)
        doctor = db.session.scalar(select(Doctor).where(Doctor.gln == GLN))
        assert doctor is not None and enrolled.login
        doctor.must_change_password = False
        doctor.notification_mode = "immediate"
        desk, _, _ = create_staff("desk-hostile", "desk", CLI)
        desk.must_change_password = False
        db.session.commit()
        # a consent recorded "by" a payload, for a patient whose names are payloads,
        consent = consent_body(recorded_by=FIELDS["recorded_by"], patient={
            "family_name": FIELDS["family_name"], "given_name": FIELDS["given_name"],
            "birth_date": "1961-04-02"})
        assert api.put(f"/api/v1/patients/{CONSENTED}/consents/{GLN}",
                       json=consent).status_code == 201
        # a letter whose every text field is a payload, and one blocked for lack of consent.
        for document_id, patient in (
            ("DPI-H-1", _patient(CONSENTED, FIELDS["family_name"])),
            ("DPI-H-2", _patient(NOT_CONSENTED, FIELDS["blocked_family"])),
        ):
            answer = api.post("/api/v1/documents", json=_letter(document_id, patient))
            assert answer.status_code == 201, answer.get_json()
        db.session.expire_all()
        delivered, blocked = (
            db.session.scalar(select(Delivery.id).join(Document)
                              .where(Document.document_id == document_id))
            for document_id in ("DPI-H-1", "DPI-H-2"))
        patient = db.session.scalar(select(Patient).where(Patient.dpi_id == CONSENTED))
        assert delivered and blocked and patient
        doctor_client, desk_client = app.test_client(), app.test_client()
        sign_in_as(doctor_client, doctor)
        sign_in_as(desk_client, db.session.get(StaffUser, desk.id))
        yield World(doctor_client, desk_client, api, doctor.id, delivered, blocked, patient.id,
                    smtp)


def _page(client: FlaskClient, path: str) -> str:
    response = client.get(path)
    assert response.status_code == 200, (path, response.status_code)
    assert response.mimetype == "text/html"
    return response.get_data(as_text=True)


def test_the_payloads_were_stored_as_sent(world: World) -> None:
    # Markup in text is stored as sent (INTERFACES.md) and returned as sent to the DPI.
    status = world.api.get("/api/v1/documents/DPI-H-1").get_json()
    assert status["title"] == FIELDS["title"]
    document = db.session.scalar(select(Document).where(Document.document_id == "DPI-H-1"))
    assert document is not None and document.author == FIELDS["author"]


def test_the_doctors_pages_show_payloads_as_text(world: World) -> None:
    doctor_name = [FIELDS["doctor_family"]]
    pages = {
        "/documents": [FIELDS["title"], FIELDS["family_name"], *doctor_name],
        f"/documents?q={FIELDS['title'][:40]}": doctor_name,
        f"/documents?service={FIELDS['service']}": doctor_name,
        "/patients": [FIELDS["family_name"]],
        f"/patients/{world.patient_id}": [FIELDS["family_name"], FIELDS["title"]],
        f"/documents/{world.delivered}": [FIELDS["title"], FIELDS["author"],
                                          FIELDS["family_name"]],
        f"/documents/{world.delivered}/not-my-patient": [FIELDS["family_name"]],
        "/profile": [],
    }
    for path, expected in pages.items():
        assert_shown_as_text(_page(world.doctor, path), expected, path)


def test_the_staff_and_desk_pages_show_payloads_as_text(world: World) -> None:
    pages = {
        f"/staff/patients?q={FIELDS['family_name'][:30]}": [],
        f"/staff/patients/{CONSENTED}": [FIELDS["family_name"], FIELDS["doctor_family"]],
        f"/staff/patients/{NOT_CONSENTED}": [FIELDS["blocked_family"]],
        "/staff/worklist": [FIELDS["blocked_family"]],
        f"/staff/worklist/{world.blocked}": [FIELDS["blocked_family"], FIELDS["title"]],
        "/staff/doctors?q=script": [FIELDS["doctor_family"]],
        f"/staff/doctors?q={FIELDS['doctor_family'][:50]}": [],
        "/staff/desk?q=script": [FIELDS["doctor_family"]],
        f"/staff/desk/doctors/{world.doctor_id}": [FIELDS["doctor_family"]],
        "/staff/audit": [],
        f"/staff/audit?actor={FIELDS['recorded_by'][:60]}": [],
        "/staff/desk/accounts": [],
        "/staff/desk/notifications": [],
    }
    for path, expected in pages.items():
        assert_shown_as_text(_page(world.desk, path), expected, path)


def test_notification_emails_carry_no_payload(world: World) -> None:
    # When the arrival email goes out through the real SMTP server,
    assert send_due(now=utcnow() + timedelta(minutes=3)).sent == 1
    assert world.smtp.inbox.messages
    for _, raw in world.smtp.inbox.messages:
        message = message_from_bytes(raw, policy=policy.default)
        # then no header is broken by a name and no part carries any of the payloads (emails
        # name no patient and no letter), and the HTML part is markup of ours only.
        for name, value in message.items():
            assert "\r" not in str(value) and "\n" not in str(value).strip(), name
        for part in message.walk():  # type: ignore[attr-defined]
            if part.get_content_maintype() != "text":
                continue
            body = part.get_content()
            for value in FIELDS.values():
                assert value not in body
            assert "alert(1)" not in body and "{{7*7}}" not in body
            if part.get_content_subtype() == "html":
                assert_shown_as_text(body, [], "email")


def _disposition_is_safe(value: str) -> str:
    """A Content-Disposition a payload cannot break: one quoted, plain file name."""
    assert "\r" not in value and "\n" not in value
    match = re.fullmatch(r'(inline|attachment); filename="([A-Za-z0-9._-]+)"', value)
    assert match is not None, value
    return match.group(2)


def test_the_content_zip_and_their_file_names_are_safe(world: World) -> None:
    content = world.doctor.get(f"/documents/{world.delivered}/content?download=1")
    assert content.status_code == 200
    assert _disposition_is_safe(content.headers["Content-Disposition"]) == "DPI-H-1.pdf"
    archive = world.doctor.post("/documents/zip", data={"ids": [str(world.delivered)]})
    assert archive.status_code == 200
    _disposition_is_safe(archive.headers["Content-Disposition"])
    with zipfile.ZipFile(io.BytesIO(archive.data)) as opened:
        names = opened.namelist()
    assert names and all(re.fullmatch(r"[A-Za-z0-9._-]+\.pdf", name) for name in names), names


#: A request id the app keeps from its caller (it has the shape of one) and that a spreadsheet
#: reads as a formula (-1-1-1-1-1 = -5): the one client-chosen text a CSV cell starts with.
FORMULA_REQUEST_ID = "-1-1-1-1-1"


def test_the_csv_export_neutralises_formulas(app: Flask, world: World) -> None:
    # Given a refused API call carrying a formula as its request id (audited with it), a
    # "recorded by" and an audit filter that look like formulas (inside the details' JSON),
    anonymous = app.test_client().get("/api/v1/doctors",
                                      headers={"X-Request-ID": FORMULA_REQUEST_ID})
    assert anonymous.status_code == 401
    assert anonymous.headers["X-Request-ID"] == FORMULA_REQUEST_ID
    consent = consent_body(recorded_by=formula_payload("recorded"))
    assert world.api.put(f"/api/v1/patients/{CONSENTED}/consents/{GLN}",
                         json=consent).status_code == 200
    world.desk.get("/staff/audit/export.csv?actor=" + formula_payload("actor"))
    # when the desk exports the trail as CSV,
    response = world.desk.get("/staff/audit/export.csv")
    assert response.status_code == 200
    _disposition_is_safe(response.headers["Content-Disposition"])
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert len(rows) > 5
    # then no cell starts like a formula,
    for row in rows:
        for cell in row:
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), cell
    # the request id is there, neutralised by a leading apostrophe,
    request_ids = [row[rows[0].index("request_id")] for row in rows[1:]]
    assert "'" + FORMULA_REQUEST_ID in request_ids
    # and the free texts are inside the details' JSON cell, as sent.
    details = [json.loads(row[rows[0].index("details")]) for row in rows[1:]]
    assert {"recorded_by": formula_payload("recorded")}.items() <= next(
        d for d in details if d.get("recorded_by", "").startswith("=")).items()


def test_the_fhir_export_is_json_not_markup(world: World) -> None:
    response = world.desk.get("/staff/audit/export.json")
    assert response.status_code == 200
    assert "html" not in response.mimetype
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    _disposition_is_safe(response.headers["Content-Disposition"])
    bundle = json.loads(response.get_data(as_text=True))
    assert bundle["resourceType"] == "Bundle" and bundle["entry"]
