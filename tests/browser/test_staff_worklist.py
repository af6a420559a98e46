"""The staff worklist in headless Chromium: a letter blocked for want of consent is posted by
hand and leaves the list; a letter reported "pas mon patient" goes to the doctor the patient
designated, who then has it. axe-core on every page, in French and in English."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from app.audit import Actor
from app.extensions import db
from app.inbox.document_actions import report_not_my_patient
from app.models import Delivery, Doctor, Document
from app.models.base import utcnow
from app.pdf import make_pdf
from tests.browser.conftest import axe_violations
from tests.conftest import iso_ago
from tests.support.portal import Portal, serve_portal, sign_in_staff

pytestmark = pytest.mark.browser

WRONG_GLN = "7601000000019"
RIGHT_GLN = "7601000000026"


@pytest.fixture()
def portal(tmp_path: Path) -> Iterator[Portal]:
    with serve_portal(tmp_path) as served:
        with served.app.app_context():
            for gln, family, given in ((WRONG_GLN, "Muller", "Claire"),
                                       (RIGHT_GLN, "Rochat", "Luc")):
                db.session.add(Doctor(gln=gln, family_name=family, given_name=given,
                                      state="active", activated_at=utcnow()))
            db.session.commit()
            db.session.remove()
        yield served


def letter(portal: Portal, document_id: str, patient: dict[str, Any], title: str,
           recipients: list[str]) -> None:
    portal.api("POST", "/api/v1/documents", {
        "document_id": document_id, "patient": patient, "encounter": "outpatient",
        "recipients": recipients, "type": "discharge_letter", "title": title,
        "service": "cardiologie", "author": "Dr B. Exemple",
        "signed_at": iso_ago(hours=1), "sensitive": False,
        "third_party_data": False, "category": "report", "content_type": "application/pdf",
        "content": base64.b64encode(make_pdf([title])).decode(),
    })


def consent(portal: Portal, patient: dict[str, Any], gln: str) -> None:
    portal.api("PUT", f"/api/v1/patients/{patient['id']}/consents/{gln}", {
        "electronic_sending": True, "designation": "treating_doctor", "given_by": "patient",
        "recorded_by": "secretariat.cardio",
        "patient": {k: patient[k] for k in ("family_name", "given_name", "birth_date")},
    })


def report(portal: Portal, document_id: str, gln: str) -> None:
    """The doctor says "pas mon patient" (the doctor's route calls this same function)."""
    with portal.app.app_context():
        delivery = db.session.scalar(select(Delivery).join(Document).where(
            Document.document_id == document_id, Delivery.recipient_gln == gln))
        assert delivery is not None
        report_not_my_patient(delivery, Actor("doctor", gln))
        db.session.commit()
        db.session.remove()


def deliveries(portal: Portal, document_id: str) -> dict[str, str]:
    answer = portal.api("GET", f"/api/v1/documents/{document_id}")
    return {d["recipient"]: d["status"] for d in answer["deliveries"]}


def no_axe_violations(page: Any) -> None:
    violations = axe_violations(page)
    assert violations == [], [(v["id"], v["help"]) for v in violations]


def switch_language(page: Any, name: str) -> None:
    page.get_by_role("button", name=name).click()
    page.wait_for_load_state()


ANNA = {"id": "P-0042", "family_name": "Muster", "given_name": "Anna",
        "birth_date": "1961-04-02", "deceased": False}
PAUL = {"id": "P-0043", "family_name": "Favre", "given_name": "Paul",
        "birth_date": "1950-07-14", "deceased": False}


def test_staff_post_a_blocked_letter_and_redirect_a_reported_one(
    page: Any, portal: Portal
) -> None:
    # Given a letter for a patient who never consented: blocked
    letter(portal, "DPI-BW-1", ANNA, "Lettre de sortie Muster", [WRONG_GLN])
    assert deliveries(portal, "DPI-BW-1") == {WRONG_GLN: "blocked"}
    # ... and a letter delivered to a doctor who then reports "pas mon patient"
    consent(portal, PAUL, WRONG_GLN)
    consent(portal, PAUL, RIGHT_GLN)
    letter(portal, "DPI-BW-2", PAUL, "Rapport de consultation", [WRONG_GLN])
    report(portal, "DPI-BW-2", WRONG_GLN)

    # When staff sign in through the real pages and open the worklist
    sign_in_staff(page, portal, "staff", landing="/staff/worklist")
    rows = page.locator("table.worklist-table tbody tr")
    assert rows.count() == 2
    assert page.locator("h1").count() == 1
    blocked_row = rows.filter(has_text="Muster Anna")
    assert "Bloqué" in blocked_row.inner_text()
    assert "Muster Anna" in blocked_row.inner_text()
    assert "P-0042" in blocked_row.inner_text()
    no_axe_violations(page)

    # In English too, with the rows present
    switch_language(page, "English")
    assert "Blocked" in page.locator("table.worklist-table").inner_text()
    no_axe_violations(page)
    switch_language(page, "Français")

    # Then they record the blocked letter as posted: it leaves the open list
    page.get_by_role("link", name="Lettre de sortie Muster").click()
    page.wait_for_url("**/staff/worklist/*")
    no_axe_violations(page)
    page.get_by_role("button", name="Envoyé par la poste").click()
    page.wait_for_url("**/staff/worklist")
    assert "envoyé par la poste" in page.locator(".flashes").inner_text()
    assert page.locator("table.worklist-table tbody tr").count() == 1
    assert page.get_by_role("link", name="Lettre de sortie Muster").count() == 0

    # ... and shows in the handled list, with who and how
    page.get_by_label("Traités").check()
    page.get_by_role("button", name="Filtrer").click()
    page.wait_for_load_state()
    handled = page.locator("table.worklist-table").inner_text()
    assert "Envoyé par la poste" in handled and "staff-browser-" in handled
    no_axe_violations(page)

    # When they send the reported letter to the doctor the patient designated
    page.goto(portal.url + "/staff/worklist?kind=reported")
    page.get_by_role("link", name="Rapport de consultation").click()
    page.wait_for_url("**/staff/worklist/*")
    no_axe_violations(page)
    switch_language(page, "English")
    no_axe_violations(page)
    switch_language(page, "Français")
    page.get_by_label("Médecin", exact=True).select_option(RIGHT_GLN)
    page.get_by_role("button", name="Envoyer au médecin choisi").click()
    page.wait_for_url("**/staff/worklist")
    assert "médecin choisi" in page.locator(".flashes").inner_text()

    # Then that doctor has it, and nothing is left to handle
    assert deliveries(portal, "DPI-BW-2") == {WRONG_GLN: "delivered", RIGHT_GLN: "delivered"}
    assert page.locator("table.worklist-table").count() == 0
    assert page.locator("p.empty").count() == 1
