"""HIN sign-in in a real browser, through the development identity provider.

The portal runs with the development IdP on; its SAML settings are written by the same writer
``make run`` uses, once the server's port (hence its public URL) is known. The browser context
enforces the app's CSP (no ``bypass_csp``), so the IdP's auto-post must work without inline
script.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from werkzeug.serving import make_server

from app.auth.saml_settings import write_dev_settings_for
from app.extensions import db
from tests.conftest import make_app, upgrade

pytestmark = pytest.mark.browser


@pytest.fixture(scope="session")
def hin_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("browser-hin")
    app = make_app(
        f"sqlite:///{folder / 'relais.db'}", SERVER_NAME=None, SAML_DEV_IDP="1",
        SAML_DEV_IDP_DIR=str(folder / "dev-idp"), SAML_SETTINGS_DIR=str(folder / "saml"),
    )
    upgrade(app)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    url = f"http://127.0.0.1:{server.server_port}"
    app.config["PUBLIC_BASE_URL"] = url
    with app.app_context():
        assert write_dev_settings_for(app)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield url
    server.shutdown()
    with app.app_context():
        db.engine.dispose()


def test_a_doctor_signs_in_with_hin_through_the_development_idp(
    browser: Any, hin_server: str
) -> None:
    # A context that enforces the CSP: the auto-post must not need inline script.
    context = browser.new_context(locale="fr-CH")
    page = context.new_page()
    csp_errors: list[str] = []
    page.on("console", lambda msg: csp_errors.append(msg.text)
            if "Content Security Policy" in msg.text else None)

    # Given a doctor on the sign-in page
    page.goto(hin_server + "/auth/login")
    # When they choose HIN ...
    page.get_by_role("link", name="Se connecter avec HIN").click()
    # ... and, at the (development) identity provider, pick Dr Claire Muller
    page.wait_for_url("**/dev-idp/sso?*")
    assert page.get_by_role("heading", level=1).inner_text() == (
        "Fournisseur d'identité de développement")
    page.get_by_label("Claire Muller", exact=False).check()
    page.get_by_role("button", name="Se connecter").click()

    # Then the signed response is posted back on its own and they arrive signed in on their
    # landing page (/ sends a doctor to the one chosen in Mon profil: Mes documents by default)
    page.wait_for_url(hin_server + "/documents")
    assert page.get_by_role("button", name="Se déconnecter", exact=True).is_visible()
    assert "Claire Muller" in page.locator(".account-name").inner_text()
    assert csp_errors == []
    context.close()


def test_the_continue_button_works_without_javascript(browser: Any, hin_server: str) -> None:
    context = browser.new_context(locale="fr-CH", java_script_enabled=False)
    page = context.new_page()
    page.goto(hin_server + "/auth/hin/login")
    page.get_by_label("Luc Rochat", exact=False).check()
    page.get_by_role("button", name="Se connecter").click()
    # Without JavaScript the page waits for the doctor to press "Continuer".
    page.get_by_role("button", name="Continuer").click()
    page.wait_for_url(hin_server + "/documents")
    assert "Luc Rochat" in page.locator(".account-name").inner_text()
    context.close()
