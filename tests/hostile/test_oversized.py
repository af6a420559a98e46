"""Oversized and pathological requests: refused with a clear status, never a 500, nothing stored.

In the app (both databases): a body over MAX_CONTENT_LENGTH, a Content-Length that lies, JSON
nested 10,000 levels deep, JSON with 100,000 keys, sign-in forms with huge or NUL-carrying
fields. Against the real gunicorn server, started with the checkout's own gunicorn.conf.py (its
explicit limit_request_* settings): a request line of 8 KB, a header of 64 KB, 200 headers and a
chunked body over the limit; after each, the server still answers the next request.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from app.audit import CLI
from app.dispatch.clients import create_client
from app.extensions import db
from app.models import AuditEvent, Document
from tests.conftest import TEST_KEY, Api, document_body, make_app, upgrade
from tests.dispatch.api_support import assert_rejected, counts
from tests.support.pages import csrf_token
from tests.support.servers import ROOT, AppServer, free_ports

GLN = "7601000000019"
PATIENT = "P-0042"

#: Every API route that reads a JSON body.
WITH_BODY = [
    ("POST", "/api/v1/documents"),
    ("POST", "/api/v1/documents/DPI-1/retract"),
    ("PUT", f"/api/v1/patients/{PATIENT}/consents/{GLN}"),
    ("PATCH", f"/api/v1/patients/{PATIENT}"),
]


# --- in the app ---------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), WITH_BODY)
def test_a_body_over_max_content_length_is_413_problem(
    app: Flask, api: Api, method: str, path: str
) -> None:
    before = counts()
    limit = app.config["MAX_CONTENT_LENGTH"]
    body = json.dumps(document_body("DPI-1", author="x" * limit))
    response = api.request(method, path, data=body, content_type="application/json")
    assert_rejected(response, 413, before)


@pytest.mark.parametrize(("method", "path"), WITH_BODY)
def test_json_nested_ten_thousand_levels_is_400(
    app: Flask, api: Api, method: str, path: str
) -> None:
    before = counts()
    depth = 10_000
    nested = '{"a":' * depth + "1" + "}" * depth
    raw = '{"document_id": "DPI-1", "patient": ' + nested + "}"
    response = api.request(method, path, data=raw, content_type="application/json")
    assert_rejected(response, 400, before)


@pytest.mark.parametrize(("method", "path"), WITH_BODY)
@pytest.mark.timeout(120)  # a deadline, not a measure: quadratic work on 100,000 keys misses it
def test_json_with_a_hundred_thousand_keys_is_422(
    app: Flask, api: Api, method: str, path: str
) -> None:
    before = counts()
    body = {f"k{n}": n for n in range(100_000)}
    response = api.request(method, path, json=body)
    assert response.status_code in (404, 422), response.status_code
    assert response.mimetype == "application/problem+json"
    assert counts() == before


def _login_form(app: Flask) -> tuple[Any, str]:
    client = app.test_client()
    return client, csrf_token(client.get("/auth/login"))


@pytest.mark.parametrize(("login", "password"), [
    ("x" * 400_000, "p"),  # one field of 400 KB (the form is under 500 KB)
    ("dr.muller", "p" * 400_000),
    ("x" * 300_000, "p" * 300_000),  # the whole form over werkzeug's 500 KB form memory
    ("dr.\x00muller", "secret"),  # PostgreSQL cannot hold a NUL: a classic 500
    ("dr.muller", "se\x00cret"),
    ("%ED%A0%80", "secret"),  # a lone surrogate, UTF-8 encoded: no text at all
    ("%FF%FE", "secret"),  # no UTF-8
])
def test_sign_in_with_oversized_or_hostile_fields_is_refused_not_500(
    app: Flask, login: str, password: str
) -> None:
    app.config["RATELIMIT_SIGNIN_PER_ADDRESS"] = "1000 per minute"
    client, token = _login_form(app)
    if login.startswith("%"):
        # Raw bytes no str can hold: sent as they would come from a hostile client.
        raw = f"csrf_token={token}&login={login}&password={password}"
        response = client.post("/auth/login", data=raw,
                               content_type="application/x-www-form-urlencoded")
    else:
        response = client.post("/auth/login",
                               data={"csrf_token": token, "login": login, "password": password})
    assert response.status_code in (200, 400, 413), response.status_code
    if response.status_code == 200:
        # The sign-in page again, with the one failure message, and no huge echo.
        page = response.get_data(as_text=True)
        assert "Identifiant" in page
        assert len(response.get_data()) < 100_000
    db.session.rollback()
    events = db.session.scalar(select(func.count()).select_from(AuditEvent)) or 0
    assert events <= 1  # at most the one failed attempt, never more


# --- against gunicorn, with gunicorn.conf.py ---------------------------------------------------

PORTS = range(18700, 18800)


class ConfiguredServer(AppServer):
    """The app under gunicorn with the checkout's gunicorn.conf.py (the production profile's
    limits), configured through its GUNICORN_* variables."""

    token: str
    app: Flask

    def command(self) -> list[str]:
        return [sys.executable, "-m", "gunicorn", "--config", str(ROOT / "gunicorn.conf.py")]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConfiguredServer]:
    work = tmp_path_factory.mktemp("oversized")
    database_url = f"sqlite:///{work / 'relais.db'}"
    app = make_app(database_url)
    upgrade(app)
    with app.app_context():
        _, token = create_client("dpi-oversized", CLI)
        db.session.commit()
        db.engine.dispose()
    (port,) = free_ports(1, PORTS)
    settings = {
        "RELAIS_ENV": "testing",
        "SECRET_KEY": "oversized-requests-secret-key-0123456789abcdef",
        "DOCUMENT_KEYS": f"test1:{TEST_KEY}",
        "DATABASE_URL": database_url,
        "MAX_DOCUMENT_BYTES": "4096",
        "MAIL_BACKEND": "console",
        "SAML_DEV_IDP": "0",
        "SAML_SETTINGS_DIR": str(work / "saml"),
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "GUNICORN_WORKERS": "1",
        "GUNICORN_THREADS": "2",
        "GUNICORN_WORKER_TMP_DIR": str(work),
    }
    with ConfiguredServer("oversized", port, settings, work) as started:
        started.token = token
        started.app = app
        yield started
    assert "Traceback" not in started.stderr(), started.stderr_tail()


def _exchange(server: AppServer, raw: bytes, timeout: float = 10.0) -> bytes:
    """Send raw bytes, read the answer until the server closes or the timeout passes."""
    with socket.create_connection((server.host, server.port), timeout=timeout) as sock:
        # Refused before everything was read: the answer is still there to read.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(raw)
        chunks = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


def _status(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1."), answer[:200]
    return int(answer.split(b" ", 2)[1])


def _still_serving(server: AppServer) -> None:
    answer = _exchange(server, b"GET /healthz HTTP/1.1\r\nHost: relais.test\r\n"
                               b"Connection: close\r\n\r\n")
    assert _status(answer) == 200


def test_the_limits_are_set_explicitly_in_gunicorn_conf() -> None:
    text = (ROOT / "gunicorn.conf.py").read_text()
    for setting in ("limit_request_line", "limit_request_fields", "limit_request_field_size"):
        assert f"\n{setting} = " in text, setting


def test_a_request_line_of_8_kb_is_414(server: ConfiguredServer) -> None:
    path = "/documents?q=" + "a" * 8192
    answer = _exchange(server, f"GET {path} HTTP/1.1\r\nHost: relais.test\r\n\r\n".encode())
    assert _status(answer) in (400, 414)
    _still_serving(server)


def test_a_header_of_64_kb_is_431(server: ConfiguredServer) -> None:
    header = "X-Padding: " + "a" * 65536
    answer = _exchange(server, f"GET /healthz HTTP/1.1\r\nHost: relais.test\r\n{header}\r\n\r\n"
                       .encode())
    assert _status(answer) in (400, 431)
    _still_serving(server)


def test_two_hundred_headers_are_431(server: ConfiguredServer) -> None:
    headers = "".join(f"X-H{n}: {n}\r\n" for n in range(200))
    answer = _exchange(server, f"GET /healthz HTTP/1.1\r\nHost: relais.test\r\n{headers}\r\n"
                       .encode())
    assert _status(answer) in (400, 431)
    _still_serving(server)


def _stored(server: ConfiguredServer) -> int:
    with server.app.app_context():
        stored = db.session.scalar(select(func.count()).select_from(Document)) or 0
        db.session.remove()
        return int(stored)


def _problem(answer: bytes) -> dict[str, Any]:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"content-type: application/problem+json" in head.lower(), head
    if b"transfer-encoding: chunked" in head.lower():
        size, _, rest = body.partition(b"\r\n")
        body = rest[: int(size, 16)]
    problem: dict[str, Any] = json.loads(body)
    return problem


def _chunked(body: bytes, size: int = 65536) -> bytes:
    pieces = [body[i:i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


def _post_head(server: ConfiguredServer, extra: bytes) -> bytes:
    return (b"POST /api/v1/documents HTTP/1.1\r\nHost: relais.test\r\n"
            b"Authorization: Bearer " + server.token.encode() + b"\r\n"
            b"Content-Type: application/json\r\n" + extra + b"Connection: close\r\n\r\n")


def test_a_chunked_body_over_the_limit_is_413_problem(server: ConfiguredServer) -> None:
    # No Content-Length to refuse on: the app must stop reading at MAX_CONTENT_LENGTH (here
    # MAX_DOCUMENT_BYTES is 4 KB, so about 70 KB) and answer 413, storing nothing.
    body = json.dumps(document_body("DPI-1", author="x" * 300_000)).encode()
    answer = _exchange(server, _post_head(server, b"Transfer-Encoding: chunked\r\n")
                       + _chunked(body))
    assert _status(answer) == 413, answer[:300]
    assert _problem(answer)["status"] == 413
    assert _stored(server) == 0
    _still_serving(server)


def test_a_broken_chunked_body_is_400_problem(server: ConfiguredServer) -> None:
    # A chunk size that is no number: the server's reader fails on the client's framing.
    answer = _exchange(server, _post_head(server, b"Transfer-Encoding: chunked\r\n")
                       + b'{"title": "x"}\r\n0\r\n\r\n')
    assert _status(answer) == 400, answer[:300]
    assert _problem(answer)["status"] == 400
    assert _stored(server) == 0
    _still_serving(server)


def test_a_content_length_that_lies_is_413_at_once(server: ConfiguredServer) -> None:
    # 10 GB announced, a few bytes sent: refused on the header alone, without waiting for them.
    # The client sends nothing more and keeps the connection open: an answer at all means the
    # server did not wait for the body (waiting, it would still be waiting when we give up).
    head = _post_head(server, b"Content-Length: 10737418240\r\n") + b"{}"
    answer = _exchange(server, head, timeout=30)
    assert _status(answer) == 413, answer[:300]
    assert _problem(answer)["status"] == 413
    assert _stored(server) == 0
    _still_serving(server)
