"""A local Twilio-compatible HTTP server for tests: the Messages API, nothing more.

It speaks ``POST /2010-04-01/Accounts/{sid}/Messages.json`` (form fields ``To``, ``From``,
``Body``, HTTP Basic auth ``sid:token``) the way Twilio does, so that the real ``twilio`` client
can talk to it (``TWILIO_API_BASE = server.base_url``). Accepted messages are kept in
``server.messages``; ``fail_with(status)`` and ``hang(seconds)`` make it misbehave (for every
request, or with ``times=N`` for the next N requests only).

Use the ``twilio_server`` fixture: ``from tests.support.twilio_server import
twilio_server_fixture  # noqa: F401`` in a test module or conftest (the fixture is named
``twilio_server``; the function has another name so that ruff sees no redefinition), or
``with TwilioServer() as s`` for longer-lived servers (a session fixture, a browser test).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs

import pytest

DEFAULT_SID = "AC" + "0123456789abcdef" * 2
DEFAULT_TOKEN = "test-auth-token-0123456789abcdef"

_MESSAGES_PATH = re.compile(r"^/2010-04-01/Accounts/([^/]+)/Messages\.json$")

# Twilio's error codes for the answers this server can give.
_ERROR_CODES = {400: 21602, 401: 20003, 403: 20003, 404: 20404, 429: 20429, 500: 20500,
                502: 20500, 503: 20503}


@dataclass(frozen=True)
class SentMessage:
    """One message the server accepted."""

    sid: str
    account_sid: str
    to: str
    from_: str
    body: str
    auth_username: str
    auth_password: str
    user_agent: str
    date_created: str


@dataclass
class _Behaviour:
    fail_status: int | None = None
    hang_seconds: float = 0.0
    #: How many more requests get the failure / the hang; None: every one until reset().
    fail_left: int | None = None
    hang_left: int | None = None


class TwilioServer:
    """The server; ``start()``/``stop()`` or use it as a context manager."""

    def __init__(self, account_sid: str = DEFAULT_SID, auth_token: str = DEFAULT_TOKEN) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self._lock = threading.Lock()
        self._messages: list[SentMessage] = []
        self._requests = 0
        self._behaviour = _Behaviour()
        self._wake = threading.Event()  # set to end every hang at once (reset, stop)
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- life cycle -------------------------------------------------------------------------

    def start(self) -> TwilioServer:
        if self._httpd is not None:
            raise RuntimeError("already started")
        handler = type("BoundHandler", (_Handler,), {"twilio": self})
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        # Join the request threads on close: no thread outlives the server.
        httpd.daemon_threads = False
        httpd.block_on_close = True
        self._httpd = httpd
        self._wake.clear()
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="twilio-test-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        self._wake.set()  # end hangs so that their threads can be joined
        httpd.shutdown()
        httpd.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> TwilioServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # --- address ----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("not started")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """What to give as TWILIO_API_BASE."""
        return f"http://127.0.0.1:{self.port}"

    def config(self, **overrides: Any) -> dict[str, Any]:
        """Flask config keys for SMS_BACKEND=twilio pointed at this server."""
        values: dict[str, Any] = {
            "SMS_BACKEND": "twilio",
            "TWILIO_ACCOUNT_SID": self.account_sid,
            "TWILIO_AUTH_TOKEN": self.auth_token,
            "TWILIO_FROM_NUMBER": "+41225550100",
            "TWILIO_API_BASE": self.base_url,
        }
        values.update(overrides)
        return values

    # --- behaviour --------------------------------------------------------------------------

    def fail_with(self, status: int, times: int | None = None) -> None:
        """Answer every message request with ``status`` and a Twilio error body; with
        ``times``, only the next ``times`` requests (then answer normally again)."""
        with self._lock:
            self._behaviour.fail_status = status
            self._behaviour.fail_left = times

    def hang(self, seconds: float, times: int | None = None) -> None:
        """Wait ``seconds`` before answering each request (cut short by reset() and stop());
        with ``times``, only the next ``times`` requests."""
        with self._lock:
            self._behaviour.hang_seconds = seconds
            self._behaviour.hang_left = times
            self._wake.clear()

    def release(self) -> None:
        """End the hangs in progress now: each held request is then answered (and its message
        accepted) as it would have been after the full wait."""
        self._wake.set()

    def reset(self) -> None:
        """Answer normally again and forget the messages (ends a hang in progress)."""
        self._wake.set()
        with self._lock:
            self._behaviour = _Behaviour()
            self._messages.clear()
            self._requests = 0

    # --- what arrived -----------------------------------------------------------------------

    @property
    def messages(self) -> list[SentMessage]:
        """The accepted messages, oldest first (a copy)."""
        with self._lock:
            return list(self._messages)

    @property
    def request_count(self) -> int:
        """Every request received, accepted or not."""
        with self._lock:
            return self._requests

    def last_message(self) -> SentMessage:
        with self._lock:
            if not self._messages:
                raise AssertionError("the Twilio test server received no message")
            return self._messages[-1]

    def wait_for_messages(self, count: int = 1, timeout: float = 5.0) -> list[SentMessage]:
        """The messages once at least ``count`` arrived (for a browser test's other thread)."""
        deadline = time.monotonic() + timeout
        while True:
            current = self.messages
            if len(current) >= count:
                return current
            if time.monotonic() >= deadline:
                break
            time.sleep(0.02)
        raise AssertionError(f"expected {count} message(s), got {len(self.messages)}")

    # --- used by the handler ----------------------------------------------------------------

    def _begin(self) -> _Behaviour:
        with self._lock:
            self._requests += 1
            current = self._behaviour
            this = _Behaviour(current.fail_status, current.hang_seconds)
            if current.fail_left is not None:  # a counted failure: one fewer to go
                current.fail_left -= 1
                if current.fail_left <= 0:
                    current.fail_status, current.fail_left = None, None
            if current.hang_left is not None:
                current.hang_left -= 1
                if current.hang_left <= 0:
                    current.hang_seconds, current.hang_left = 0.0, None
            return this

    def _record(self, message: SentMessage) -> None:
        with self._lock:
            self._messages.append(message)


def _error(status: int, message: str, code: int | None = None) -> dict[str, Any]:
    code = code if code is not None else _ERROR_CODES.get(status, status)
    return {"code": code, "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}", "status": status}


class _Handler(BaseHTTPRequestHandler):
    twilio: TwilioServer  # set on the subclass made by TwilioServer.start()
    server_version = "TwilioTestServer/1.0"
    protocol_version = "HTTP/1.0"  # one request per connection: nothing to keep alive
    timeout = 10  # a silent client cannot hold a thread for ever

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: the request line carries the account SID, the body is never printed

    def do_GET(self) -> None:
        self._send_json(404, _error(404, "The requested resource was not found"))

    def do_POST(self) -> None:
        behaviour = self.twilio._begin()
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if behaviour.hang_seconds > 0:
            self.twilio._wake.wait(behaviour.hang_seconds)
        match = _MESSAGES_PATH.match(self.path.split("?", 1)[0])
        if match is None:
            self._send_json(404, _error(404, f"The requested resource {self.path} was not found"))
            return
        username, password = self._basic_auth()
        if username != self.twilio.account_sid or password != self.twilio.auth_token:
            self._send_json(401, _error(401, "Authenticate"))
            return
        path_sid = match.group(1)
        if path_sid != username:
            self._send_json(404, _error(404, f"The requested resource {self.path} was not found"))
            return
        if behaviour.fail_status is not None:
            status = behaviour.fail_status
            try:
                phrase = HTTPStatus(status).phrase
            except ValueError:
                phrase = "Error"
            self._send_json(status, _error(status, phrase))
            return
        form = parse_qs(raw.decode("utf-8", errors="replace"), keep_blank_values=True)
        to, from_, body = (form.get(k, [""])[0] for k in ("To", "From", "Body"))
        if not to:
            self._send_json(400, _error(400, "A 'To' phone number is required.", 21604))
            return
        if not from_:
            self._send_json(400, _error(400, "A 'From' phone number is required.", 21603))
            return
        if not body:
            self._send_json(400, _error(400, "Message body is required.", 21602))
            return
        sid = "SM" + secrets.token_hex(16)
        now = format_datetime(datetime.now(UTC), usegmt=True)
        message = SentMessage(sid=sid, account_sid=path_sid, to=to, from_=from_, body=body,
                              auth_username=username, auth_password=password,
                              user_agent=self.headers.get("User-Agent", ""), date_created=now)
        self.twilio._record(message)
        uri = f"/2010-04-01/Accounts/{path_sid}/Messages/{sid}.json"
        self._send_json(201, {
            "account_sid": path_sid, "api_version": "2010-04-01", "body": body,
            "date_created": now, "date_sent": None, "date_updated": now, "direction":
            "outbound-api", "error_code": None, "error_message": None, "from": from_,
            "messaging_service_sid": None, "num_media": "0", "num_segments": "1", "price": None,
            "price_unit": "USD", "sid": sid, "status": "queued",
            "subresource_uris": {"media": uri.replace(".json", "/Media.json")},
            "to": to, "uri": uri,
        })

    def _basic_auth(self) -> tuple[str, str]:
        header = self.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return "", ""
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return "", ""
        username, _, password = decoded.partition(":")
        return username, password

    def _send_json(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test): nothing to answer to


@pytest.fixture(name="twilio_server")
def twilio_server_fixture(monkeypatch: pytest.MonkeyPatch) -> Iterator[TwilioServer]:
    """A started server, stopped after the test.

    TWILIO_EDGE/REGION are unset (the client would rewrite the host) and 127.0.0.1 bypasses any
    HTTP proxy from the environment (requests honours them): nothing leaves the machine.
    """
    for name in ("TWILIO_EDGE", "TWILIO_REGION"):
        monkeypatch.delenv(name, raising=False)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, "127.0.0.1,localhost")
    with TwilioServer() as server:
        yield server
