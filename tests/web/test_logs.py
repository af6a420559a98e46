"""The JSON logs: one object per line, the request id of the answer, and no patient data.

The requests a hospital's log pipeline would see most: a patient's page, the DPI's API with
patient and document ids in the path, failed sign-ins, a crash. The captured output is searched
for every identifier, login, email, code and password those requests carried.

Each test runs on SQLite and, with TEST_DATABASE_URL, on PostgreSQL; the last one runs the real
gunicorn with gunicorn.conf.py.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from app.config import load_settings
from app.web.logs import JsonFormatter, RelaisHandler, logging_config
from tests.conftest import (
    TEST_KEY,
    Api,
    consent_body,
    document_body,
    sibling_app,
    skip_or_fail,
)
from tests.support.factories import MOBILE, PASSWORD, make_sms_doctor, make_staff
from tests.support.login import code_from, post_code, post_login, use_twilio
from tests.support.production import safe_production_settings
from tests.support.signin import sign_in_as
from tests.support.twilio_server import (
    TwilioServer,
    twilio_server_fixture,  # noqa: F401
)

ROOT = Path(__file__).resolve().parents[2]
DPI_ID = "P-0042"
DOCUMENT_ID = "DPI-2026-000123"
GLN = "7601000000019"
STAFF_LOGIN = "secretariat-cardio"
WRONG_PASSWORD = "Falsch-Passwort-Zebra-77"


class Captured:
    """The lines the root logger wrote while a test ran, in the JSON format."""

    def __init__(self) -> None:
        self.stream = io.StringIO()

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text.splitlines()]

    def access(self) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line["logger"] == "relais.access"]


@pytest.fixture()
def captured() -> Iterator[Captured]:
    capture = Captured()
    handler = logging.StreamHandler(capture.stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield capture
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def assert_clean(text: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in text, f"{secret!r} reached the log"


def assert_request_ids(capture: Captured, responses: list[TestResponse]) -> None:
    """Every line parses; each access line's request id is the answer's X-Request-ID."""
    access = capture.access()
    assert [line["request_id"] for line in access] == [
        r.headers["X-Request-ID"] for r in responses
    ]
    sent = {r.headers["X-Request-ID"] for r in responses}
    for line in capture.lines():
        assert line.get("request_id", next(iter(sent))) in sent
        assert {"time", "level", "logger", "message"} <= line.keys()


# --- the requests ---------------------------------------------------------------------------------


def test_a_patient_page_and_a_search_log_the_route_not_the_ids(
    client: FlaskClient, captured: Captured
) -> None:
    from tests.support.factories import make_patient

    make_patient()
    staff = make_staff(STAFF_LOGIN)
    sign_in_as(client, staff)

    responses = [client.get(f"/staff/patients/{DPI_ID}?shown=50"),
                 client.get("/staff/patients?q=Muster&birth_date=1961-04-02")]

    assert [r.status_code for r in responses] == [200, 200]
    assert_request_ids(captured, responses)
    page, search = captured.access()
    assert page["route"] == "/staff/patients/<dpi_id>"
    assert search["route"] == "/staff/patients"
    assert (page["method"], page["status"], page["user"]) == ("GET", 200, "staff")
    assert isinstance(page["duration_ms"], float)
    assert page["remote_addr"] == "127.0.0.1"
    assert_clean(captured.text, DPI_ID, "Muster", "1961", STAFF_LOGIN, "shown")


def test_the_api_logs_its_route_template_and_the_client_as_api(
    client: FlaskClient, api_token: str, captured: Captured
) -> None:
    api = Api(client, api_token)
    responses = [
        api.put(f"/api/v1/patients/{DPI_ID}/consents/{GLN}", json=consent_body()),
        api.post("/api/v1/documents", json=document_body(DOCUMENT_ID)),
        api.get(f"/api/v1/documents/{DOCUMENT_ID}"),
        api.get("/api/v1/documents/DPI-UNKNOWN-42"),
    ]

    assert [r.status_code for r in responses] == [201, 201, 200, 404]
    assert_request_ids(captured, responses)
    routes = [line["route"] for line in captured.access()]
    assert routes == ["/api/v1/patients/<patient_id>/consents/<gln>", "/api/v1/documents",
                      "/api/v1/documents/<document_id>", "/api/v1/documents/<document_id>"]
    assert {line["user"] for line in captured.access()} == {"api"}
    assert_clean(captured.text, DPI_ID, GLN, DOCUMENT_ID, "DPI-UNKNOWN-42", "Muster",
                 "secretariat.cardio", api_token)


@pytest.fixture()
def twilio(app: Flask, twilio_server: TwilioServer) -> TwilioServer:
    use_twilio(app, twilio_server)
    return twilio_server


def test_failed_sign_ins_log_no_login_password_email_phone_or_code(
    client: FlaskClient, twilio: TwilioServer, captured: Captured
) -> None:
    doctor = make_sms_doctor("cmuller")

    responses = [post_login(client, "cmuller", WRONG_PASSWORD),
                 post_login(client, "nobody.here", PASSWORD),
                 post_login(client, "cmuller", PASSWORD)]
    code = code_from(twilio)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    responses.append(post_code(client, wrong))

    assert [r.status_code for r in responses[:3]] == [200, 200, 303]
    # The form pages fetched for their CSRF tokens are requests too: keep only the POSTs.
    posts = [line for line in captured.access() if line["method"] == "POST"]
    assert [line["request_id"] for line in posts] == [r.headers["X-Request-ID"]
                                                     for r in responses]
    assert [line["route"] for line in posts] == ["/auth/login"] * 3 + ["/auth/code"]
    assert {line["user"] for line in posts} == {"anonymous"}
    captured.lines()  # every line is JSON
    assert_clean(captured.text, "cmuller", "nobody.here", WRONG_PASSWORD, PASSWORD, code, wrong,
                 str(doctor.email), MOBILE, MOBILE[3:], doctor.gln)


def test_an_unhandled_exception_logs_its_traceback_without_local_values(
    client: FlaskClient, captured: Captured, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.staff.patients import views as staff_patients
    from tests.support.factories import make_patient

    make_patient()
    sign_in_as(client, make_staff(STAFF_LOGIN))

    def crash(patient: Any, limit: int) -> Any:
        identity = (patient.dpi_id, patient.family_name)  # noqa: F841 - a local with patient data
        raise RuntimeError("the deliveries could not be read")

    monkeypatch.setattr(staff_patients, "deliveries_of", crash)
    response = client.get(f"/staff/patients/{DPI_ID}")

    assert response.status_code == 500
    assert_request_ids(captured, [response])
    [error] = [line for line in captured.lines() if line["level"] == "ERROR"]
    assert error["request_id"] == response.headers["X-Request-ID"]
    assert error["exception"] == "RuntimeError"
    assert "in crash" in error["traceback"]
    assert "the deliveries could not be read" in error["traceback"]
    assert captured.access()[0]["status"] == 500
    assert_clean(captured.text, DPI_ID, "Muster", STAFF_LOGIN)


def test_an_unknown_path_is_logged_without_it(client: FlaskClient, captured: Captured) -> None:
    response = client.get(f"/patients-of/{DPI_ID}?q=Muster")
    assert response.status_code == 404
    [line] = captured.access()
    assert line["route"] is None and line["status"] == 404
    assert_clean(captured.text, DPI_ID, "Muster")


# --- the settings ---------------------------------------------------------------------------------


def production(**values: str) -> dict[str, str]:
    """A safe production environment (SMTP, Twilio, Redis, HIN off): nothing unsafe in it."""
    return {**{name: str(value) for name, value in safe_production_settings().items()},
            "SECRET_KEY": "s" * 40, "DOCUMENT_KEYS": f"test1:{TEST_KEY}", **values}


def test_json_in_production_text_elsewhere_and_sql_parameters_hidden(tmp_path: Path) -> None:
    prod = load_settings(str(tmp_path), environ=production())
    assert prod.log_format == "json"
    assert prod.flask_config()["SQLALCHEMY_ENGINE_OPTIONS"]["hide_parameters"] is True
    dev = load_settings(str(tmp_path), environ={})
    assert dev.log_format == "text"
    assert dev.flask_config()["SQLALCHEMY_ENGINE_OPTIONS"]["hide_parameters"] is False
    assert load_settings(str(tmp_path), environ=production(LOG_FORMAT="text")).log_format == "text"


@pytest.mark.parametrize(("name", "value"), [("LOG_FORMAT", "xml"), ("LOG_LEVEL", "LOUD")])
def test_a_bad_log_setting_refuses_to_start(tmp_path: Path, name: str, value: str) -> None:
    from app.config import ConfigError

    with pytest.raises(ConfigError, match=name):
        load_settings(str(tmp_path), environ={name: value})


def test_the_logging_config_routes_gunicorn_and_werkzeug_through_one_handler() -> None:
    config = logging_config("json")
    assert config["handlers"]["relais"]["()"] is RelaisHandler
    assert config["loggers"]["gunicorn.access"]["level"] == "CRITICAL"  # replaced by ours
    assert config["loggers"]["werkzeug"]["level"] == "WARNING"  # raw request lines
    assert logging_config("text")["loggers"]["werkzeug"]["level"] == "INFO"
    # The twilio client's request lines (URL with the account SID, headers) never print.
    assert all(logging_config(f)["loggers"]["twilio"]["level"] == "WARNING"
               for f in ("json", "text"))
    # Flask-Limiter's breach lines carry the typed login (a password, typed there by mistake).
    assert all(logging_config(f)["loggers"]["flask-limiter"]["level"] == "WARNING"
               for f in ("json", "text"))


# --- the real server ------------------------------------------------------------------------


def port_in_our_range() -> int:
    """A free port among 18150-18199 (this suite's range on a shared machine)."""
    for port in range(18150, 18200):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 18150-18199")


def wait_for(url: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        try:
            urllib.request.urlopen(url, timeout=2).close()  # noqa: S310 - our own loopback
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("gunicorn did not answer")


def get(url: str, headers: dict[str, str]) -> tuple[int, str]:
    request = urllib.request.Request(url, headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
            return int(answer.status), str(answer.headers["X-Request-ID"])
    except urllib.error.HTTPError as error:
        return int(error.code), str(error.headers["X-Request-ID"])


@pytest.mark.redis
def test_gunicorn_in_production_writes_only_json_and_no_raw_path(app: Flask) -> None:
    port = port_in_our_range()
    # Production needs Redis (the API's budget for calls without a valid token counts there).
    redis_url = os.environ.get("REDIS_URL")
    if not redis_url:
        skip_or_fail("REDIS_URL is not set: gunicorn in production needs Redis")
    assert redis_url is not None
    env = {**os.environ, **production(), "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
           "GUNICORN_BIND": f"127.0.0.1:{port}", "GUNICORN_WORKERS": "1",
           "GUNICORN_THREADS": "2", "PROXY_HOPS": "1", "REDIS_URL": redis_url,
           "RATELIMIT_KEY_PREFIX": f"relais-logs-{os.getpid()}"}
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(f"{base}/healthz", process)
        status, request_id = get(f"{base}/api/v1/documents/{DOCUMENT_ID}?patient={DPI_ID}",
                                 {"X-Forwarded-For": "203.0.113.7", "X-Request-ID": "lb-12345678"})
        assert (status, request_id) == (401, "lb-12345678")
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    lines = [json.loads(line) for line in err.splitlines()]  # every line is JSON
    [line] = [x for x in lines if x.get("request_id") == "lb-12345678"
              and x["logger"] == "relais.access"]
    assert line["route"] == "/api/v1/documents/<document_id>"
    assert line["remote_addr"] == "203.0.113.7"  # through ProxyFix, PROXY_HOPS=1
    assert_clean(out + err, DPI_ID, DOCUMENT_ID)
    assert any(x["logger"] == "gunicorn.error" for x in lines)


# --- production: no code, token or password in any log ----------------------------------------


class Https:
    """A browser on the production profile: every request over HTTPS, each form posted from
    our own page (the Referer a same-origin policy gives), in an app context of its own."""

    def __init__(self, app: Flask) -> None:
        self.client = app.test_client()
        self.app = app

    def get(self, path: str) -> TestResponse:
        with self.app.app_context():
            return self.client.get(path, base_url="https://relais.test")

    def post(self, path: str, data: dict[str, str]) -> TestResponse:
        with self.app.app_context():
            page = self.client.get(path if path != "/auth/code/resend" else "/auth/code",
                                   base_url="https://relais.test")
            match = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True))
            assert match is not None, path
            return self.client.post(path, base_url="https://relais.test",
                                    data={"csrf_token": match.group(1), **data},
                                    headers={"Referer": f"https://relais.test{path}"})


@pytest.fixture()
def production_loggers(captured: Captured) -> Iterator[Captured]:
    """The named loggers at the levels production gives them (gunicorn.conf.py, wsgi.py)."""
    saved = {}
    for name, settings in logging_config("json")["loggers"].items():
        logger = logging.getLogger(name)
        saved[name] = logger.level
        logger.setLevel(settings["level"])
    try:
        yield captured
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


@pytest.mark.redis
def test_production_sign_in_and_email_confirmation_log_no_code_token_or_password(
    app: Flask, production_loggers: Captured, twilio_server: TwilioServer,
    capfd: pytest.CaptureFixture[str],
) -> None:
    from tests.notify.smtp_server import Smtp

    redis_url = os.environ.get("REDIS_URL")
    if not redis_url:
        skip_or_fail("REDIS_URL is not set: the production profile needs Redis")
    make_sms_doctor("cmuller")
    smtp = Smtp()
    smtp.start()
    try:
        with sibling_app(app, **safe_production_settings(
            REDIS_URL=redis_url, RATELIMIT_KEY_PREFIX=f"relais-prodlogs-{os.getpid()}",
            RATELIMIT_SIGNIN_PER_ACCOUNT="3 per hour", MAIL_BACKEND="smtp",
            MAIL_SERVER="127.0.0.1", MAIL_PORT=smtp.port, PUBLIC_BASE_URL="https://relais.test",
            LOG_FORMAT="json", **twilio_server.config(),
        )) as production:
            browser = Https(production)
            # A doctor types her password into the login field, three times, then past the
            # limit (one budget per account for every step: her own sign-in below takes three)
            for _ in range(4):
                answer = browser.post("/auth/login", {"login": PASSWORD, "password": "x"})
            assert answer.status_code == 429
            # Then signs in properly: a wrong code first, then the one the SMS carried
            answer = browser.post("/auth/login", {"login": "cmuller", "password": PASSWORD})
            assert answer.headers["Location"] == "/auth/code"
            code = code_from(twilio_server)
            wrong = f"{(int(code) + 1) % 1_000_000:06d}"
            assert browser.post("/auth/code", {"code": wrong}).status_code == 200
            assert browser.post("/auth/code", {"code": code}).status_code == 303
            # And changes her email address, confirmed from the link the email carries
            answer = browser.post("/profile", {
                "email": "claire@cabinet-muller.example", "notification_mode": "immediate",
                "digest_hour": "7", "patients_view": "all", "patients_recent_months": "12",
                "documents_view": "all", "landing_page": "documents", "language": "fr"})
            assert answer.status_code == 303
            [email] = smtp.inbox.parsed()
            body = email.get_body(preferencelist=("plain",)).get_content()
            link = re.search(r"https://relais\.test/profile/email/confirm/(\S+)", body)
            assert link is not None, body
            token = link.group(1)
            answer = browser.post(f"/profile/email/confirm/{token}", {})
            assert answer.status_code == 303
            assert "confirmée" in browser.get("/profile").get_data(as_text=True)
    finally:
        smtp.stop()

    printed = capfd.readouterr()
    # Every line the app's process logged, but the test's own SMTP server's (aiosmtpd).
    logged = "\n".join(json.dumps(line) for line in production_loggers.lines()
                       if line["logger"] != "mail.log")
    assert len(production_loggers.access()) >= 10, "the capture saw nothing"
    for name, secret in {"password": PASSWORD, "code": code, "wrong code": wrong,
                         "email token": token}.items():
        for where, text in (("log", logged), ("stdout", printed.out),
                            ("stderr", printed.err)):
            assert not re.search(rf"(?<![0-9A-Za-z]){re.escape(secret)}(?![0-9A-Za-z])",
                                 text), f"the {name} reached the {where}"
    assert "cmuller" not in logged  # nor a login
