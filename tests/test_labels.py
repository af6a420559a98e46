"""The words for the codes: one list each (app/labels.py), and every page shows the same words.

Two lists of document-type labels used to disagree (Mes documents said ``lab_report``, Mes
patients ``laboratory_report``); this pins the one list and renders every page that names a type.
"""

from __future__ import annotations

import re

from flask.testing import FlaskClient
from sqlalchemy import select

from app.audit import SYSTEM
from app.extensions import db
from app.inbox.document_actions import report_not_my_patient
from app.labels import DOCUMENT_TYPES, RULE_LABELS, STATUS_LABELS, type_label
from app.models import Delivery, Doctor, Document
from app.staff.accounts import create_staff
from app.states import Rule, Status
from tests.conftest import Api, consent_body, document_body
from tests.support.signin import sign_in_as

GLN = "7601000000019"
#: The type codes the DPI is known to send: the API's example (INTERFACES.md), the demo, the
#: benchmark's letters and the browser tests' DPI.
SENT_BY_THE_DPI = {"discharge_letter", "consultation_report", "operative_report",
                   "imaging_report", "lab_report", "referral_letter", "emergency_report"}


def test_every_type_the_dpi_sends_has_exactly_one_label() -> None:
    assert set(DOCUMENT_TYPES) == SENT_BY_THE_DPI
    labels = [str(label) for label in DOCUMENT_TYPES.values()]
    assert len(set(labels)) == len(labels)  # no two codes say the same thing
    assert type_label("unknown_code") == "unknown_code"  # shown as sent


def test_every_status_and_rule_has_its_words() -> None:
    assert set(STATUS_LABELS) == {status.value for status in Status}
    assert set(RULE_LABELS) == {rule.value for rule in Rule}


def _text(answer: object) -> str:
    html: str = answer.get_data(as_text=True)  # type: ignore[attr-defined]
    return re.sub(r"\s+", " ", html)


def test_inbox_patient_page_and_staff_pages_show_the_same_label(
    api: Api, client: FlaskClient, active_doctor: Doctor
) -> None:
    body = consent_body(patient={"family_name": "Muster", "given_name": "Anna",
                                 "birth_date": "1961-04-02"})
    assert api.put(f"/api/v1/patients/P-0042/consents/{GLN}", json=body).status_code in (200, 201)
    for number, code in enumerate(sorted(DOCUMENT_TYPES), start=1):
        letter = document_body(f"DPI-2026-{number:06d}", type=code, title=f"Lettre {number}")
        letter["recipients"] = [GLN]
        assert api.post("/api/v1/documents", json=letter).status_code == 201
    deliveries = {document.type: delivery for delivery, document in db.session.execute(
        select(Delivery, Document).join(Document)).all()}
    patient_id = next(iter(deliveries.values())).document.patient_id

    sign_in_as(client, active_doctor)
    inbox = _text(client.get("/documents"))
    patient_page = _text(client.get(f"/patients/{patient_id}"))
    viewers = {code: _text(client.get(f"/documents/{d.id}")) for code, d in deliveries.items()}
    # The staff see the letters on the patient's page, and a reported one on the worklist.
    for delivery in deliveries.values():
        report_not_my_patient(delivery, SYSTEM)
    db.session.commit()
    staff, _, _ = create_staff("labels-staff", "staff", SYSTEM)
    staff.must_change_password = False
    db.session.commit()
    sign_in_as(client, staff)
    staff_patient = _text(client.get("/staff/patients/P-0042"))
    worklist = {code: _text(client.get(f"/staff/worklist/{d.id}"))
                for code, d in deliveries.items()}

    for code, label in DOCUMENT_TYPES.items():
        words = str(label).replace("'", "&#39;")
        assert words in inbox, code
        assert words in patient_page, code
        assert words in viewers[code], code
        assert words in staff_patient, code
        assert words in worklist[code], code
