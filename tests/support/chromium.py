"""Debian's Chromium for the browser tests, through Playwright (never a browser of its own)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.support.servers import real_clock_environment

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def launch_chromium(playwright: Any) -> Any:
    """Debian's Chromium, headless. It runs on the real clock even under
    ``make test-clock-ahead``: the browser is the doctor's own computer, another machine, and
    libfaketime keeps Chromium from ever closing."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                      env=real_clock_environment())


def chromium_session(skip_or_fail: Any) -> Iterator[Any]:
    """One Chromium for the whole test session: Playwright's sync API runs one event loop per
    thread, so every test that drives a browser (tests/browser/, tests/deploy/) shares it."""
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        skip_or_fail("Debian's chromium is not installed (make test installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = launch_chromium(p)
        yield chromium
        chromium.close()
