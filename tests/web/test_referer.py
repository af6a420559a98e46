"""Forms over HTTPS: our pages send their origin to our own forms, and nothing to other sites.

Flask-WTF's strict check (``WTF_CSRF_SSL_STRICT``, kept on) refuses a POST over HTTPS whose
Referer is missing or of another origin, on top of the CSRF token. Every page used to say
``Referrer-Policy: no-referrer``: browsers then sent no Referer at all and every form failed
with a 400 in production (sign-in, the language switch, sign-out). ``same-origin`` lets the
browser send the Referer to our own pages only. The browser side is proven in
``tests/deploy/test_production_tls.py``; here the server's side, fast, on the production
profile reached over HTTPS.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import make_app
from tests.support.production import safe_production_settings

HTTPS = "https://relais.test"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture()
def production(tmp_path: Path) -> Flask:
    return make_app(f"sqlite:///{tmp_path / 'x.db'}", **safe_production_settings())


def token(client: FlaskClient) -> str:
    page = client.get("/auth/login", base_url=HTTPS)
    assert page.status_code == 200
    assert page.headers["Referrer-Policy"] == "same-origin"
    match = _CSRF.search(page.get_data(as_text=True))
    assert match is not None
    return match.group(1)


def switch_language(client: FlaskClient, csrf: str, headers: dict[str, str]) -> int:
    answer = client.post("/lang", base_url=HTTPS, headers=headers,
                         data={"csrf_token": csrf, "lang": "en", "next": "/auth/login"})
    return answer.status_code


def test_pages_send_their_address_to_our_own_pages_only(production: Flask) -> None:
    assert production.config["WTF_CSRF_SSL_STRICT"] is True
    answer = production.test_client().get("/", base_url=HTTPS)
    # same-origin: the full address to us, nothing (not even the origin) to another site
    assert answer.headers["Referrer-Policy"] == "same-origin"


def test_a_same_origin_post_over_https_is_accepted(production: Flask) -> None:
    client = production.test_client()
    csrf = token(client)
    # What Chromium sends under same-origin: our page's address, and our origin.
    status = switch_language(client, csrf, {"Referer": f"{HTTPS}/auth/login",
                                            "Origin": HTTPS})
    assert status == 303
    assert 'lang="en"' in client.get("/auth/login", base_url=HTTPS).get_data(as_text=True)


@pytest.mark.parametrize(
    "headers",
    [
        {"Referer": "https://evil.example/relais", "Origin": "https://evil.example"},
        {"Origin": "https://evil.example"},  # another site asking for no Referer
        {},  # no Referer at all (what no-referrer made every browser do)
        {"Referer": "http://relais.test/auth/login"},  # our host, but over plain http
        {"Referer": "https://relais.test.evil.example/auth/login"},
        {"Referer": "https://relais.test:8443/auth/login"},  # another port: another origin
    ],
    ids=["other-site", "other-site-no-referer", "no-referer", "plain-http", "lookalike-host",
         "other-port"],
)
def test_a_post_over_https_from_another_origin_is_refused(
    production: Flask, headers: dict[str, str]
) -> None:
    client = production.test_client()
    csrf = token(client)  # a valid token and session: only the origin is wrong
    assert switch_language(client, csrf, headers) == 400
    assert 'lang="fr"' in client.get("/auth/login", base_url=HTTPS).get_data(as_text=True)
