"""Hostile input in a real browser (the other hostile-input cases are in tests/hostile/).

In Chromium, with the app's own CSP enforced: a letter full of payloads, whose PDF carries
JavaScript, from a doctor enrolled under a hostile name. Mes documents, Mes patients, the viewer
(pdf.js drawing the PDF) and the content URL itself fire no dialog and report no CSP violation:
nothing of the payloads or of the PDF's scripts ran, and nothing even tried to. Before the
content route always answered as an attachment, Chromium's own PDF viewer ran the PDF's
app.alert three times when the content URL was opened directly, CSP sandbox notwithstanding."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import update

from app.audit import CLI
from app.extensions import db
from app.models import Doctor
from app.staff.enrolment import enrol_sms_doctor
from tests.conftest import consent_body, document_body
from tests.hostile.jspdf import pdf_with_javascript
from tests.hostile.payloads import SCRIPT, payload
from tests.support.portal import Portal, serve_portal, sign_in

pytestmark = pytest.mark.browser

GLN = "7601000000019"
PATIENT = {"id": "P-0042", "family_name": payload("family"), "given_name": payload("given"),
           "birth_date": "1961-04-02", "deceased": False}


@pytest.fixture(scope="module")
def portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Portal]:
    with serve_portal(tmp_path_factory.mktemp("hostile-browser")) as served:
        yield served


@pytest.fixture(scope="module")
def doctor_login(portal: Portal) -> tuple[str, str]:
    with portal.app.app_context():
        enrolled = enrol_sms_doctor(GLN, payload("docfamily"), payload("docgiven"),
                                    "claire@example.ch", "+41791234567", CLI)
        db.session.execute(update(Doctor).where(Doctor.gln == GLN)
                           .values(must_change_password=False))
        db.session.commit()
    portal.api("PUT", f"/api/v1/patients/P-0042/consents/{GLN}", consent_body(
        patient={key: PATIENT[key] for key in ("family_name", "given_name", "birth_date")}))
    portal.api("POST", "/api/v1/documents", document_body(
        "DPI-JS-B1", patient=PATIENT, title=payload("title", 500),
        service=payload("service", 64), type=payload("type", 64), author=payload("author"),
        content=base64.b64encode(pdf_with_javascript()).decode()))
    return enrolled.login, enrolled.temporary_password


@pytest.fixture()
def watched(browser: Any) -> Iterator[tuple[Any, list[str], list[str]]]:
    # Not the shared ``page`` fixture: that one bypasses the CSP (for axe-core). Here the app's
    # CSP is enforced, and any violation is reported on the console.
    context = browser.new_context(locale="fr-CH", accept_downloads=False)
    page = context.new_page()
    dialogs: list[str] = []
    console: list[str] = []

    def on_dialog(dialog: Any) -> None:
        dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.on("console", lambda message: console.append(message.text))
    page.on("pageerror", lambda error: console.append(f"pageerror: {error}"))
    yield page, dialogs, console
    context.close()


def _violations(console: list[str]) -> list[str]:
    return [line for line in console
            if "Content Security Policy" in line or "Refused to" in line or "pageerror" in line]


def test_pages_and_viewer_run_nothing_of_the_payloads(
    portal: Portal, doctor_login: tuple[str, str], watched: tuple[Any, list[str], list[str]]
) -> None:
    page, dialogs, console = watched
    sign_in(page, portal, *doctor_login)
    # Mes documents and Mes patients show the payloads as text.
    page.goto(portal.url + "/documents")
    assert SCRIPT in page.inner_text("main")
    page.goto(portal.url + "/patients")
    assert SCRIPT in page.inner_text("main")
    # The viewer draws the PDF (its scripts inert) and shows the title as text.
    page.goto(portal.url + "/documents")
    page.locator("main a[href^='/documents/']").first.click()
    page.wait_for_selector("#pdf-pages[data-rendered]", timeout=20000)
    assert page.locator("#pdf-pages canvas").count() == 1
    assert SCRIPT in page.inner_text("h1")
    viewer_url = page.url
    # The content URL opened directly (not from our viewer) leads back to the viewer; were it
    # served, it would be an attachment under a sandboxing CSP: no script, no plugin runs.
    try:
        page.goto(viewer_url + "/content", wait_until="load")
    except Exception as error:
        assert "Download" in str(error) or "ERR_ABORTED" in str(error), error
    page.wait_for_timeout(3000)  # a script run on open would have shown its dialog by now
    assert dialogs == []
    assert _violations(console) == []
