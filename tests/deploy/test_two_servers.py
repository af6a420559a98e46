"""Two app servers that share nothing but PostgreSQL and Redis (issue 6, item 2).

A hospital runs Relais on several servers behind one proxy, which may send each request of a
browser to a different server. Two real gunicorn instances (2 workers each, started with
explicit flags, not ``gunicorn.conf.py``) on two ports, with the same settings, show that no
state a sign-in or a release depends on lives inside one process:

1. an SMS code sent through server A is accepted by server B, and the session works on both;
2. the sign-in rate limit counts the attempts made on both servers (Redis);
3. a SAML response accepted by A and replayed on B is refused, and so is its assertion id
   answering a new request started on B;
4. two ``flask dispatch release-due`` started at the same moment, one with each server's
   environment, release every held delivery exactly once.

The browser is a ``requests.Session`` that reaches both servers as ``127.0.0.1`` on two ports:
cookies ignore ports, so it carries one cookie jar to both, as behind a load balancer.
Needs PostgreSQL (TEST_DATABASE_URL) and Redis (REDIS_URL): skipped on a laptop without them,
a failure under CI=true.
"""

from __future__ import annotations

import html
import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from flask import Flask
from sqlalchemy import func, select, update

from app.audit import CLI
from app.auth.saml_settings import write_dev_settings
from app.dispatch.clients import create_client
from app.extensions import db
from app.models import AuditEvent, Delivery, Doctor, Document, HinIdentity, Notification
from app.models.base import utcnow
from tests.conftest import (
    TEST_KEY,
    consent_body,
    document_body,
    make_app,
    postgres_url,
    private_postgres_database,
    skip_or_fail,
    upgrade,
)
from tests.support.factories import PASSWORD, make_sms_doctor, weak_hash
from tests.support.login import GENERIC
from tests.support.saml_idp import (
    IDP_ENTITY_ID,
    SP_BASE,
    Attack,
    authn_request_id,
    build,
    encode,
    keypair,
    new_id,
)
from tests.support.servers import AppServer, finish, free_ports, run_flask, start_flask
from tests.support.twilio_server import TwilioServer

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

#: The ports this test may use (two free ones are taken).
PORTS = range(18200, 18300)
#: The per-login sign-in limit both servers are given: small, so that a few attempts reach it.
ACCOUNT_LIMIT = 3
GLN_SMS = "7601000000019"  # Dr Claire Muller: login and SMS, also the HIN test's GLN
GLN_OTHER = "7601000000026"  # Dr Luc Rochat: receives letters only
PATIENT = "P-0042"
HIN_FAILED = "La connexion par HIN a échoué"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_SMS_CODE = re.compile(r"\b(\d{6})\b")


@dataclass
class Servers:
    """The two servers, what they share, and an app in this process on the same database."""

    a: AppServer
    b: AppServer
    twilio: TwilioServer
    settings: dict[str, str]
    app: Flask
    api_token: str

    def both(self) -> tuple[AppServer, AppServer]:
        return self.a, self.b


# --- the servers --------------------------------------------------------------------------


def _redis_url() -> str:
    """REDIS_URL, checked reachable (a missing service skips, or fails under CI)."""
    url = os.environ.get("REDIS_URL", "")
    if not url:
        skip_or_fail("REDIS_URL is not set: the two-server test needs Redis")
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=2)
        client.ping()
        client.close()
    except redis.RedisError as error:
        skip_or_fail(f"Redis at REDIS_URL is unreachable ({type(error).__name__})")
    return url


def _saml_settings(directory: Path) -> str:
    """SP settings (ours, written by our writer) trusting the test IdP's certificate."""
    _, cert = keypair("idp")
    written = write_dev_settings(str(directory), SP_BASE, {
        "entity_id": IDP_ENTITY_ID, "sso": "https://idp.hin.test/sso",
        "slo": "https://idp.hin.test/slo", "cert": cert,
    })
    assert written
    return str(directory)


def _seed(app: Flask) -> str:
    """Two active doctors notified at each arrival, and a DPI API client; returns its token."""
    with app.app_context():
        sms_doctor = make_sms_doctor("cmuller", gln=GLN_SMS)
        sms_doctor.notification_mode = "immediate"
        db.session.add(Doctor(
            gln=GLN_OTHER, family_name="Rochat", given_name="Luc", email="l.rochat@example.ch",
            state="active", activated_at=utcnow(), notification_mode="immediate",
            password_hash=weak_hash(),
        ))
        _, token = create_client("dpi-two-servers", CLI)
        db.session.commit()
        db.session.remove()
    return token


def _shared_settings(database_url: str, redis_url: str, saml_dir: str,
                     twilio: TwilioServer, prefix: str) -> dict[str, str]:
    """What both servers (and both release processes) are given: the very same settings."""
    settings = {
        "RELAIS_ENV": "testing",
        "SECRET_KEY": "two-servers-one-secret-key-0123456789abcdef",
        "DOCUMENT_KEYS": f"test1:{TEST_KEY}",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        # The one public address behind the proxy: what the IdP is told, whichever server.
        "PUBLIC_BASE_URL": SP_BASE,
        "SAML_SETTINGS_DIR": saml_dir,
        "SAML_DEV_IDP": "0",
        "MAIL_BACKEND": "console",
        "RATELIMIT_KEY_PREFIX": prefix,
        "RATELIMIT_SIGNIN_PER_ACCOUNT": f"{ACCOUNT_LIMIT} per hour",
        "RATELIMIT_SIGNIN_PER_ADDRESS": "1000 per minute",
    }
    settings.update({key: str(value) for key, value in twilio.config().items()})
    return settings


def _forget_counters(redis_url: str, prefix: str) -> None:
    """Remove this run's rate-limit counters (CI shares one Redis between runs)."""
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"*{prefix}*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    url = postgres_url()
    if url is None:
        skip_or_fail("TEST_DATABASE_URL is not set: the two-server test needs PostgreSQL")
    assert url is not None
    redis_url = _redis_url()
    work = tmp_path_factory.mktemp("two-servers")
    prefix = f"relais-two-servers-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    with private_postgres_database(url, "servers") as database_url, TwilioServer() as twilio:
        app = make_app(database_url)
        upgrade(app)  # once, before either server starts
        token = _seed(app)
        settings = _shared_settings(database_url, redis_url, _saml_settings(work / "saml"),
                                    twilio, prefix)
        port_a, port_b = free_ports(2, PORTS)
        a = AppServer("a", port_a, settings, work)
        b = AppServer("b", port_b, settings, work)
        try:
            a.start()
            b.start()
            yield Servers(a, b, twilio, settings, app, token)
            # Both stop gracefully on SIGTERM, and neither logged a traceback, even stopping.
            assert a.stop() == 0, a.stderr_tail()
            assert b.stop() == 0, b.stderr_tail()
            assert_no_traceback(a, b)
        finally:
            a.stop()
            b.stop()
            _forget_counters(redis_url, prefix)
            with app.app_context():
                db.session.remove()
                db.engine.dispose()


def assert_no_traceback(*servers: AppServer) -> None:
    for server in servers:
        log = server.stderr()
        assert "Traceback" not in log, f"server {server.name} logged a traceback:\n{log}"


# --- a browser reaching both servers ------------------------------------------------------


def new_session() -> requests.Session:
    """An HTTP client that ignores proxies from the environment (both servers are local)."""
    session = requests.Session()
    session.trust_env = False
    return session


@pytest.fixture()
def browser() -> Iterator[requests.Session]:
    """One cookie jar for both servers (same host, two ports), closed after the test."""
    with new_session() as session:
        yield session


def csrf_token(session: requests.Session, url: str) -> str:
    page = session.get(url, timeout=10)
    assert page.status_code == 200, page.status_code
    match = _CSRF.search(page.text)
    assert match is not None, f"no csrf_token on {url}"
    return match.group(1)


def post_login(session: requests.Session, server: AppServer, login: str,
               password: str = PASSWORD) -> requests.Response:
    data = {"csrf_token": csrf_token(session, f"{server.url}/auth/login"), "login": login,
            "password": password, "next": "/documents"}
    return session.post(f"{server.url}/auth/login", data=data, allow_redirects=False, timeout=30)


def signed_in_on(session: requests.Session, server: AppServer) -> bool:
    page = session.get(f"{server.url}/documents", allow_redirects=False, timeout=10)
    return page.status_code == 200 and "Claire Muller" in page.text


def audit_events(app: Flask, action: str) -> list[AuditEvent]:
    with app.app_context():
        events = list(db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)))
        db.session.remove()
    return events


def sign_ins(app: Flask, method: str) -> int:
    """How many sessions were opened with ``method`` (each sign-in is audited)."""
    return sum(1 for e in audit_events(app, "auth.signed_in")
               if (e.details or {}).get("method") == method)


# --- 1. a code sent through one server, accepted by the other -----------------------------


def test_a_code_sent_through_one_server_is_accepted_by_the_other(
    servers: Servers, browser: requests.Session
) -> None:
    sent = len(servers.twilio.messages)

    # Given the doctor's login and password were accepted by server A, which sent the code
    answer = post_login(browser, servers.a, "cmuller")
    assert answer.status_code == 303, answer.text
    assert answer.headers["Location"] == "/auth/code"
    message = servers.twilio.wait_for_messages(sent + 1)[-1]
    match = _SMS_CODE.search(message.body)
    assert match is not None

    # When the code is typed on server B
    token = csrf_token(browser, f"{servers.b.url}/auth/code")
    answer = browser.post(f"{servers.b.url}/auth/code",
                          data={"csrf_token": token, "code": match.group(1)},
                          allow_redirects=False, timeout=30)

    # Then the doctor is signed in, and the session opens Mes documents on both servers
    assert answer.status_code == 303, answer.text
    assert answer.headers["Location"] == "/documents"
    assert signed_in_on(browser, servers.a)
    assert signed_in_on(browser, servers.b)
    assert sign_ins(servers.app, "sms") == 1
    assert_no_traceback(*servers.both())


# --- 2. one rate limit over both servers --------------------------------------------------


def test_the_sign_in_rate_limit_counts_across_both_servers(
    servers: Servers, browser: requests.Session
) -> None:
    login = "nobody-" + uuid.uuid4().hex[:8]  # an unknown login: no lockout, same argon2 cost
    # Given failed attempts for one login, alternately on A and B, up to the limit: A saw
    # two and B one, each fewer than the limit
    sides = [servers.a, servers.b, servers.a]
    assert len(sides) == ACCOUNT_LIMIT
    for server in sides:
        answer = post_login(browser, server, login, "wrong-password")
        assert answer.status_code == 200, (server.name, answer.status_code)
        assert GENERIC in html.unescape(answer.text)

    # When a next attempt comes, to either server, it is refused
    for server in servers.both():
        answer = post_login(browser, server, login, "wrong-password")
        assert answer.status_code == 429, (server.name, answer.status_code)

    # ... while another login is not affected by this one's budget
    answer = post_login(browser, servers.b, "somebody-else", "wrong-password")
    assert answer.status_code == 200
    assert_no_traceback(*servers.both())


# --- 3. a SAML response replayed on the other server --------------------------------------


def start_hin(session: requests.Session, server: AppServer) -> str:
    """The doctor clicks "Se connecter avec HIN" on ``server``: the AuthnRequest's id."""
    answer = session.get(f"{server.url}/auth/hin/login", params={"next": "/documents"},
                         allow_redirects=False, timeout=10)
    assert answer.status_code == 303, answer.text
    assert answer.headers["Location"].startswith("https://idp.hin.test/sso?")
    assert session.cookies.get("relais-hin", path="/auth/hin") is not None
    return authn_request_id(answer.headers["Location"])


def post_acs(session: requests.Session, server: AppServer, response: str) -> requests.Response:
    return session.post(f"{server.url}/auth/hin/acs", data={"SAMLResponse": response},
                        allow_redirects=False, timeout=30)


def hin_rejections(app: Flask) -> list[str]:
    return [str(e.details["reason"]) for e in audit_events(app, "auth.hin_rejected")
            if e.details]


def test_a_saml_assertion_accepted_by_one_server_is_refused_by_the_other(
    servers: Servers, browser: requests.Session
) -> None:
    assertion_id = new_id()
    # Given HIN answered a request started on server A, and A signed the doctor in
    response = encode(build(Attack(in_response_to=start_hin(browser, servers.a),
                                   assertion_id=assertion_id)))
    answer = post_acs(browser, servers.a, response)
    assert answer.status_code == 303, hin_rejections(servers.app)
    assert answer.headers["Location"] == "/documents"
    assert signed_in_on(browser, servers.b)
    assert sign_ins(servers.app, "hin") == 1

    # When the same response is posted to server B, from the same browser
    replay = post_acs(browser, servers.b, response)

    # Then B refuses it (the request it answers is spent) and opens no second session
    assert replay.status_code == 400
    assert HIN_FAILED in replay.text
    assert hin_rejections(servers.app)[-1] == "request_used"
    assert sign_ins(servers.app, "hin") == 1

    # And an assertion id already accepted by A, answering a new request started on B,
    # is refused by B as a replay
    again = encode(build(Attack(in_response_to=start_hin(browser, servers.b),
                                assertion_id=assertion_id)))
    replay = post_acs(browser, servers.b, again)
    assert replay.status_code == 400
    assert hin_rejections(servers.app)[-1] == "replayed_assertion"
    assert sign_ins(servers.app, "hin") == 1
    with servers.app.app_context():
        assert db.session.scalar(select(func.count()).select_from(HinIdentity)) == 1
        db.session.remove()
    assert_no_traceback(*servers.both())


# --- 4. two release-due at the same moment ------------------------------------------------


class Dpi:
    """The DPI's API client, talking to one server."""

    def __init__(self, server: AppServer, token: str, session: requests.Session) -> None:
        self.server = server
        self.session = session
        self.session.headers["Authorization"] = f"Bearer {token}"

    def send(self, method: str, path: str, body: dict[str, Any]) -> requests.Response:
        return self.session.request(method, f"{self.server.url}{path}", json=body, timeout=30)


def hold_letters(servers: Servers, count: int) -> list[str]:
    """Sensitive letters to both doctors, sent alternately through A and B: all held."""
    with new_session() as session_a, new_session() as session_b:
        dpi = [Dpi(servers.a, servers.api_token, session_a),
               Dpi(servers.b, servers.api_token, session_b)]
        return _send_held_letters(dpi, count)


def _send_held_letters(dpi: list[Dpi], count: int) -> list[str]:
    """Each doctor's consent through one server, then the letters through each in turn."""
    for index, gln in enumerate((GLN_SMS, GLN_OTHER)):
        answer = dpi[index].send("PUT", f"/api/v1/patients/{PATIENT}/consents/{gln}",
                                 consent_body())
        assert answer.status_code in (200, 201), answer.text
    signed_at = (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=0)
    document_ids = [f"DPI-TWO-{n:03d}" for n in range(count)]
    for n, document_id in enumerate(document_ids):
        body = document_body(document_id, sensitive=True, signed_at=signed_at.isoformat(),
                             recipients=[GLN_SMS, GLN_OTHER])
        answer = dpi[n % 2].send("POST", "/api/v1/documents", body)
        assert answer.status_code == 201, answer.text
        assert {d["status"] for d in answer.json()["deliveries"]} == {"held"}
    return document_ids


def make_due(app: Flask) -> int:
    """Move every held delivery's release time into the past (the 7 days have passed)."""
    with app.app_context():
        moved = db.session.execute(
            update(Delivery).where(Delivery.status == "held")
            .values(release_at=utcnow() - timedelta(minutes=1))
        ).rowcount  # type: ignore[attr-defined]
        db.session.commit()
        db.session.remove()
    return int(moved)


def test_a_held_document_is_released_once_when_both_servers_release_at_once(
    servers: Servers,
) -> None:
    # Given held letters ingested through both servers, now due
    document_ids = hold_letters(servers, 8)
    deliveries = 2 * len(document_ids)
    assert make_due(servers.app) == deliveries

    # When each server's environment runs `dispatch release-due` at the same moment
    # (the same settings: what differs between the servers is only their port)
    args = ["dispatch", "release-due"]
    running = [start_flask(args, servers.settings), start_flask(args, servers.settings)]
    results = [finish(process, args, timeout=60) for process in running]

    # Then every delivery was released by exactly one of them
    released = 0
    for result in results:
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr, result.stderr
        match = re.search(r"released: (\d+) delivered, (\d+) cancelled", result.stdout)
        assert match is not None, result.stdout
        assert match.group(2) == "0"
        released += int(match.group(1))
    assert released == deliveries

    with servers.app.app_context():
        statuses = dict(db.session.execute(
            select(Delivery.status, func.count()).group_by(Delivery.status)).tuples().all())
        assert statuses == {"delivered": deliveries}
        events = db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "delivery.released")).all()
        per_delivery: dict[tuple[str, str], int] = {}
        for event in events:
            key = (event.target or "", str((event.details or {}).get("recipient")))
            per_delivery[key] = per_delivery.get(key, 0) + 1
        assert per_delivery == {(f"document:{document_id}", gln): 1
                                for document_id in document_ids
                                for gln in (GLN_SMS, GLN_OTHER)}
        # One arrival email gathering per doctor, counting each of their letters once.
        arrivals = db.session.execute(
            select(Doctor.gln, Notification.count)
            .join(Doctor, Doctor.id == Notification.doctor_id)
            .where(Notification.kind == "arrival")
        ).all()
        assert sorted(tuple(row) for row in arrivals) == [
            (GLN_SMS, len(document_ids)), (GLN_OTHER, len(document_ids))]
        assert db.session.scalar(select(func.count()).select_from(Document)) == len(
            document_ids)
        db.session.remove()

    # And the audit trail, written by both servers and both processes, is one intact chain
    verified = run_flask(["audit", "verify"], servers.settings)
    assert verified.returncode == 0, verified.stderr
    assert "audit trail intact" in verified.stdout
    assert_no_traceback(*servers.both())
