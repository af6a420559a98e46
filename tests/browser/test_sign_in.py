"""Signing in, in a real browser: a doctor by SMS (code read from a local Twilio server), a
doctor's first sign-in with a temporary password, and staff with an authenticator app."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pyotp
import pytest

from app.audit import CLI
from app.auth.staff_factors import totp_secret
from app.extensions import db
from app.staff.accounts import create_staff
from tests.browser.conftest import axe_violations
from tests.support.portal import Portal, enrol, serve_portal, sign_in

pytestmark = pytest.mark.browser

NEW_PASSWORD = "violet-harbour-cinnamon-piano"


@pytest.fixture(scope="session")
def portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Portal]:
    """The portal on a loopback port, sending its SMS to a local Twilio server."""
    with serve_portal(tmp_path_factory.mktemp("browser-sign-in")) as served:
        yield served


def test_a_doctor_signs_in_with_password_and_sms_code(page: Any, portal: Portal) -> None:
    login, password = enrol(portal, "7601000000019", "Muller", "Claire", "+41791234567")
    with portal.app.app_context():
        from sqlalchemy import update

        from app.models import Doctor

        db.session.execute(update(Doctor).where(Doctor.login == login)
                           .values(must_change_password=False))
        db.session.commit()

    page.goto(portal.url + "/auth/login")
    assert page.get_by_role("link", name="Se connecter avec HIN").is_visible()
    assert axe_violations(page) == []
    page.get_by_label("Identifiant").fill(login)
    page.get_by_label("Mot de passe").fill(password)
    page.get_by_role("button", name="Continuer").click()

    page.wait_for_url("**/auth/code")
    assert "+41******567" in page.content()
    assert page.get_by_label("Code reçu par SMS").get_attribute("autocomplete") == "one-time-code"
    assert axe_violations(page) == []
    page.get_by_label("Code reçu par SMS").fill(portal.latest_code(1))
    page.get_by_role("button", name="Se connecter").click()

    page.wait_for_url(portal.url + "/documents")  # the landing page of Mon profil
    assert page.locator(".account-name").inner_text() == "Claire Muller"
    assert page.get_by_role("button", name="Se déconnecter").first.is_visible()


def test_a_new_doctor_changes_the_temporary_password_then_uses_the_new_one(
    page: Any, portal: Portal
) -> None:
    login, temporary = enrol(portal, "7601000000026", "Favre", "Jean", "+41797654321")

    sign_in(page, portal, login, temporary)

    page.wait_for_url("**/auth/password")
    assert page.get_by_label("Mot de passe actuel").count() == 0
    assert axe_violations(page) == []
    page.get_by_label("Nouveau mot de passe", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("Confirmer le nouveau mot de passe").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Enregistrer le mot de passe").click()
    page.wait_for_url(portal.url + "/documents")
    assert "Votre mot de passe a été changé." in page.content()

    page.get_by_role("button", name="Se déconnecter").first.click()
    page.wait_for_url(portal.url + "/")
    assert page.locator(".account-name").count() == 0

    sign_in(page, portal, login, NEW_PASSWORD)
    page.wait_for_url(portal.url + "/documents")
    assert page.locator(".account-name").inner_text() == "Jean Favre"


def test_staff_enrol_their_authenticator_then_sign_in_with_it(
    browser: Any, portal: Portal
) -> None:
    with portal.app.app_context():
        user, temporary, _ = create_staff("s.rochat", "staff", CLI)
        db.session.commit()
        secret = totp_secret(user)
    totp = pyotp.TOTP(secret)

    # A context without bypass_csp: the inline SVG QR code needs no exception to the CSP
    context = browser.new_context(locale="fr-CH")
    page = context.new_page()
    csp_errors: list[str] = []
    page.on("console", lambda m: csp_errors.append(m.text)
            if "Content Security Policy" in m.text else None)

    page.goto(portal.url + "/auth/login")
    page.get_by_label("Identifiant").fill("s.rochat")
    page.get_by_label("Mot de passe").fill(temporary)
    page.get_by_role("button", name="Continuer").click()

    page.wait_for_url("**/auth/totp/enrol")
    qr = page.locator("svg.qr-code")
    assert qr.is_visible()
    assert qr.bounding_box()["width"] >= 150
    grouped = " ".join(secret[i:i + 4] for i in range(0, len(secret), 4))
    assert page.locator(".totp-secret").inner_text() == grouped
    page.get_by_label("Code de l'application").fill(totp.now())
    page.get_by_role("button", name="Confirmer").click()

    # A new account changes its temporary password, then sees its recovery codes once
    page.wait_for_url("**/auth/password")
    page.get_by_label("Nouveau mot de passe", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("Confirmer le nouveau mot de passe").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Enregistrer le mot de passe").click()
    page.wait_for_url("**/auth/recovery-codes")
    codes = page.locator(".recovery-codes code").all_inner_texts()
    assert len(codes) == 10
    assert all(re.fullmatch(r"[a-z0-9]{4}(-[a-z0-9]{4}){3}", c) for c in codes)
    page.get_by_role("link", name="J'ai noté mes codes").click()
    page.wait_for_url(portal.url + "/")
    page.goto(portal.url + "/auth/recovery-codes")
    assert page.locator(".recovery-codes").count() == 0  # shown once

    # Next time: password, then the app's code. This step's code was spent at enrolment (a
    # replay is refused), so type the next step's, which the one-step drift window accepts.
    page.get_by_role("button", name="Se déconnecter").first.click()
    page.wait_for_url(portal.url + "/")
    page.goto(portal.url + "/auth/login")
    page.get_by_label("Identifiant").fill("s.rochat")
    page.get_by_label("Mot de passe").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Continuer").click()
    page.wait_for_url("**/auth/totp")
    page.get_by_label("Code", exact=True).fill(totp.at(time.time() + 30))
    page.get_by_role("button", name="Se connecter").click()
    page.wait_for_url(portal.url + "/")
    assert page.locator(".account-name").inner_text() == "s.rochat"
    assert csp_errors == []
    context.close()
