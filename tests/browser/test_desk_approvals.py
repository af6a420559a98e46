"""Four eyes at the desk in headless Chromium: one desk user asks for a new password for a
doctor who can receive letters, a second desk user approves it on the approvals page and gets
the printable sheet, once; the doctor then signs in with it. Every page passes axe."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.audit import CLI
from app.extensions import db
from app.staff.enrolment import enrol_sms_doctor
from tests.browser.conftest import axe_violations
from tests.support.portal import Portal, serve_portal, sign_in, sign_in_staff

pytestmark = pytest.mark.browser

GLN = "7601000000040"


@pytest.fixture(scope="module")
def portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Portal]:
    with serve_portal(tmp_path_factory.mktemp("browser-approvals")) as served:
        yield served


def test_a_second_desk_user_approves_and_hands_over_the_new_password(
    browser: Any, portal: Portal, tmp_path: Path
) -> None:
    # Given an active SMS doctor
    with portal.app.app_context():
        enrolled = enrol_sms_doctor(GLN, "Favre", "Élise", "elise.favre@example.ch",
                                    "+41795551234", CLI)
        enrolled.doctor.must_change_password = False
        db.session.commit()
        doctor_id, login = enrolled.doctor.id, enrolled.login
        db.session.remove()

    # When one desk user asks for a new password from her page
    asker = browser.new_context(bypass_csp=True, locale="fr-CH")
    page = asker.new_page()
    sign_in_staff(page, portal, "desk", landing=f"/staff/desk/doctors/{doctor_id}")
    assert axe_violations(page) == []
    page.get_by_role("button", name="Réinitialiser le mot de passe").click()

    # Then the request waits for someone else, and says so
    page.wait_for_url(re.compile(r"/staff/desk/approvals/\d+$"))
    assert page.get_by_role("heading", level=1).inner_text() == "Demande d'approbation"
    assert "un autre collaborateur du guichet doit la décider" in page.content()
    assert page.get_by_role("button", name="Approuver et appliquer").count() == 0
    assert axe_violations(page) == []
    request_url = page.url

    # When a second desk user opens the approvals page and approves
    approver = browser.new_context(bypass_csp=True, locale="fr-CH")
    second = approver.new_page()
    sign_in_staff(second, portal, "desk", landing="/staff/desk/approvals")
    assert axe_violations(second) == []
    second.get_by_role("link", name="Élise Favre").click()
    second.wait_for_url(request_url)
    assert axe_violations(second) == []
    second.get_by_role("button", name="Approuver et appliquer").click()

    # Then the approver, not the asker, gets the sheet, once
    second.wait_for_url(re.compile(r"/staff/desk/credentials$"))
    shown_login, password = second.locator("dd.secret").all_inner_texts()
    assert shown_login == login
    assert axe_violations(second) == []
    second.screenshot(path=str(tmp_path / "approved-sheet.png"), full_page=True)
    second.reload()
    assert second.get_by_role("heading", level=1).inner_text() == "Identifiants déjà affichés"
    page.goto(portal.url + "/staff/desk/credentials")
    assert password not in page.content()
    page.goto(request_url)
    assert "Approuvée et appliquée" in page.content()
    asker.close()
    approver.close()

    # And the doctor signs in with it, and must choose her own password
    doctor = browser.new_context(locale="fr-CH")
    doctor_page = doctor.new_page()
    sign_in(doctor_page, portal, login, password)
    doctor_page.wait_for_url(re.compile(r"/auth/password"))
    doctor.close()
