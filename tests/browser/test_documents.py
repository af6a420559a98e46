"""Mes documents and the viewer in a real browser: a doctor signs in through the pages, sees the
unread count, opens a letter that pdf.js draws under the strict CSP, and the DPI then reads
``read`` through the API. Accessibility (axe-core) in French and English, and screenshots."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from app.audit import CLI
from app.extensions import db
from app.models import Doctor
from app.pdf import make_pdf
from app.staff.enrolment import enrol_sms_doctor
from tests.browser.conftest import axe_violations
from tests.conftest import consent_body, document_body
from tests.support.portal import Portal, serve_portal, sign_in

pytestmark = pytest.mark.browser

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
GLN = "7601000000019"


@pytest.fixture(scope="module")
def portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Portal]:
    with serve_portal(tmp_path_factory.mktemp("browser-documents")) as served:
        yield served


@pytest.fixture(scope="module")
def doctor_login(portal: Portal) -> tuple[str, str]:
    """Dr Muller, enrolled at the desk, with two letters from the DPI waiting."""
    with portal.app.app_context():
        enrolled = enrol_sms_doctor(GLN, "Muller", "Claire", "claire@example.ch",
                                    "+41791234567", CLI)
        db.session.execute(update(Doctor).where(Doctor.gln == GLN)
                           .values(must_change_password=False))
        db.session.commit()
    portal.api("PUT", f"/api/v1/patients/P-0042/consents/{GLN}", consent_body())
    portal.api("PUT", f"/api/v1/patients/P-0043/consents/{GLN}", consent_body(
        patient={"family_name": "Favre", "given_name": "Louis", "birth_date": "1950-07-14"}))
    pdf = make_pdf(["Lettre de sortie", "Cardiologie", "Suivi recommandé"])
    portal.api("POST", "/api/v1/documents", document_body(
        "DPI-2026-B00001", content=base64.b64encode(pdf).decode()))
    body = document_body("DPI-2026-B00002", title="Rapport de consultation",
                         type="consultation_report", service="neurologie")
    body["patient"] = {"id": "P-0043", "family_name": "Favre", "given_name": "Louis",
                       "birth_date": "1950-07-14", "deceased": False}
    portal.api("POST", "/api/v1/documents", body)
    return enrolled.login, enrolled.temporary_password


def shoot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for label, size in (("phone", PHONE), ("desktop", DESKTOP)):
        page.set_viewport_size(size)
        page.screenshot(path=str(SCREENSHOTS / f"{name}-{label}.png"), full_page=True)
    page.set_viewport_size(DESKTOP)


def drawn_pixels(page: Any) -> dict[str, int]:
    return page.evaluate("""() => {
        const canvas = document.querySelector('#pdf-pages canvas');
        const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
        let dark = 0;
        for (let i = 0; i < data.length; i += 4) {
            if (data[i + 3] > 0 && data[i] < 128 && data[i + 1] < 128 && data[i + 2] < 128) dark++;
        }
        return {width: canvas.width, height: canvas.height, dark};
    }""")


def test_a_doctor_opens_a_letter_and_the_dpi_sees_it_read(
    browser: Any, portal: Portal, doctor_login: tuple[str, str]
) -> None:
    # The app's own CSP, untouched (no bypass): pdf.js must work under it.
    context = browser.new_context(locale="fr-CH", viewport=DESKTOP)
    page = context.new_page()
    csp_errors: list[str] = []
    page.on("console", lambda m: csp_errors.append(m.text)
            if "Content Security Policy" in m.text else None)
    sign_in(page, portal, *doctor_login)

    page.goto(portal.url + "/documents")
    nav = page.get_by_role("navigation", name="Espace médecin")
    assert nav.locator(".nav-badge").inner_text().startswith("2")
    assert nav.get_by_role("link", name=re.compile("Mes documents")).get_attribute(
        "aria-current") == "page"
    assert page.locator(".document-unread").count() == 2

    page.get_by_role("link", name="Lettre de sortie", exact=True).click()
    page.wait_for_selector("#pdf-pages[data-rendered]", timeout=20000)
    pixels = drawn_pixels(page)
    assert pixels["width"] > 100 and pixels["height"] > 100
    assert pixels["dark"] > 50, pixels  # the text was drawn, not just a blank canvas
    assert page.locator(".pdf-error").is_hidden()
    assert csp_errors == []

    status = portal.api("GET", "/api/v1/documents/DPI-2026-B00001")["deliveries"][0]
    assert status["status"] == "read" and status["first_read_at"]
    page.goto(portal.url + "/documents")
    assert page.locator(".nav-badge").inner_text().startswith("1")
    context.close()


def test_filters_search_accessibility_and_screenshots(
    page: Any, portal: Portal, doctor_login: tuple[str, str]
) -> None:
    page.set_viewport_size(DESKTOP)
    sign_in(page, portal, *doctor_login)
    page.goto(portal.url + "/documents")

    page.get_by_label("Rechercher (patient ou titre)").fill("favre")
    page.get_by_role("button", name="Filtrer").click()
    page.wait_for_url("**/documents?*")
    items = page.locator(".document-item")
    assert items.count() == 1 and "Rapport de consultation" in items.inner_text()

    page.goto(portal.url + "/documents")
    page.get_by_label("Service").select_option("cardiologie")
    page.get_by_role("button", name="Filtrer").click()
    page.wait_for_url("**/documents?*")
    assert page.locator(".document-item").count() == 1
    assert "Lettre de sortie" in page.locator(".document-item").inner_text()

    for lang, button in (("fr", None), ("en", "English")):
        if button:
            page.get_by_role("button", name=button).click()
            page.wait_for_load_state()
        page.goto(portal.url + "/documents")
        assert page.locator("html").get_attribute("lang") == lang
        assert axe_violations(page) == [], lang
        shoot(page, f"documents-{lang}")
        page.locator(".document-title a").first.click()
        page.wait_for_selector("#pdf-pages[data-rendered]", timeout=20000)
        assert axe_violations(page) == [], lang
        shoot(page, f"viewer-{lang}")
    nav = page.get_by_role("navigation", name="Doctor's workspace")
    assert nav.get_by_role("link", name=re.compile("My documents")).count() == 1
