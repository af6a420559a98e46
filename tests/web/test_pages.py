"""What every page and API answer shares: security headers, errors, language, closed routes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from app.auth.session import public
from app.extensions import db
from app.models import AuditEvent
from tests.conftest import Api, make_app
from tests.support.pages import assert_no_inline_code, assert_secure_headers, csrf_token
from tests.support.production import safe_production_settings, saml_folder
from tests.support.walk import PUBLIC

#: Dummy values for the API's path parameters.
PATH_VALUES = {"document_id": "DPI-2026-000123", "patient_id": "P-0042", "gln": "7601000000019"}

PROBLEM = "application/problem+json"


# --- security headers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/"),
        ("GET", "/healthz"),
        ("GET", "/no-such-page"),
        ("GET", "/api/v1/openapi.json"),
        ("GET", "/api/v1/doctors"),
        ("GET", "/api/v1/unknown"),
        ("POST", "/api/v1/documents"),
    ],
)
def test_security_headers_on_pages_and_api_answers(
    client: FlaskClient, method: str, path: str
) -> None:
    response = client.open(path, method=method)
    assert_secure_headers(response)
    # Plain http (a laptop): no HSTS, which would pin the browser to https on localhost.
    assert "Strict-Transport-Security" not in response.headers


def test_hsts_only_over_https(client: FlaskClient) -> None:
    response = client.get("/", base_url="https://relais.test")
    assert_secure_headers(response)
    hsts = response.headers.get("Strict-Transport-Security", "")
    max_age = re.search(r"max-age=(\d+)", hsts)
    assert max_age is not None and int(max_age.group(1)) >= 31536000
    assert "includeSubDomains" in hsts


def test_static_files_may_be_cached_but_keep_the_other_headers(client: FlaskClient) -> None:
    response = client.get("/static/css/relais.css")
    assert response.status_code == 200
    assert response.headers.get("X-Content-Type-Options") == "nosniff"
    assert response.headers.get("Cache-Control") != "no-store"
    response.close()


def test_a_proxy_request_id_is_kept_only_when_it_looks_like_one(client: FlaskClient) -> None:
    kept = client.get("/", headers={"X-Request-ID": "proxy-abc-12345678"})
    assert kept.headers["X-Request-ID"] == "proxy-abc-12345678"
    replaced = client.get("/", headers={"X-Request-ID": "<script>alert(1)</script>"})
    assert replaced.headers["X-Request-ID"] != "<script>alert(1)</script>"


# --- health ------------------------------------------------------------------------------------


def test_healthz_ok(client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "database": "ok"}


def test_healthz_503_when_the_database_is_unreachable() -> None:
    app = make_app("sqlite:////nonexistent/dir/x.db")
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "error"
    assert body["database"] != "ok"
    # Nothing about the cause: no path, no driver message.
    assert "nonexistent" not in response.get_data(as_text=True)
    assert_secure_headers(response)


# --- language ------------------------------------------------------------------------------------


def test_404_page_in_french_by_default(client: FlaskClient) -> None:
    response = client.get("/no-such-page")
    assert response.status_code == 404
    assert response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    assert '<html lang="fr">' in html
    assert "Page introuvable" in html


def test_404_page_in_english_after_choosing_english(client: FlaskClient) -> None:
    token = csrf_token(client.get("/"))

    switched = client.post("/lang", data={"lang": "en", "next": "/no-such-page",
                                          "csrf_token": token})

    assert switched.status_code == 303
    assert switched.headers["Location"] == "/no-such-page"
    html = client.get("/no-such-page").get_data(as_text=True)
    assert '<html lang="en">' in html
    assert "Page not found" in html
    assert "Page introuvable" not in html


def test_accept_language_chooses_english_until_a_choice_is_made(client: FlaskClient) -> None:
    html = client.get("/no-such-page", headers={"Accept-Language": "en-GB,en;q=0.9"}).get_data(
        as_text=True
    )
    assert "Page not found" in html


def test_unknown_language_is_ignored(client: FlaskClient) -> None:
    token = csrf_token(client.get("/"))
    client.post("/lang", data={"lang": "de", "csrf_token": token})
    assert "Page introuvable" in client.get("/no-such-page").get_data(as_text=True)


def test_language_switch_without_csrf_token_is_refused(client: FlaskClient) -> None:
    response = client.post("/lang", data={"lang": "en", "next": "/"})
    assert response.status_code == 400
    assert "Page introuvable" in client.get("/no-such-page").get_data(as_text=True)


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example",
        "https://evil.example",
        "http://evil.example/path",
        "/\\evil.example",
        "\\\\evil.example",
        "/\t/evil.example",
        "/\r\n/evil.example",
        " //evil.example",
        "javascript:alert(1)",
        "",
    ],
    ids=["scheme-relative", "https", "http", "backslash", "double-backslash", "tab", "crlf",
         "leading-space", "javascript", "empty"],
)
def test_language_switch_refuses_open_redirects(client: FlaskClient, target: str) -> None:
    token = csrf_token(client.get("/"))
    response = client.post("/lang", data={"lang": "en", "next": target, "csrf_token": token})
    assert response.status_code == 303
    assert response.headers["Location"] == "/"


def test_language_switch_goes_back_to_a_local_path(client: FlaskClient) -> None:
    token = csrf_token(client.get("/"))
    response = client.post("/lang", data={"lang": "fr", "next": "/documents?page=2",
                                          "csrf_token": token})
    assert response.headers["Location"] == "/documents?page=2"


# --- errors ------------------------------------------------------------------------------------


@pytest.fixture()
def failing_app(tmp_path: Path) -> Flask:
    """An app with routes that fail unexpectedly, registered before its first request."""
    app = make_app(f"sqlite:///{tmp_path / 'failing.db'}")

    def boom() -> str:
        raise RuntimeError("secret-detail")

    app.add_url_rule("/boom", "boom", public(boom))
    app.add_url_rule("/api/v1/boom", "api_boom", boom)
    return app


def test_500_page_leaks_nothing(failing_app: Flask) -> None:
    response = failing_app.test_client().get("/boom")

    assert response.status_code == 500
    html = response.get_data(as_text=True)
    assert "secret-detail" not in html
    assert "Traceback" not in html
    assert "RuntimeError" not in html
    assert "Erreur interne" in html
    # The request id is shown, so that the support can find the log entry.
    request_id = response.headers["X-Request-ID"]
    assert request_id in html
    assert_secure_headers(response)
    assert_no_inline_code(html)


def test_500_on_the_api_is_a_problem(failing_app: Flask) -> None:
    response = failing_app.test_client().get("/api/v1/boom")

    assert response.status_code == 500
    assert response.mimetype == PROBLEM
    body = response.get_json()
    assert body["status"] == 500
    assert {"type", "title", "detail"} <= body.keys()
    text = response.get_data(as_text=True)
    assert "secret-detail" not in text
    assert "Traceback" not in text


def test_unknown_api_path_is_a_problem_404(client: FlaskClient) -> None:
    response = client.get("/api/v1/unknown")
    assert response.status_code == 404
    assert response.mimetype == PROBLEM
    body = response.get_json()
    assert body["status"] == 404
    assert {"type", "title", "detail"} <= body.keys()


def test_wrong_method_on_the_api_is_a_problem_405(client: FlaskClient) -> None:
    response = client.delete("/api/v1/doctors")
    assert response.status_code == 405
    assert response.mimetype == PROBLEM


def test_wrong_method_on_a_page_is_an_error_page(client: FlaskClient) -> None:
    response = client.get("/lang")
    assert response.status_code == 405
    assert response.mimetype == "text/html"
    assert "405" in response.get_data(as_text=True)


# --- no inline code anywhere ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/", 200), ("GET", "/no-such-page", 404), ("GET", "/lang", 405),
     ("POST", "/lang", 400)],
)
def test_pages_have_no_inline_script_or_style(
    client: FlaskClient, method: str, path: str, status: int
) -> None:
    response = client.open(path, method=method)
    assert response.status_code == status
    assert response.mimetype == "text/html"
    assert_no_inline_code(response.get_data(as_text=True))


def test_english_pages_have_no_inline_script_or_style(client: FlaskClient) -> None:
    for path in ("/", "/no-such-page"):
        response = client.get(path, headers={"Accept-Language": "en"})
        assert_no_inline_code(response.get_data(as_text=True))


def test_templates_have_no_inline_script_or_style() -> None:
    # Pages not reachable yet in this test file are covered at the source.
    root = Path(__file__).resolve().parents[2] / "templates"
    templates = sorted(root.rglob("*.html"))
    assert templates
    for template in templates:
        assert_no_inline_code(template.read_text(encoding="utf-8"))


# --- closed by default ---------------------------------------------------------------------------


def api_calls(app: Flask) -> list[tuple[str, str, str]]:
    """(endpoint, method, path) for every route of the API blueprint, with dummy path values."""
    calls = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint in PUBLIC or not rule.endpoint.startswith("api."):
            continue
        path = rule.build(PATH_VALUES, append_unknown=False)
        assert path is not None, f"no dummy value for a parameter of {rule.rule}"
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            calls.append((rule.endpoint, method, path[1]))
    return calls


def test_every_route_is_public_on_purpose_or_closed(app: Flask) -> None:
    from app.auth.session import access_of

    endpoints = {rule.endpoint for rule in app.url_map.iter_rules()}
    access = {endpoint: access_of(app, endpoint) for endpoint in endpoints}
    undeclared = sorted(e for e, a in access.items() if a is None)
    assert not undeclared, f"routes that declare no access (they answer 404): {undeclared}"
    public = {e for e, a in access.items() if a == "public"}
    assert public == PUBLIC, "a route became public, or stopped being: update PUBLIC on purpose"
    token = {e for e, a in access.items() if a == "token"}
    assert token == {e for e in endpoints if e.startswith("api.")} - PUBLIC


def test_every_api_route_answers_401_without_a_token(app: Flask, client: FlaskClient) -> None:
    calls = api_calls(app)
    assert len(calls) >= 8
    for endpoint, method, path in calls:
        for headers in ({}, {"Authorization": "Bearer rl_0123456789abcdef_" + "x" * 43},
                        {"Authorization": "Basic ZHBpOmRwaQ=="}):
            response = client.open(path, method=method, headers=headers, json={})
            assert response.status_code == 401, (endpoint, method, path, headers)
            assert response.mimetype == PROBLEM
            assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_public_api_description_needs_no_token(client: FlaskClient) -> None:
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    assert response.get_json()["openapi"].startswith("3.1")


def test_no_request_state_leaks_into_the_next_request(app: Flask, api: Api) -> None:
    # Given an authenticated API call, then an anonymous one in the same app context
    client = app.test_client()
    first = client.get("/api/v1/doctors", headers=api.headers)
    assert first.status_code == 200
    second = client.get("/api/v1/doctors")

    # Then the anonymous call is refused and audited as anonymous, not as the previous caller
    assert second.status_code == 401
    assert second.headers["X-Request-ID"] != first.headers["X-Request-ID"]
    rejected = db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == "api.rejected")
    ).one()
    assert rejected.actor == "api:anonymous"


# --- behind the TLS proxy ------------------------------------------------------------------------

FORWARDED_HTTPS = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"}


def test_forwarded_headers_are_ignored_without_a_trusted_proxy(tmp_path: Path) -> None:
    app = make_app(f"sqlite:///{tmp_path / 'x.db'}")
    response = app.test_client().get("/", headers=FORWARDED_HTTPS)
    assert "Strict-Transport-Security" not in response.headers


def test_a_trusted_proxy_tells_that_the_request_came_over_tls(tmp_path: Path) -> None:
    app = make_app(f"sqlite:///{tmp_path / 'x.db'}", PROXY_HOPS=1)
    response = app.test_client().get("/", headers=FORWARDED_HTTPS)
    assert "Strict-Transport-Security" in response.headers


def test_production_always_sends_hsts(tmp_path: Path) -> None:
    app = make_app(f"sqlite:///{tmp_path / 'x.db'}", **safe_production_settings())
    response = app.test_client().get("/")
    assert response.status_code == 200
    assert "Strict-Transport-Security" in response.headers


# --- form-action and HIN's single logout ----------------------------------------------------


def _csp_with_saml(tmp_path: Path, slo: str | None) -> str:
    folder = tmp_path / "saml"
    if slo is not None:
        saml_folder(folder)
        settings = json.loads((folder / "settings.json").read_text())
        settings["idp"]["singleLogoutService"]["url"] = slo
        (folder / "settings.json").write_text(json.dumps(settings))
    app = make_app(f"sqlite:///{tmp_path / 'x.db'}", SAML_SETTINGS_DIR=str(folder))
    return str(app.test_client().get("/").headers["Content-Security-Policy"])


def test_pages_let_the_hin_sign_out_form_go_on_to_hin(tmp_path: Path) -> None:
    # The sign-out of a HIN session is our form, answered by a redirect to HIN's single logout:
    # Chromium checks that redirect against form-action too.
    csp = _csp_with_saml(tmp_path, "https://idp.hin.ch:8443/slo?x=1")
    assert "form-action 'self' https://idp.hin.ch:8443;" in csp
    # Only the origin: whatever follows it in the settings never reaches the header.
    csp = _csp_with_saml(tmp_path / "other", "https://idp.hin.ch/slo; script-src *")
    assert "form-action 'self' https://idp.hin.ch;" in csp and "*" not in csp


@pytest.mark.parametrize("slo", [None, "https://idp.hin.ch;script-src */slo", "javascript:x",
                                 "ftp://idp.hin.ch/slo", "https://user@idp.hin.ch/slo", ""])
def test_without_a_sound_logout_address_form_action_is_self_only(tmp_path: Path,
                                                                  slo: str | None) -> None:
    csp = _csp_with_saml(tmp_path, slo)
    assert "form-action 'self';" in csp
    assert "script-src 'self';" in csp and "*" not in csp
