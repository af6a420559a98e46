"""Mon profil in a real browser: the landing page and the language take effect; accessible in
French and English (axe-core); screenshots at phone and desktop width."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.serving import make_server

from app.extensions import db
from app.models import Doctor
from app.models.base import utcnow
from tests.browser.conftest import axe_violations
from tests.conftest import make_app, upgrade
from tests.support.signin import signed_session_cookie

pytestmark = pytest.mark.browser

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
SIZES = {"phone": (390, 844), "desktop": (1280, 800)}


@dataclass
class Portal:
    url: str
    app: Flask


@pytest.fixture(scope="module")
def portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Portal]:
    path = tmp_path_factory.mktemp("browser-profile") / "relais.db"
    app = make_app(f"sqlite:///{path}", SERVER_NAME=None)
    upgrade(app)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Portal(f"http://127.0.0.1:{server.server_port}", app)
    server.shutdown()
    with app.app_context():
        db.engine.dispose()


def signed_in_context(browser: Any, portal: Portal, size: tuple[int, int]) -> Any:
    """A browser context holding the session ``start_session`` would give a fresh doctor."""
    with portal.app.app_context():
        doctor = Doctor(gln="7601000000019", family_name="Muller", given_name="Claire",
                        state="active", activated_at=utcnow(), email="claire@cabinet.example")
        existing = db.session.query(Doctor).filter_by(gln=doctor.gln).one_or_none()
        if existing is not None:
            db.session.delete(existing)
            db.session.flush()
        db.session.add(doctor)
        db.session.commit()
        value = signed_session_cookie(portal.app, doctor, lang="fr")
    context = browser.new_context(bypass_csp=True, locale="fr-CH",
                                  viewport={"width": size[0], "height": size[1]})
    context.add_cookies([{"name": portal.app.config["SESSION_COOKIE_NAME"], "value": value,
                          "url": portal.url}])
    return context


def shoot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"profile-{name}.png"), full_page=True)


@pytest.mark.parametrize("size_name", list(SIZES))
def test_landing_page_and_language_take_effect(
    browser: Any, portal: Portal, size_name: str
) -> None:
    context = signed_in_context(browser, portal, SIZES[size_name])
    page = context.new_page()
    try:
        # Given a doctor on Mon profil, in French
        page.goto(portal.url + "/profile")
        assert page.get_by_role("heading", level=1).inner_text() == "Mon profil"
        assert axe_violations(page) == []
        # Nothing wider than the screen (no sideways scrolling on a phone)
        assert page.evaluate("document.documentElement.scrollWidth") <= SIZES[size_name][0]
        shoot(page, f"fr-{size_name}")

        # When they choose Mon profil as the landing page and English, and save
        page.get_by_role("radio", name="Mon profil").check()
        page.get_by_role("radio", name="English").check()
        page.get_by_role("button", name="Enregistrer").click()
        page.wait_for_load_state()

        # Then the page speaks English at once and says it saved
        assert page.locator("html").get_attribute("lang") == "en"
        assert page.get_by_role("heading", level=1).inner_text() == "My profile"
        assert page.get_by_text("Your preferences are saved.").is_visible()
        assert axe_violations(page) == []
        shoot(page, f"en-{size_name}")

        # And the home page now opens Mon profil
        page.goto(portal.url + "/")
        assert page.url.endswith("/profile")
        assert page.get_by_role("radio", name="My profile").is_checked()
    finally:
        context.close()


def test_an_invalid_value_is_explained_and_nothing_saved(browser: Any, portal: Portal) -> None:
    context = signed_in_context(browser, portal, SIZES["desktop"])
    page = context.new_page()
    try:
        page.goto(portal.url + "/profile")
        page.get_by_label("« Récent » : nombre de mois").fill("500")
        page.get_by_role("button", name="Enregistrer").click()
        page.wait_for_load_state()
        assert page.get_by_role("alert").is_visible()
        assert "Rien n'a été enregistré" in page.get_by_role("alert").inner_text()
        assert axe_violations(page) == []
        shoot(page, "fr-error-desktop")
        with portal.app.app_context():
            doctor = db.session.query(Doctor).one()
            assert doctor.patients_recent_months == 12
    finally:
        context.close()
