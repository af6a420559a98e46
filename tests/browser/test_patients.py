"""Mes patients, the patient's page, help and the privacy notice in a real browser.

A doctor enrolled at the desk signs in through the pages, opens Mes patients, switches views,
searches, opens a patient's page; axe-core finds no serious or critical violation on any of these
pages in French and English; screenshots at phone and desktop width go to docs/screenshots/.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from app.audit import CLI
from app.extensions import db
from app.models import Delivery, Doctor, Document
from app.models.base import utcnow
from app.staff.enrolment import enrol_sms_doctor
from tests.browser.conftest import axe_violations
from tests.conftest import consent_body, document_body
from tests.support.portal import Portal, serve_portal, sign_in

pytestmark = pytest.mark.browser

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
GLN = "7601000000033"
OTHER_GLN = "7601000000040"





def patient(dpi_id: str, family: str, given: str, birth: str) -> dict[str, Any]:
    return {"id": dpi_id, "family_name": family, "given_name": given, "birth_date": birth,
            "deceased": False}


def letter(portal: Portal, document_id: str, who: dict[str, Any], title: str,
           recipients: list[str] | None = None, **changes: Any) -> None:
    body = document_body(document_id, title=title, recipients=recipients or [GLN], **changes)
    body["patient"] = who
    portal.api("POST", "/api/v1/documents", body)


@pytest.fixture(scope="module")
def portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Portal]:
    with serve_portal(tmp_path_factory.mktemp("browser-patients")) as served:
        yield served


@pytest.fixture(scope="module")
def doctor_login(portal: Portal) -> tuple[str, str]:
    """Dr Sophie Bernasconi and her patients, sent by the DPI through the API.

    Anna Muster: two new letters. Marc Zbinden: one letter read two years ago. Louise Favre:
    consent revoked after a letter was delivered. Paul Keller is another doctor's patient.
    """
    with portal.app.app_context():
        enrolled = enrol_sms_doctor(GLN, "Bernasconi", "Sophie", "sophie@example.ch",
                                    "+41791112233", CLI)
        db.session.execute(update(Doctor).where(Doctor.gln == GLN)
                           .values(must_change_password=False))
        other = Doctor(gln=OTHER_GLN, family_name="Rochat", given_name="Luc", state="active",
                       activated_at=utcnow())
        db.session.add(other)
        db.session.commit()
    anna = patient("P-1001", "Muster", "Anna", "1961-04-02")
    marc = patient("P-1002", "Zbinden", "Marc", "1948-11-23")
    louise = patient("P-1003", "Favre", "Louise", "1979-06-30")
    paul = patient("P-1004", "Keller", "Paul", "1990-01-15")
    for who, gln in ((anna, GLN), (marc, GLN), (louise, GLN), (paul, OTHER_GLN)):
        portal.api("PUT", f"/api/v1/patients/{who['id']}/consents/{gln}", consent_body(
            patient={k: who[k] for k in ("family_name", "given_name", "birth_date")}))
    letter(portal, "DPI-2026-P00001", anna, "Lettre de sortie — cardiologie")
    letter(portal, "DPI-2026-P00002", anna, "Rapport de consultation de neurologie",
           type="consultation_report", service="neurologie")
    letter(portal, "DPI-2026-P00003", marc, "Lettre de sortie — orthopédie",
           service="orthopedie")
    letter(portal, "DPI-2026-P00004", louise, "Rapport des urgences", type="emergency_report",
           service="urgences")
    letter(portal, "DPI-2026-P00005", paul, "Lettre de sortie", recipients=[OTHER_GLN])
    portal.api("PUT", f"/api/v1/patients/P-1003/consents/{GLN}", consent_body(
        electronic_sending=False,
        patient={k: louise[k] for k in ("family_name", "given_name", "birth_date")}))
    with portal.app.app_context():
        two_years_ago = utcnow() - timedelta(days=730)
        marcs = select(Document.id).where(Document.document_id == "DPI-2026-P00003")
        db.session.execute(update(Delivery).where(Delivery.document_id.in_(marcs)).values(
            status="read", delivered_at=two_years_ago, first_read_at=two_years_ago))
        db.session.commit()
    return enrolled.login, enrolled.temporary_password


def shoot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for label, size in (("phone", PHONE), ("desktop", DESKTOP)):
        page.set_viewport_size(size)
        page.screenshot(path=str(SCREENSHOTS / f"{name}-{label}.png"), full_page=True)
    page.set_viewport_size(DESKTOP)


def listed(page: Any) -> list[str]:
    return [name.strip() for name in page.locator(".patients-table tbody th a").all_inner_texts()]


def switch_language(page: Any, name: str) -> None:
    page.get_by_role("button", name=name).click()
    page.wait_for_load_state()


def test_a_doctor_browses_her_patients(
    page: Any, portal: Portal, doctor_login: tuple[str, str]
) -> None:
    # Given a doctor signed in through the pages
    sign_in(page, portal, *doctor_login)
    page.set_viewport_size(DESKTOP)

    # When she opens Mes patients
    page.goto(portal.url + "/patients")

    # Then she sees her three patients, sorted by family name, with their counts
    assert page.get_by_role("heading", name="Mes patients").is_visible()
    assert listed(page) == ["Favre Louise", "Muster Anna", "Zbinden Marc"]
    assert "Keller" not in page.content()
    anna = page.locator("tr", has=page.get_by_role("link", name="Muster Anna"))
    assert "02.04.1961" in anna.inner_text()
    assert anna.locator("td").nth(1).inner_text() == "2"
    favre = page.locator("tr", has=page.get_by_role("link", name="Favre Louise"))
    assert "consentement révoqué" in favre.inner_text()
    assert axe_violations(page) == []
    shoot(page, "patients-fr")

    # When she switches to the unread view, then to the recent one
    page.get_by_role("link", name="Avec documents non lus").click()
    page.wait_for_url("**/patients?view=unread")
    assert listed(page) == ["Favre Louise", "Muster Anna"]
    page.get_by_role("link", name="Récents", exact=True).click()
    page.wait_for_url("**/patients?view=recent")
    assert listed(page) == ["Favre Louise", "Muster Anna"]
    page.get_by_role("link", name="Tous", exact=True).click()
    assert listed(page) == ["Favre Louise", "Muster Anna", "Zbinden Marc"]

    # And searches by name
    page.get_by_label("Rechercher un patient").fill("zbind")
    page.get_by_role("button", name="Rechercher", exact=True).click()
    page.wait_for_load_state()
    assert listed(page) == ["Zbinden Marc"]

    # When she opens Anna Muster's page
    page.goto(portal.url + "/patients")
    page.get_by_role("link", name="Muster Anna").click()
    page.wait_for_url(re.compile(r".*/patients/\d+$"))

    # Then she sees Anna's two letters, unread, each linking to the viewer
    assert page.get_by_role("heading", name="Muster Anna").is_visible()
    links = page.locator(".patient-doc-title")
    assert sorted(links.all_inner_texts()) == ["Lettre de sortie — cardiologie",
                                               "Rapport de consultation de neurologie"]
    for href in (links.nth(0).get_attribute("href"), links.nth(1).get_attribute("href")):
        assert re.fullmatch(r"/documents/\d+", href or "")
    assert page.locator(".pt-badge-unread").count() == 2
    assert axe_violations(page) == []
    shoot(page, "patient-fr")

    # And a revoked patient keeps the letter already delivered
    page.get_by_role("link", name="Mes patients").first.click()
    page.get_by_role("link", name="Favre Louise").click()
    assert "consentement révoqué" in page.content()
    assert page.get_by_role("link", name="Rapport des urgences").is_visible()

    # In English too
    page.goto(portal.url + "/patients")
    switch_language(page, "English")
    assert page.get_by_role("heading", name="My patients").is_visible()
    assert "consent revoked" in page.content()
    assert axe_violations(page) == []
    shoot(page, "patients-en")
    page.get_by_role("link", name="Muster Anna").click()
    page.wait_for_url(re.compile(r".*/patients/\d+$"))
    assert "Consultation report" in page.content()
    assert axe_violations(page) == []
    shoot(page, "patient-en")


@pytest.mark.parametrize("language", ["fr", "en"])
def test_help_and_privacy_for_anyone(
    browser: Any, portal: Portal, language: str
) -> None:
    # A visitor who cannot sign in (no session at all)
    context = browser.new_context(bypass_csp=True, locale="fr-CH" if language == "fr" else "en")
    page = context.new_page()
    try:
        page.set_viewport_size(DESKTOP)
        page.goto(portal.url + "/help")
        heading = "Aide" if language == "fr" else "Help"
        assert page.get_by_role("heading", name=heading, exact=True).is_visible()
        assert page.get_by_role("link", name="+41 22 372 62 01").is_visible()
        assert page.get_by_role("link", name="myhug@hcuge.ch").first.is_visible()
        assert axe_violations(page) == []
        shoot(page, f"help-{language}")

        privacy = "Protection des données" if language == "fr" else "Privacy notice"
        page.get_by_role("link", name=privacy).last.click()
        page.wait_for_url("**/privacy")
        assert page.get_by_role("heading", name=privacy, level=1).is_visible()
        assert axe_violations(page) == []
        shoot(page, f"help-privacy-{language}")
    finally:
        context.close()
