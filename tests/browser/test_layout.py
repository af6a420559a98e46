"""The base layout in a real browser: French first, English on request, accessible, strict CSP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import axe_violations

pytestmark = pytest.mark.browser


def test_home_page_speaks_french_then_english_on_request(page: Any, live_server: str) -> None:
    # Given a doctor whose browser asks for French
    page.goto(live_server + "/")
    assert page.locator("html").get_attribute("lang") == "fr"
    assert page.get_by_role("heading", level=1).inner_text() == "Bienvenue sur Relais"

    # When they choose English in the header
    page.get_by_role("button", name="English").click()

    # Then the page comes back in English, and stays so on the next page
    page.wait_for_load_state()
    assert page.locator("html").get_attribute("lang") == "en"
    assert page.get_by_role("heading", level=1).inner_text() == "Welcome to Relais"
    page.goto(live_server + "/no-such-page")
    assert page.get_by_role("heading", level=1).inner_text() == "Page not found"


@pytest.mark.parametrize("path", ["/", "/no-such-page"])
def test_pages_have_no_serious_accessibility_violations(
    page: Any, live_server: str, path: str
) -> None:
    page.goto(live_server + path)
    assert axe_violations(page) == []


def test_the_strict_csp_blocks_nothing_of_ours(browser: Any, live_server: str) -> None:
    # A context without bypass_csp: any CSP violation of our own markup shows in the console.
    context = browser.new_context()
    page = context.new_page()
    messages: list[str] = []
    page.on("console", lambda msg: messages.append(msg.text))
    response = page.goto(live_server + "/")
    assert response is not None
    assert "'unsafe-inline'" not in response.headers["content-security-policy"]
    # The stylesheet loaded: the header is laid out as a flex row.
    assert page.locator(".site-header").evaluate("e => getComputedStyle(e).display") == "flex"
    assert [m for m in messages if "Content Security Policy" in m] == []
    context.close()


@pytest.mark.parametrize(("name", "size"), [("phone", (390, 844)), ("desktop", (1440, 900))])
def test_screenshots(browser: Any, live_server: str, tmp_path: Path, name: str,
                     size: tuple[int, int]) -> None:
    context = browser.new_context(viewport={"width": size[0], "height": size[1]})
    page = context.new_page()
    page.goto(live_server + "/")
    shot = tmp_path / f"home-{name}.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 1000
    # Nothing overflows sideways on a phone.
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= size[0]
    context.close()
