"""Browser tests: the portal served on a free loopback port, driven in Debian's Chromium."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

from tests.conftest import make_app, skip_or_fail, upgrade

AXE = Path(__file__).parent / "node_modules" / "axe-core" / "axe.min.js"


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    path = tmp_path_factory.mktemp("browser") / "relais.db"
    app = make_app(f"sqlite:///{path}", SERVER_NAME=None)
    upgrade(app)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.fixture()
def page(browser: Any) -> Iterator[Any]:
    # bypass_csp lets the test inject axe-core; the app's own CSP stays strict.
    context = browser.new_context(bypass_csp=True, locale="fr-CH")
    page = context.new_page()
    yield page
    context.close()


def axe_violations(page: Any) -> list[dict[str, Any]]:
    """Serious or critical axe-core violations of the current page."""
    if not AXE.exists():
        skip_or_fail("axe-core is not installed (make test installs it with npm)")
    page.add_script_tag(path=str(AXE))
    violations: list[dict[str, Any]] = page.evaluate("async () => (await axe.run()).violations")
    return [v for v in violations if v.get("impact") in ("serious", "critical")]
