"""Hospital staff in headless Chromium: a staff user signs in through the real pages (password,
authenticator), finds a doctor by specialty, records consents for an adult and for a
14-year-old, follows a sensitive letter from held to delivered after ``dispatch release-due``,
and revokes a consent, which cancels another held letter. axe-core checks every staff page of
this part, in French and in English."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from app.extensions import db
from app.gln import make_gln
from app.models import Consent, Delivery, Doctor, Document, Patient
from app.models.base import utcnow
from tests.browser.conftest import axe_violations
from tests.conftest import document_body
from tests.support.portal import Portal, serve_portal, sign_in_staff

pytestmark = pytest.mark.browser

MULLER = "7601000000019"
ROCHAT = make_gln("760100000002")
ADULT = "P-ADULT"
TEEN = "P-TEEN"


def _years_ago(years: int) -> date:
    today = utcnow().date()
    try:
        return today.replace(year=today.year - years)
    except ValueError:  # 29 February
        return today.replace(year=today.year - years, day=28)


@pytest.fixture(scope="module")
def portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Portal]:
    with serve_portal(tmp_path_factory.mktemp("browser-staff")) as served:
        with served.app.app_context():
            muller = Doctor(gln=MULLER, family_name="Muller", given_name="Claire",
                            locality="Genève", state="active", activated_at=utcnow(),
                            notification_mode="immediate")
            muller.specialties = ["cardiologie"]
            rochat = Doctor(gln=ROCHAT, family_name="Rochat", given_name="Luc",
                            locality="Carouge", state="active", activated_at=utcnow())
            rochat.specialties = ["pediatrie"]
            db.session.add_all([
                muller, rochat,
                Patient(dpi_id=ADULT, family_name="Muster", given_name="Anna",
                        birth_date=date(1961, 4, 2)),
                Patient(dpi_id=TEEN, family_name="Favre", given_name="Théo",
                        birth_date=_years_ago(14) - timedelta(days=30)),
            ])
            db.session.commit()
            db.session.remove()
        yield served


def consents(dpi_id: str, portal: Portal) -> list[tuple[str, bool, bool]]:
    with portal.app.app_context():
        rows = db.session.execute(
            select(Doctor.gln, Consent.electronic_sending, Consent.revoked_at.is_(None))
            .join(Consent.doctor).join(Consent.patient).where(Patient.dpi_id == dpi_id)
        ).all()
        db.session.remove()
        return [(gln, bool(sending), bool(active)) for gln, sending, active in rows]


def send_sensitive(portal: Portal, document_id: str) -> None:
    body = document_body(
        document_id, sensitive=True, signed_at=utcnow().isoformat(), recipients=[MULLER],
        title=f"Lettre {document_id}",
        patient={"id": ADULT, "family_name": "Muster", "given_name": "Anna",
                 "birth_date": "1961-04-02", "deceased": False},
    )
    answer = portal.api("POST", "/api/v1/documents", body)
    assert answer["deliveries"][0]["status"] == "held"


def row_of(page: Any, title: str) -> str:
    text: str = page.locator("table.staff-deliveries tr", has_text=title).inner_text()
    return text


def open_patient(page: Any, portal: Portal, dpi_id: str) -> None:
    """Open a patient's page by its address, as a bookmark would: the page asks first (the
    browser says the request came from no page of ours), and the button opens the record."""
    page.goto(f"{portal.url}/staff/patients/{dpi_id}")
    assert page.get_by_role("heading", level=1).inner_text() in (
        "Ouvrir le dossier d'un patient", "Open a patient's record")
    assert dpi_id in page.locator("main").inner_text()
    page.locator("main a.button-primary").click()
    page.wait_for_url(re.compile(re.escape(f"/staff/patients/{dpi_id}") + "$"))


def follow_our_link(page: Any, url: str) -> None:
    """Go to ``url`` as a link of the page shown would (the request is then our own pages')."""
    with page.expect_navigation():
        page.evaluate("url => { window.location.href = url; }", url)


def assert_accessible(page: Any) -> None:
    violations = axe_violations(page)
    assert violations == [], [(v["id"], [n["target"] for n in v["nodes"]]) for v in violations]


def test_staff_choose_a_doctor_record_consents_and_follow_letters(browser: Any,
                                                                  portal: Portal) -> None:
    # No bypass_csp here: the pages must work under the strict policy.
    context = browser.new_context(locale="fr-CH")
    page = context.new_page()
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text))
    sign_in_staff(page, portal, "staff", landing=f"/staff/patients/{ADULT}")
    assert page.get_by_role("heading", level=1).inner_text() == "Muster Anna"
    assert "16 ans ou plus" in page.locator(".staff-consent-rule").inner_text()

    # Staff look the cardiologist up from the patient's consent form
    page.get_by_role("link", name="Chercher le médecin dans l'annuaire").click()
    page.wait_for_url(re.compile(r"/staff/doctors\?for=P-ADULT"))
    page.get_by_label("Spécialité").select_option(label="Cardiologie")
    page.get_by_role("button", name="Rechercher").click()
    results = page.locator("table.lookup-results tbody tr")
    assert results.count() == 1
    assert "Muller Claire" in results.first.inner_text()
    assert "Rochat" not in page.locator("table.lookup-results").inner_text()
    results.first.get_by_role("link", name=re.compile("Choisir")).click()
    page.wait_for_url(re.compile(r"/staff/patients/P-ADULT\?gln=7601000000019"))
    assert page.get_by_label("GLN du médecin").input_value() == MULLER

    # ... and record the adult's consent, given by the patient
    page.get_by_label("Le patient", exact=True).check()
    page.get_by_role("button", name="Enregistrer le consentement").click()
    page.wait_for_url(re.compile(r"/staff/patients/P-ADULT$"))
    assert "Consentement enregistré pour Claire Muller" in page.locator(".flashes").inner_text()
    assert consents(ADULT, portal) == [(MULLER, True, True)]

    # A 14-year-old: refused without the young person's agreement, nothing stored
    open_patient(page, portal, TEEN)
    assert "de 12 à 15 ans" in page.locator(".staff-consent-rule").inner_text()
    page.get_by_label("GLN du médecin").fill(ROCHAT)
    page.get_by_label("Un représentant", exact=True).check()
    page.get_by_label("Nom du représentant").fill("Marie Favre")
    page.get_by_role("button", name="Enregistrer le consentement").click()
    error = page.locator("#minor_agreement-error")
    assert "doit aussi signer son accord" in error.inner_text()
    assert "Rien n'a été enregistré" in page.get_by_role("alert").inner_text()
    assert consents(TEEN, portal) == []
    # ... accepted with it (the form kept what was typed)
    assert page.get_by_label("Nom du représentant").input_value() == "Marie Favre"
    page.get_by_label("Le jeune (12 à 15 ans) a signé son accord").check()
    page.get_by_role("button", name="Enregistrer le consentement").click()
    page.wait_for_url(re.compile(r"/staff/patients/P-TEEN$"))
    assert consents(TEEN, portal) == [(ROCHAT, True, True)]
    assert "Marie Favre" in page.locator("table.staff-consents").inner_text()

    # A sensitive letter from the DPI is held, with its release time
    send_sensitive(portal, "DOC-SENSITIVE-1")
    open_patient(page, portal, ADULT)
    held = row_of(page, "Lettre DOC-SENSITIVE-1")
    assert "Retenu" in held and "envoi prévu le" in held
    assert "délai avant l'envoi" in held

    # Time passes: its release time is behind us, and the worker's command runs
    with portal.app.app_context():
        document_pk = (select(Document.id).where(Document.document_id == "DOC-SENSITIVE-1")
                       .scalar_subquery())
        db.session.execute(update(Delivery).where(Delivery.document_id == document_pk)
                           .values(release_at=utcnow() - timedelta(minutes=1)))
        db.session.commit()
        db.session.remove()
    result = portal.app.test_cli_runner().invoke(args=["dispatch", "release-due"])
    assert result.exit_code == 0, result.output
    page.reload()
    delivered = row_of(page, "Lettre DOC-SENSITIVE-1")
    assert "Remis" in delivered and "envoi prévu" not in delivered

    # Another sensitive letter is held; revoking the consent cancels it
    send_sensitive(portal, "DOC-SENSITIVE-2")
    page.reload()
    assert "Retenu" in row_of(page, "Lettre DOC-SENSITIVE-2")
    page.get_by_role("button", name=re.compile("Révoquer le consentement")).click()
    page.wait_for_url(re.compile(r"/staff/patients/P-ADULT$"))
    assert "Consentement révoqué" in page.locator(".flashes").inner_text()
    assert "Annulé" in row_of(page, "Lettre DOC-SENSITIVE-2")
    assert "Remis" in row_of(page, "Lettre DOC-SENSITIVE-1")  # delivered letters stay
    assert consents(ADULT, portal) == [(MULLER, True, False)]
    assert page.get_by_role("button", name=re.compile("Révoquer le consentement")).count() == 0
    # never a link to content
    assert page.locator("a[href^='/documents/']").count() == 0
    assert [m for m in console if "Content Security Policy" in m] == []
    context.close()


PAGES = [
    "/staff/doctors",
    "/staff/doctors?specialty=cardiologie",
    f"/staff/doctors?q=muller&for={ADULT}",
    "/staff/doctors?q=" + "x" * 101,
    "/staff/patients",
    "/staff/patients?q=muster",
    "/staff/patients?dpi_id=P-NONE",
    "/staff/patients?birth_date=1961-02-30",
    f"/staff/patients/{ADULT}",
    f"/staff/patients/{TEEN}",
    "/staff/patients/new?dpi_id=P-NONE",
]


def test_every_page_is_accessible_in_french_and_english(browser: Any, portal: Portal) -> None:
    # bypass_csp lets the test inject axe-core (the story above runs under the strict policy).
    context = browser.new_context(locale="fr-CH", bypass_csp=True)
    page = context.new_page()
    sign_in_staff(page, portal, "staff")
    for language in ("fr", "en"):
        if language == "en":
            page.get_by_role("button", name="English").click()
            page.wait_for_load_state()
        for path in PAGES:
            follow_our_link(page, portal.url + path)
            assert page.locator("html").get_attribute("lang") == language
            assert page.get_by_role("heading", level=1).count() == 1, path
            assert_accessible(page)
    # The question asked before a patient's page opened from elsewhere (a bookmark here)
    page.goto(f"{portal.url}/staff/patients/{ADULT}")
    assert page.get_by_role("heading", level=1).inner_text() == "Open a patient's record"
    assert_accessible(page)
    # The error states of the forms, too
    open_patient(page, portal, TEEN)
    page.get_by_role("button", name="Record the consent").click()
    assert page.locator("#given_by-error").count() == 1
    assert_accessible(page)
    page.goto(f"{portal.url}/staff/patients/new")
    page.get_by_role("button", name="Register the patient and the consent").click()
    assert page.locator("#dpi_id-error").count() == 1
    assert_accessible(page)
    context.close()
