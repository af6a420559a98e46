"""The desk in headless Chromium: a desk user signs in (password, authenticator), enrols a doctor
whose phone receives the code through the Twilio test server, prints the credentials sheet; the
new doctor then signs in with them."""

from __future__ import annotations

import itertools
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyotp
import pytest
from flask import Flask
from werkzeug.serving import make_server

from app.audit import CLI
from app.auth.passwords import hash_password
from app.auth.staff_factors import totp_secret
from app.extensions import db
from app.models.base import utcnow
from app.staff.accounts import create_staff
from app.staff.enrolment import enrol_sms_doctor
from tests.browser.conftest import axe_violations
from tests.conftest import make_app, upgrade
from tests.support.twilio_server import TwilioServer

pytestmark = pytest.mark.browser

DESK_PASSWORD = "lagoon-piano-velvet-harbour"
_CODE = re.compile(r"\b(\d{6})\b")
_desk_logins = (f"desk-browser-{n}" for n in itertools.count(1))
_glns = iter(["7601000000026", "7601000000033", "7601000000040", "7601000000057"])


@dataclass(frozen=True)
class DeskSite:
    url: str
    app: Flask
    sms: TwilioServer


@pytest.fixture(scope="session")
def desk_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DeskSite]:
    """The portal with SMS_BACKEND=twilio, pointed at a Twilio test server of its own."""
    saved = {name: os.environ.get(name) for name in
             ("TWILIO_EDGE", "TWILIO_REGION", "NO_PROXY", "no_proxy")}
    for name in ("TWILIO_EDGE", "TWILIO_REGION"):
        os.environ.pop(name, None)
    for name in ("NO_PROXY", "no_proxy"):
        os.environ[name] = "127.0.0.1,localhost"  # the SMS stay on this machine
    try:
        with TwilioServer() as sms:
            path = tmp_path_factory.mktemp("browser-desk") / "relais.db"
            app = make_app(f"sqlite:///{path}", SERVER_NAME=None, **sms.config())
            upgrade(app)
            server = make_server("127.0.0.1", 0, app, threaded=True)
            thread = threading.Thread(target=server.serve_forever, daemon=True)
            thread.start()
            yield DeskSite(f"http://127.0.0.1:{server.server_port}", app, sms)
            server.shutdown()
            with app.app_context():
                db.session.remove()
                db.engine.dispose()
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def new_desk_user(site: DeskSite) -> tuple[str, str]:
    """A desk account with a known password and a confirmed authenticator: (login, secret)."""
    login = next(_desk_logins)
    with site.app.app_context():
        user, _, _ = create_staff(login, "desk", CLI)
        user.password_hash = hash_password(DESK_PASSWORD)
        user.must_change_password = False
        user.totp_confirmed_at = utcnow()
        db.session.commit()
        secret = totp_secret(user)
        db.session.remove()
    return login, secret


def sign_in_desk(page: Any, site: DeskSite) -> None:
    """Through the real sign-in pages: login and password, then the authenticator code."""
    login, secret = new_desk_user(site)
    page.goto(site.url + "/staff/desk")
    assert "/auth/login" in page.url
    page.fill("#login", login)
    page.fill("#password", DESK_PASSWORD)
    page.get_by_role("button", name="Continuer").click()
    page.wait_for_url(re.compile(r"/auth/totp"))
    page.fill("#code", pyotp.TOTP(secret).now())
    page.get_by_role("button", name="Se connecter").click()
    page.wait_for_url(re.compile(r"/staff/desk$"))


def sms_code(site: DeskSite, count: int) -> tuple[str, str]:
    """The number and the code of the ``count``-th message the Twilio test server received."""
    message = site.sms.wait_for_messages(count)[count - 1]
    match = _CODE.search(message.body)
    assert match is not None
    return message.to, match.group(1)


def test_desk_enrols_a_doctor_who_then_signs_in(browser: Any, desk_site: DeskSite,
                                                tmp_path: Path) -> None:
    # No bypass_csp here: our pages must work under the strict policy.
    context = browser.new_context(locale="fr-CH")
    page = context.new_page()
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text))

    # Given a desk user signed in through the real pages
    sign_in_desk(page, desk_site)
    assert page.get_by_role("heading", level=1).inner_text() == "Guichet : comptes des médecins"

    # When the desk enrols a doctor who shows an identity card and a mobile phone
    page.get_by_role("link", name="Inscrire un médecin").first.click()
    gln = next(_glns)
    page.get_by_label("GLN").fill(gln)
    page.get_by_label("Nom de famille").fill("Favre")
    page.get_by_label("Prénom").fill("Élise")
    page.get_by_label("Adresse e-mail").fill("elise.favre@example.ch")
    page.get_by_label("Téléphone mobile").fill("079 555 12 34")
    page.get_by_label("Type de pièce").select_option(label="Carte d'identité")
    page.get_by_role("button", name="Envoyer le code par SMS").click()
    page.wait_for_url(re.compile(r"/staff/desk/enrol/verify$"))

    # And types the code the doctor reads from the phone
    sent = len(desk_site.sms.messages)
    to, code = sms_code(desk_site, sent)
    assert to == "+41795551234"
    page.get_by_label("Code reçu par SMS").fill(code)
    page.get_by_role("button", name="Vérifier le code").click()

    # Then the printable sheet shows the login and the temporary password
    page.wait_for_url(re.compile(r"/staff/desk/credentials$"))
    secrets = page.locator("dd.secret").all_inner_texts()
    assert len(secrets) == 2
    login, password = secrets
    assert login == "efavre"
    assert "/auth/login" in page.content()
    page.screenshot(path=str(tmp_path / "credentials.png"), full_page=True)
    # Printed, the sheet loses the portal's header and the desk's notes
    page.emulate_media(media="print")
    assert page.locator(".site-header").evaluate("e => getComputedStyle(e).display") == "none"
    assert page.locator(".screen-note").evaluate("e => getComputedStyle(e).display") == "none"
    page.emulate_media(media="screen")
    # And a reload does not show the password again
    page.reload()
    assert password not in page.content()
    assert page.get_by_role("heading", level=1).inner_text() == "Identifiants déjà affichés"
    assert [m for m in console if "Content Security Policy" in m] == []
    context.close()

    # When the doctor, on their own browser, signs in with the sheet
    doctor = browser.new_context(locale="fr-CH")
    doctor_page = doctor.new_page()
    doctor_page.goto(desk_site.url + "/auth/login")
    doctor_page.fill("#login", login)
    doctor_page.fill("#password", password)
    doctor_page.get_by_role("button", name="Continuer").click()
    doctor_page.wait_for_url(re.compile(r"/auth/code"))
    to, code = sms_code(desk_site, sent + 1)
    assert to == "+41795551234"
    doctor_page.fill("#code", code)
    doctor_page.get_by_role("button", name="Se connecter").click()

    # Then they are signed in, and asked to choose their own password first
    doctor_page.wait_for_url(re.compile(r"/auth/password"))
    doctor.close()


def test_desk_pages_have_no_serious_accessibility_violations(
    page: Any, desk_site: DeskSite
) -> None:
    sign_in_desk(page, desk_site)
    assert axe_violations(page) == []
    page.get_by_role("link", name="Inscrire un médecin").first.click()
    page.get_by_role("button", name="Envoyer le code par SMS").click()  # every field wrong
    assert page.locator("[aria-invalid=true]").count() >= 5
    assert axe_violations(page) == []
    with desk_site.app.app_context():
        enrolled = enrol_sms_doctor(next(_glns), "Keller", "Anne", "anne.keller@example.ch",
                                    "+41791112233", CLI)
        db.session.commit()
        doctor_id = enrolled.doctor.id
        db.session.remove()
    page.goto(f"{desk_site.url}/staff/desk/doctors/{doctor_id}")
    assert page.get_by_role("heading", level=1).inner_text() == "Anne Keller"
    assert axe_violations(page) == []
    page.goto(f"{desk_site.url}/staff/desk?q=keller")
    assert axe_violations(page) == []
