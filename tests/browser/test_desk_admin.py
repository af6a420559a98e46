"""The desk's administration lists in headless Chromium: a desk user signs in (password,
authenticator), resends a notification email that failed for good (a real SMTP server then
receives it once) and revokes an API client (its token is refused at once); axe-core on both
pages, in French and in English."""

from __future__ import annotations

import http.client
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask
from werkzeug.serving import make_server

from app.audit import CLI
from app.dispatch.clients import create_client
from app.extensions import db
from app.models import Doctor, Notification
from app.models.base import utcnow
from app.notify.outbox import send_due
from app.staff.accounts import create_staff
from tests.browser.conftest import axe_violations
from tests.conftest import make_app, upgrade
from tests.notify.smtp_server import Smtp, serving
from tests.support.portal import sign_in_staff

pytestmark = pytest.mark.browser



@dataclass(frozen=True)
class Site:
    url: str
    app: Flask
    smtp: Smtp


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The portal sending its email to a real SMTP server of its own."""
    path = tmp_path_factory.mktemp("browser-desk-admin") / "relais.db"
    app = make_app(f"sqlite:///{path}", SERVER_NAME=None)
    upgrade(app)
    with serving(app) as smtp:
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield Site(f"http://127.0.0.1:{server.server_port}", app, smtp)
        server.shutdown()
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def failed_email(site: Site, gln: str) -> int:
    """An arrival email to an active doctor that failed for good; returns its id."""
    with site.app.app_context():
        doctor = Doctor(gln=gln, family_name="Muller", given_name="Claire", state="active",
                        activated_at=utcnow(), email="claire.muller@cabinet.example",
                        notification_mode="immediate")
        db.session.add(doctor)
        db.session.flush()
        now = utcnow()
        row = Notification(doctor_id=doctor.id, kind="arrival", count=2,
                           idempotency_key=f"arrival:{doctor.id}:browser", due_at=now,
                           created_at=now - timedelta(hours=6), next_attempt_at=now,
                           attempts=6, failed_at=now, last_error="ConnectionRefusedError")
        db.session.add(row)
        db.session.commit()
        row_id = row.id
        db.session.remove()
    return row_id


def api_status(site: Site, token: str) -> int:
    """The status of a real API call with this bearer token."""
    connection = http.client.HTTPConnection(urlsplit(site.url).netloc, timeout=10)
    try:
        connection.request("GET", "/api/v1/doctors", headers={"Authorization": f"Bearer {token}"})
        return connection.getresponse().status
    finally:
        connection.close()


def test_the_desk_resends_a_failed_email_and_revokes_an_api_client(
    browser: Any, site: Site
) -> None:
    # No bypass_csp here: the pages must work under the strict policy.
    context = browser.new_context(locale="fr-CH")
    page = context.new_page()
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text))
    row_id = failed_email(site, "7601000000019")
    with site.app.app_context():
        _, token = create_client("dpi-browser", CLI)
        db.session.commit()
        db.session.remove()
    assert api_status(site, token) == 200

    # Given a desk user signed in, who follows the link from the desk's first page
    sign_in_staff(page, site, "desk", landing="/staff/desk")
    page.get_by_role("link", name="Voir les e-mails en échec et les renvoyer").click()
    page.wait_for_url(re.compile(r"/staff/desk/notifications$"))
    assert page.get_by_role("heading", level=1).inner_text() == (
        "E-mails de notification en échec")
    assert "ConnectionRefusedError" in page.content()

    # When the desk resends the email
    page.get_by_role("button", name=re.compile(r"^Renvoyer")).click()
    page.wait_for_url(re.compile(r"/staff/desk/notifications$"))
    assert "remis dans la file d'envoi" in page.locator(".flashes").inner_text()
    assert "Aucun e-mail en échec." in page.content()

    # Then the next run of the sender delivers it, once
    with site.app.app_context():
        assert send_due().sent == 1
        assert send_due().sent == 0
        row = db.session.get(Notification, row_id)
        assert row is not None and row.sent_at is not None
        db.session.remove()
    assert len(site.smtp.inbox.messages) == 1

    # When the desk revokes the API client, through the confirmation step
    page.get_by_role("link", name="Comptes et accès").first.click()
    page.wait_for_url(re.compile(r"/staff/desk/accounts$"))
    page.get_by_role("link", name="Révoquer le client dpi-browser").click()
    page.wait_for_url(re.compile(r"/staff/desk/accounts/clients/\d+/revoke$"))
    assert api_status(site, token) == 200  # nothing happened yet
    page.get_by_role("button", name="Révoquer définitivement dpi-browser").click()
    page.wait_for_url(re.compile(r"/staff/desk/accounts$"))
    assert "est révoqué" in page.locator(".flashes").inner_text()

    # Then its token is refused at once
    assert api_status(site, token) == 401
    assert [m for m in console if "Content Security Policy" in m] == []
    context.close()


def test_desk_admin_pages_have_no_serious_accessibility_violations(
    page: Any, site: Site
) -> None:
    failed_email(site, "7601000000026")
    with site.app.app_context():
        create_client("dpi-axe", CLI)
        create_staff("nurse.axe", "staff", CLI)
        db.session.commit()
        db.session.remove()
    sign_in_staff(page, site, "desk", landing="/staff/desk")
    for language, headings in (("fr", ("E-mails de notification en échec", "Comptes et accès",
                                       "Révoquer le client dpi-axe")),
                               ("en", ("Notification emails that failed", "Accounts and access",
                                       "Revoke the client dpi-axe"))):
        if language == "en":
            page.get_by_role("button", name="English").click()
            page.wait_for_load_state()
        page.goto(site.url + "/staff/desk/notifications")
        assert page.get_by_role("heading", level=1).inner_text() == headings[0]
        assert page.locator("html").get_attribute("lang") == language
        assert axe_violations(page) == [], language
        page.goto(site.url + "/staff/desk/accounts")
        assert page.get_by_role("heading", level=1).inner_text() == headings[1]
        assert axe_violations(page) == [], language
        page.locator("a[href$='/revoke']").filter(has_text="dpi-axe").click()
        page.wait_for_load_state()
        assert page.get_by_role("heading", level=1).inner_text() == headings[2]
        assert axe_violations(page) == [], language
