"""Every hospital page in a real browser, as staff and as the desk, in French and English.

The walk is taken from the app's URL map, not from a list: a new page under /staff is visited as
soon as it exists (a page whose URL takes an id must be given one below, or the test fails).
On each page axe-core must find no serious or critical violation, and the strict CSP must block
nothing of ours; a screenshot at desktop width goes to docs/screenshots/.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from app.audit import CLI
from app.auth.session import access_of
from app.extensions import db
from app.models import ApiClient, Delivery, DeskApproval, Doctor
from app.staff.accounts import create_staff
from app.staff.approvals import PASSWORD_RESET, request_change
from app.staff.enrolment import enrol_sms_doctor
from tests.browser.conftest import axe_violations
from tests.conftest import consent_body, document_body
from tests.support.portal import Portal, serve_portal, sign_in_staff

pytestmark = pytest.mark.browser

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
DESKTOP = {"width": 1280, "height": 800}
GLN = "7601000000033"
ANNA: dict[str, Any] = {"id": "P-2001", "family_name": "Muster", "given_name": "Anna",
        "birth_date": "1961-04-02", "deceased": False}
#: Anna consented; Paul did not: his letter is blocked and shows on the worklist.
PAUL: dict[str, Any] = {"id": "P-2002", "family_name": "Keller", "given_name": "Paul",
        "birth_date": "2012-01-15", "deceased": False}


@pytest.fixture(scope="module")
def portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Portal]:
    with serve_portal(tmp_path_factory.mktemp("browser-staff-pages")) as served:
        with served.app.app_context():
            enrolled = enrol_sms_doctor(GLN, "Bernasconi", "Sophie", "sophie@example.ch",
                                        "+41791112233", CLI)
            # A password reset another desk user asked for, waiting for approval.
            asker, _, _ = create_staff("desk-asker", "desk", CLI)
            request_change(enrolled.doctor, PASSWORD_RESET, {}, asker)
            db.session.commit()
        identity = {k: ANNA[k] for k in ("family_name", "given_name", "birth_date")}
        served.api("PUT", f"/api/v1/patients/{ANNA['id']}/consents/{GLN}",
                   consent_body(patient=identity))
        for number, who, changes in ((1, ANNA, {}), (2, ANNA, {"sensitive": True}),
                                     (3, PAUL, {})):
            body = document_body(f"DPI-2026-S0000{number}", recipients=[GLN], **changes)
            body["patient"] = who
            served.api("POST", "/api/v1/documents", body)
        yield served


def _pages(portal: Portal, role: str) -> list[str]:
    """The HTML pages this role may open: every GET route under /staff, ids filled in."""
    with portal.app.app_context():
        doctor_id = db.session.scalar(select(Doctor.id).where(Doctor.gln == GLN))
        blocked = db.session.scalar(select(Delivery.id).where(Delivery.status == "blocked"))
        client_id = db.session.scalar(select(ApiClient.id))
        approval_id = db.session.scalar(select(DeskApproval.id))
    values = {"doctor_id": doctor_id, "dpi_id": ANNA["id"], "delivery_id": blocked,
              "client_id": client_id, "approval_id": approval_id}
    pages = []
    for rule in portal.app.url_map.iter_rules():
        roles = access_of(portal.app, rule.endpoint)
        if not rule.rule.startswith("/staff") or "GET" not in (rule.methods or ()):
            continue
        if not isinstance(roles, frozenset) or role not in roles:
            continue
        if re.search(r"export|credentials|verify", rule.rule):
            continue  # downloads; one-time displays and steps that need a pending state
        missing = set(rule.arguments) - set(values)
        assert not missing, f"{rule.rule}: give this test a value for {missing}"
        pages.append(re.sub(r"<(?:\w+:)?(\w+)>", lambda m: str(values[m.group(1)]), rule.rule))
    return sorted(set(pages))


@pytest.mark.parametrize("role", ["staff", "desk"])
def test_every_staff_page_is_accessible_in_both_languages(
    browser: Any, portal: Portal, role: str
) -> None:
    context = browser.new_context(bypass_csp=True, locale="fr-CH", viewport=DESKTOP)
    page = context.new_page()
    sign_in_staff(page, portal, role, landing="/staff/doctors")
    pages = _pages(portal, role)
    assert "/staff/doctors" in pages and "/staff/worklist" in pages
    assert ("/staff/audit" in pages) is (role == "desk")
    for language, button in (("fr", "Français"), ("en", "English")):
        page.goto(portal.url + pages[0])
        page.get_by_role("button", name=button).click()
        page.wait_for_load_state()
        for path in pages:
            response = page.goto(portal.url + path)
            assert response is not None and response.status == 200, (path, language)
            assert page.locator("html").get_attribute("lang") == language
            assert page.get_by_role("heading", level=1).count() == 1, path
            assert axe_violations(page) == [], (path, language)
            if role == "desk":
                name = path.strip("/").replace("/", "-").replace(str(ANNA["id"]), "patient")
                name = re.sub(r"-\d+-", "-", re.sub(r"-\d+$", "-page", name))
                page.screenshot(path=str(SCREENSHOTS / f"{name}-{language}-desktop.png"),
                                full_page=True)
    context.close()


def test_staff_pages_break_no_csp_rule(browser: Any, portal: Portal) -> None:
    # Without bypass_csp: anything of ours the strict CSP blocks shows in the console.
    context = browser.new_context(locale="fr-CH")
    page = context.new_page()
    messages: list[str] = []
    page.on("console", lambda msg: messages.append(msg.text))
    sign_in_staff(page, portal, "desk", landing="/staff/doctors")
    for path in _pages(portal, "desk"):
        page.goto(portal.url + path)
    assert [m for m in messages if "Content Security Policy" in m] == []
    context.close()
