"""PostgreSQL restarted in the middle of an ingest burst (issue 7, Build 1, third bullet).

A real gunicorn instance of Relais (2 workers) works on a throwaway PostgreSQL cluster of its own
(``tests/support/pg_cluster.py``), so that stopping the database harms no other test. A DPI of
a few threads pushes a burst of letters, each with its own ``document_id``; in the middle of it
the cluster is restarted, ``-m fast`` (what a service manager does) and ``-m immediate`` (like
a crash, with crash recovery at the start). Some letters are sent by a DPI whose connection
breaks right after sending: it never sees the answer, although Relais stored the letter.

Then the DPI retries, with the same body, every letter it has no 2xx for, and the test checks
the promises:

* a request that failed got a 503 ``application/problem+json`` with ``Retry-After`` — never a
  4xx, a 500, a hang, or a 2xx for something that was not stored;
* the retry succeeds; the retry of a letter that was in fact stored is answered as a replay
  (200 with the first answer), never stored twice and never a 409;
* every acknowledged letter is in the database exactly once, with its deliveries exactly once,
  its content decrypts and matches its hash, and it was audited once; the audit chain holds;
* the app serves again after the restart without being restarted itself (``pool_pre_ping``):
  after a quiet restart, the very first requests succeed.

And with the database stopped, a page of a signed-in doctor is a plain 503 page, not a 500.
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from flask import Flask
from sqlalchemy import func, select

from app.audit import CLI
from app.audit.trail import check_chain
from app.dispatch.clients import create_client
from app.dispatch.documents import read_content
from app.extensions import db
from app.gln import make_gln
from app.models import AuditEvent, Delivery, Doctor, Document
from app.models.base import utcnow
from app.pdf import make_pdf
from tests.conftest import TEST_KEY, Api, consent_body, document_body, make_app, upgrade
from tests.support.pg_cluster import PgCluster, pg_cluster_fixture  # noqa: F401
from tests.support.servers import AppServer, free_ports
from tests.support.signin import sign_in_as

#: The ports the app server may use (one free one is taken).
PORTS = range(18800, 18900)
#: The server's secret, shared with the in-process app (a session cookie made here works there).
SECRET_KEY = "pg-restart-secret-key-0123456789abcdefghij"
#: Patients the letters are about (several letters each: their rows are shared).
PATIENTS = 7
#: Recipients: active doctors (each letter goes to two of them).
GLNS = [make_gln(f"7601000{n:05d}") for n in range(101, 104)]
#: Letters per burst, DPI threads, and after how many answers the database is restarted.
BURST = 80
THREADS = 4
RESTART_AFTER = 20
#: The last letters of the burst, sent once the restart is over: all acknowledged at once.
AFTER_RESTART = 12
#: Each DPI thread's pause between two letters (seconds).
PAUSE = 0.04
#: Every LOST_EVERY-th letter is sent by a DPI whose connection breaks before the answer.
LOST_EVERY = 9
#: No answer may take longer (a hang is a failure).
REQUEST_TIMEOUT = 15.0
#: Retries of one letter after the database is back.
MAX_RETRIES = 10


@dataclass
class Portal:
    cluster: PgCluster
    server: AppServer
    app: Flask
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class Outcome:
    """What the DPI saw for one letter: each answer (status, headers, body) or a lost answer."""

    body: dict[str, Any]
    answers: list[tuple[int, dict[str, str], Any]] = field(default_factory=list)
    lost: int = 0  # answers never seen (the connection broke after sending)

    @property
    def acknowledged(self) -> bool:
        return bool(self.answers) and 200 <= self.answers[-1][0] < 300


@pytest.fixture(scope="module")
def portal(pg_cluster: PgCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Portal]:
    work = tmp_path_factory.mktemp("pg-restart")
    # The same secret as the server's: a session cookie made here is valid there.
    app = make_app(pg_cluster.url, SECRET_KEY=SECRET_KEY)
    upgrade(app)
    with app.app_context():
        for n, gln in enumerate(GLNS):
            db.session.add(Doctor(gln=gln, family_name=f"Médecin{n}", given_name="Test",
                                  email=f"m{n}@example.ch", state="active",
                                  activated_at=utcnow()))
        _, token = create_client("dpi-pg-restart", CLI)
        db.session.commit()
        # Each patient consented to electronic sending to each doctor: letters are delivered.
        api = Api(app.test_client(), token)
        for patient in range(PATIENTS):
            for gln in GLNS:
                answer = api.put(f"/api/v1/patients/P-FAULT-{patient}/consents/{gln}",
                                 json=consent_body())
                assert answer.status_code in (200, 201), answer.get_json()
        db.session.remove()
    settings = {
        "RELAIS_ENV": "testing",
        "SECRET_KEY": SECRET_KEY,
        "DOCUMENT_KEYS": f"test1:{TEST_KEY}",
        "DATABASE_URL": pg_cluster.url,
        "MAIL_BACKEND": "console",
        "SMS_BACKEND": "console",
        "SAML_DEV_IDP": "0",
    }
    (port,) = free_ports(1, PORTS)
    server = AppServer("pg-restart", port, settings, work, workers=2)
    server.start()
    try:
        yield Portal(pg_cluster, server, app, token)
        # Database errors are expected here: answered 503 and logged as a warning, never with
        # a traceback (which would mean a 500, or an error handler that failed in turn).
        assert server.stop() == 0, server.stderr_tail()
        log = server.stderr()
        first = log.find("Traceback")
        assert first == -1, log[max(0, first - 300):first + 3000]
        assert "database unavailable (" in log  # the restarts did reach the handler
    finally:
        server.stop()
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


# --- the DPI --------------------------------------------------------------------------------


def letter(document_id: str, n: int) -> dict[str, Any]:
    pdf = make_pdf([f"Lettre {document_id}", f"Patient {n % PATIENTS}"])
    return document_body(
        document_id,
        patient={"id": f"P-FAULT-{n % PATIENTS}", "family_name": "Muster", "given_name": "Anna",
                 "birth_date": "1961-04-02", "deceased": False},
        recipients=[GLNS[n % 3], GLNS[(n + 1) % 3]],
        content=base64.b64encode(pdf).decode(),
    )


def post(portal: Portal, body: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
    answer = requests.post(f"{portal.server.url}/api/v1/documents", json=body,
                           headers=portal.headers, timeout=REQUEST_TIMEOUT)
    try:
        parsed: Any = answer.json()
    except ValueError:
        parsed = answer.text
    return answer.status_code, dict(answer.headers), parsed


def post_and_hang_up(portal: Portal, body: dict[str, Any]) -> None:
    """Send the request whole, then close the connection: the DPI never sees the answer."""
    payload = json.dumps(body).encode()
    head = (f"POST /api/v1/documents HTTP/1.1\r\nHost: 127.0.0.1:{portal.server.port}\r\n"
            f"Authorization: Bearer {portal.token}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", portal.server.port), timeout=5) as sock:
        sock.sendall(head + payload)


def burst(portal: Portal, mode: str) -> dict[str, Outcome]:
    """Send BURST letters from THREADS threads; restart PostgreSQL after RESTART_AFTER answers."""
    outcomes = {f"DPI-PGR-{mode}-{n:04d}": Outcome(letter(f"DPI-PGR-{mode}-{n:04d}", n))
                for n in range(BURST)}
    ids = list(outcomes)
    answered = threading.Semaphore(0)
    restarted = threading.Event()
    lock = threading.Lock()
    cursor = iter(enumerate(ids))

    def dpi() -> None:
        while True:
            with lock:
                item = next(cursor, None)
            if item is None:
                return
            n, document_id = item
            if n >= BURST - AFTER_RESTART:
                # The DPI's stream goes on after the restart, however long the restart took.
                assert restarted.wait(timeout=60), "the restart did not finish"
            outcome = outcomes[document_id]
            if n % LOST_EVERY == LOST_EVERY - 1:
                post_and_hang_up(portal, outcome.body)
                outcome.lost += 1
            else:
                outcome.answers.append(post(portal, outcome.body))
            answered.release()
            # A DPI's steady stream, not a loop as fast as the CPU goes: the stream outlasts
            # the restart (a fraction of a second), so letters arrive before, during and after.
            time.sleep(PAUSE)

    with ThreadPoolExecutor(THREADS) as pool:
        futures = [pool.submit(dpi) for _ in range(THREADS)]
        for _ in range(RESTART_AFTER):
            assert answered.acquire(timeout=REQUEST_TIMEOUT), "the burst stalled"
        try:
            portal.cluster.restart(mode)
        finally:
            restarted.set()
        for future in futures:
            future.result(timeout=REQUEST_TIMEOUT * BURST)
    return outcomes


def wait_until_settled(portal: Portal, timeout: float = 20.0) -> None:
    """Wait until the requests whose answers were lost are done (the count stops moving)."""
    deadline = time.monotonic() + timeout
    last, stable_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        count = int(portal.cluster.psql("SELECT count(*) FROM documents").strip())
        if count != last:
            last, stable_since = count, time.monotonic()
        elif time.monotonic() - stable_since > 1.0:
            return
        time.sleep(0.1)
    raise AssertionError("the documents table kept changing")


def stored_answer(portal: Portal, document_id: str) -> Any:
    with portal.app.app_context():
        document = db.session.scalar(select(Document).where(Document.document_id == document_id))
        answer = document.response if document is not None else None
        db.session.remove()
    return answer


def retry_until_acknowledged(portal: Portal, outcome: Outcome) -> tuple[Any, int]:
    """Retry the same body until a 2xx (bounded): (the stored answer before, the 2xx status)."""
    before = stored_answer(portal, outcome.body["document_id"])
    for _ in range(MAX_RETRIES):
        status, headers, answer = post(portal, outcome.body)
        outcome.answers.append((status, headers, answer))
        if 200 <= status < 300:
            return before, status
        assert_retryable(status, headers, answer)
        time.sleep(min(float(headers["Retry-After"]), 0.5))
    raise AssertionError(f"{outcome.body['document_id']}: no 2xx after {MAX_RETRIES} retries")


def assert_retryable(status: int, headers: dict[str, str], answer: Any) -> None:
    """A failure the DPI can retry: 503, problem+json, Retry-After (never a 4xx or a 500)."""
    assert status == 503, (status, answer)
    assert headers["Content-Type"].startswith("application/problem+json"), headers
    assert int(headers["Retry-After"]) >= 1
    assert answer["status"] == 503
    assert answer["type"].endswith("/unavailable")


# --- the tests ------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_restart_during_an_ingest_burst_loses_and_duplicates_nothing(
    portal: Portal, mode: str
) -> None:
    # Given a DPI pushing a burst of letters, when PostgreSQL restarts in the middle of it,
    outcomes = burst(portal, mode)

    # then every failed request got a retryable 503, and every 2xx is a first answer (201).
    failures = 0
    for outcome in outcomes.values():
        for status, headers, answer in outcome.answers:
            if 200 <= status < 300:
                assert status == 201, (status, answer)
                assert answer["document_id"] == outcome.body["document_id"]
            else:
                failures += 1
                assert_retryable(status, headers, answer)
    # The restart did hit the burst (some letters failed), and the letters sent once it was over
    # were acknowledged at the first try: the app recovered without being restarted.
    assert failures > 0, "the restart hit no request: the test proves nothing"
    after = [i for i in list(outcomes)[-AFTER_RESTART:] if outcomes[i].answers]
    assert after and all(outcomes[i].acknowledged for i in after), [
        [status for status, _, _ in outcomes[i].answers] for i in after]

    # When the DPI retries every letter it has no 2xx for, with the same body,
    wait_until_settled(portal)
    replays = 0
    for outcome in outcomes.values():
        if outcome.acknowledged:
            continue
        before, status = retry_until_acknowledged(portal, outcome)
        answer = outcome.answers[-1][2]
        if before is not None:
            # stored before the connection broke: a replay of the first answer, not a copy.
            assert status == 200, (status, answer)
            assert answer == before
            replays += 1
        else:
            assert status in (200, 201)
    assert replays >= 1, "no retry was a replay of a letter stored without its answer seen"

    # then every letter is stored exactly once, with its deliveries exactly once, intact.
    assert_stored_exactly_once(portal, outcomes)


def assert_stored_exactly_once(portal: Portal, outcomes: dict[str, Outcome]) -> None:
    ids = list(outcomes)
    with portal.app.app_context():
        documents = db.session.scalars(
            select(Document).where(Document.document_id.in_(ids))
        ).all()
        assert sorted(d.document_id for d in documents) == sorted(ids)
        for document in documents:
            outcome = outcomes[document.document_id]
            body = outcome.body
            pdf = base64.b64decode(body["content"])
            assert read_content(document) == pdf
            assert document.sha256 == hashlib.sha256(pdf).hexdigest()
            recipients = sorted(d.recipient_gln for d in document.deliveries)
            assert recipients == sorted(body["recipients"])
            assert {d.status for d in document.deliveries} == {"delivered"}
            # Whatever answer the DPI kept is the one stored with the letter.
            assert outcome.answers[-1][2] == document.response
        deliveries = db.session.scalar(
            select(func.count(Delivery.id)).join(Document).where(Document.document_id.in_(ids))
        )
        assert deliveries == 2 * len(ids)
        received = db.session.scalars(
            select(AuditEvent.target).where(AuditEvent.action == "document.received",
                                            AuditEvent.target.in_([f"document:{i}" for i in ids]))
        ).all()
        assert sorted(received) == sorted(f"document:{i}" for i in ids)
        verification = check_chain()
        assert verification.broken is None, verification.broken
        db.session.remove()


def test_the_first_requests_after_a_quiet_restart_succeed(portal: Portal) -> None:
    # Given connections pooled in both workers (a few requests warm them up),
    for n in range(6):
        status, _, _ = post(portal, letter(f"DPI-PGR-warm-{n:04d}", n))
        assert status == 201
    # when PostgreSQL restarts while nobody calls (every pooled connection is now dead),
    portal.cluster.restart("fast")
    # then the very first requests succeed: each checkout notices the dead connection and
    # opens a new one (pool_pre_ping), without the app being restarted.
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(
            lambda n: post(portal, letter(f"DPI-PGR-after-{n:04d}", n)), range(12)))
    assert [status for status, _, _ in answers] == [201] * 12, [a[2] for a in answers]
    assert portal.server.running


def test_a_stopped_database_is_a_503_for_the_api_and_the_pages(portal: Portal) -> None:
    # Given a signed-in doctor (the session cookie the portal itself would set),
    with portal.app.app_context():
        doctor = db.session.scalar(select(Doctor).where(Doctor.gln == GLNS[0]))
        client = portal.app.test_client()
        sign_in_as(client, doctor)
        cookie = client.get_cookie("relais", domain=portal.app.config["SERVER_NAME"])
        assert cookie is not None
        session_cookie = cookie.value
        db.session.remove()
    # when PostgreSQL is down,
    portal.cluster.stop("fast")
    try:
        # then the API answers a retryable problem,
        status, headers, answer = post(portal, letter("DPI-PGR-down-0001", 1))
        assert_retryable(status, headers, answer)
        got = requests.get(f"{portal.server.url}/api/v1/documents/DPI-PGR-down-0001",
                           headers=portal.headers, timeout=REQUEST_TIMEOUT)
        assert_retryable(got.status_code, dict(got.headers), got.json())
        # and a page is a plain 503 page in French (no traceback, no half-drawn page).
        page = requests.get(f"{portal.server.url}/documents", cookies={"relais": session_cookie},
                            headers={"Accept-Language": "fr"}, timeout=REQUEST_TIMEOUT,
                            allow_redirects=False)
        assert page.status_code == 503, page.text
        assert page.headers["Content-Type"].startswith("text/html")
        assert int(page.headers["Retry-After"]) >= 1
        assert "Service momentanément indisponible" in page.text
        assert "Traceback" not in page.text and "psycopg" not in page.text
    finally:
        portal.cluster.start()
    # When it is back, the same requests succeed.
    status, _, answer = post(portal, letter("DPI-PGR-down-0001", 1))
    assert status == 201, answer
    page = requests.get(f"{portal.server.url}/documents", cookies={"relais": session_cookie},
                        timeout=REQUEST_TIMEOUT, allow_redirects=False)
    assert page.status_code == 200
