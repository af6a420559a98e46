"""Soak: signed-in doctors browsing for minutes while the DPI ingests a steady stream.

``python -m bench.soak [--duration 300] [--sessions 200] [--ingest-rate 5] [--max-requests N]``
(``make soak``). On loopback, in this order:

1. a fresh PostgreSQL database ``relais_soak`` (dropped and created again each run, on
   ``BENCH_PG``), the real migrations, then through the app's own services and API: 200 doctors
   enrolled in SMS mode (real argon2 passwords), two consented patients each, a few letters each,
   and a DPI API client;
2. the app under gunicorn with the production profile (``gunicorn.conf.py``, workers from
   ``GUNICORN_WORKERS``, default 2 here as in ``make bench``; workers are never replaced during
   the run, so that the memory read at the end is that of workers that served everything),
   the local Twilio-compatible server (``tests/support/twilio_server.py``) as the SMS provider,
   and ``flask --app wsgi worker`` in RQ mode (Redis db 8) to release held letters. Email goes
   to the console backend, into the worker's and servers' log files (nothing at delivery needs
   a real relay for what is measured here);
3. every doctor signs in for real: login and password, then the SMS code read from what the
   Twilio server received. All sessions come from 127.0.0.1, so the per-address sign-in limit
   is raised for this run (``RATELIMIT_SIGNIN_PER_ADDRESS``): in production 200 doctors come
   from 200 addresses; the per-account limit stays as it is;
4. for ``--duration`` seconds (or ``--max-requests`` requests, whichever first) every session
   loops over Mes documents (a filter or the next page now and then), Mes patients, a letter's
   viewer and its content, with a random think time, while one DPI client posts letters at
   ``--ingest-rate`` per second (some sensitive, held until a time within the run or days away);
5. then it checks, from the database: every acknowledged letter stored once with one delivery per
   recipient (lost, duplicated), no held delivery left past its release time, every visible
   delivery listed in Mes documents for a sample of doctors (over HTTP), the audit chain.

It prints a table (written to ``bench/results/soak.md``) and exits 1 on any 5xx, lost or
duplicated delivery, overdue held letter, letter missing from a list, broken audit chain, or a
worker whose resident memory grew past the bound after the warm-up.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import Connection, create_engine, text
from sqlalchemy.engine import make_url

from bench.common import (
    BENCH_DOCUMENT_KEYS,
    BENCH_SECRET_KEY,
    PG_SERVER,
    PRODUCTION_SERVICES,
    RESULTS,
    ROOT,
)
from bench.run import GUNICORN_ENV, Server, rss_mb
from bench.seed import gln
from tests.support.servers import free_ports
from tests.support.twilio_server import TwilioServer

#: The soak's own Redis database (rate limits, one-time codes, jobs): nothing else uses db 8.
REDIS_URL = os.environ.get("SOAK_REDIS_URL", "redis://127.0.0.1:6379/8")
DATABASE = "relais_soak"
#: Candidate ports for gunicorn (the first free one is taken).
PORTS = range(18400, 18500)
#: Every HTTP call of the load gives up after this many seconds (counted as an error).
HTTP_TIMEOUT = 30.0
#: gunicorn closes a keep-alive connection idle for 5 s (GUNICORN_KEEPALIVE): reconnect before.
IDLE_RECONNECT = 4.0
#: The memory bound: a worker may grow by at most this after the warm-up.
MEMORY_BOUND_MB = 40.0
MEMORY_BOUND_SHARE = 0.25
PREFIX = "SOAK"
#: The DPI's connections: letters are posted on time even when an answer is slow.
INGEST_CONNECTIONS = 8


@dataclass
class SoakOptions:
    duration: float = 300.0
    sessions: int = 200
    ingest_rate: float = 5.0
    max_requests: int = 1_000_000
    #: Seconds between a session's requests. 200 sessions at 0.5-3 s ask ~115 pages/s, more
    #: than this 2-core machine serves next to the load generator itself; 2-10 s (~35 pages/s,
    #: a doctor reading a letter for a few seconds) keeps the 200 sessions and the 5 letters/s.
    think_min: float = 2.0
    think_max: float = 10.0
    workers: int = int(os.environ.get("GUNICORN_WORKERS") or 2)
    letters_per_doctor: int = 3
    patients_per_doctor: int = 2
    sample_doctors: int = 20
    worker_interval: int = 5
    database_url: str = f"{PG_SERVER}/{DATABASE}"
    redis_url: str = REDIS_URL
    seed: int = 7
    log_dir: Path = field(default_factory=lambda: Path(tempfile.gettempdir()) / "relais-soak")


# --- statistics -------------------------------------------------------------------------------


class Stats:
    """Every request's page, status and latency (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.latencies: dict[str, list[float]] = {}
        self.statuses: Counter[tuple[str, int]] = Counter()
        self.errors: Counter[str] = Counter()  # timeouts, connection errors, unexpected 4xx
        self.total = 0

    def record(self, page: str, status: int, seconds: float) -> int:
        with self._lock:
            self.latencies.setdefault(page, []).append(seconds)
            self.statuses[(page, status)] += 1
            self.total += 1
            return self.total

    def error(self, kind: str) -> None:
        with self._lock:
            self.errors[kind] += 1

    def server_errors(self) -> int:
        return sum(n for (_, status), n in self.statuses.items() if status >= 500)


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile (``share`` in 0..1) of ``values``, in milliseconds."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(share * len(ordered) + 0.5) - 1))
    return round(ordered[rank] * 1000, 1)


# --- a browser: one keep-alive connection and a cookie jar --------------------------------------


class HttpError(Exception):
    """A request that got no answer (timeout, connection refused or cut)."""


@dataclass
class Answer:
    status: int
    location: str
    body: str


class Browser:
    """One doctor's browser. Cookies are kept by hand: the production session cookie is
    ``Secure`` (``__Host-``), which a cookie jar would not send over this loopback HTTP, as a
    browser behind the TLS proxy would."""

    def __init__(self, port: int, stats: Stats) -> None:
        self.port = port
        self.stats = stats
        self.cookies: dict[str, str] = {}
        self._conn: http.client.HTTPConnection | None = None
        self._used = 0.0

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def request(self, page: str, method: str, path: str, form: dict[str, str] | None = None,
                expect: Iterable[int] = (200,)) -> Answer:
        # As a browser on our own pages: the content route records a reading only for those.
        headers = {"Accept-Language": "fr", "Sec-Fetch-Site": "same-origin"}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            body = urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        if self._conn is None or time.monotonic() - self._used > IDLE_RECONNECT:
            self.close()
            self._conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=HTTP_TIMEOUT)
        began = time.monotonic()
        try:
            self._conn.request(method, path, body=body, headers=headers)
            response = self._conn.getresponse()
            data = response.read()
        except TimeoutError as error:
            self.close()
            self.stats.error("timeout")
            raise HttpError(page) from error
        except (OSError, http.client.HTTPException) as error:
            self.close()
            self.stats.error("connection")
            raise HttpError(page) from error
        self._used = time.monotonic()
        self.stats.record(page, response.status, self._used - began)
        for header in response.headers.get_all("Set-Cookie") or []:
            self._keep_cookie(header)
        if response.will_close:
            self.close()
        if response.status not in expect and response.status < 500:
            self.stats.error(f"unexpected {response.status} on {page}")
        return Answer(response.status, response.headers.get("Location", ""),
                      data.decode("utf-8", errors="replace"))

    def _keep_cookie(self, header: str) -> None:
        pair, _, attributes = header.partition(";")
        name, _, value = pair.strip().partition("=")
        lowered = attributes.lower()
        if "max-age=0" in lowered or "1970" in lowered:
            self.cookies.pop(name, None)
        else:
            self.cookies[name] = value


_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_DELIVERY = re.compile(r'href="/documents/(\d+)"')
_NEXT = re.compile(r'href="(/documents\?[^"]*after=[^"]*)" rel="next"')
_SMS_CODE = re.compile(r"\b(\d{6})\b")


def csrf_token(html: str) -> str:
    match = _CSRF.search(html)
    if match is None:
        raise HttpError("no csrf_token in the form")
    return match.group(1)


def delivery_ids(html: str) -> set[int]:
    return {int(i) for i in _DELIVERY.findall(html)}


def next_page(html: str) -> str | None:
    match = _NEXT.search(html)
    return match.group(1).replace("&amp;", "&") if match else None


# --- the cast -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SoakDoctor:
    id: int
    gln: str
    login: str
    password: str
    mobile: str
    #: DPI ids of the patients who consented to this doctor.
    patients: tuple[str, ...]


@dataclass
class Cast:
    doctors: list[SoakDoctor]
    token: str
    patients: dict[str, dict[str, str]]  # DPI id -> the API's patient object
    #: DPI id -> GLNs of the doctors the patient consented to (some patients have two).
    recipients_of: dict[str, list[str]]


def soak_environment(options: SoakOptions, port: int = 0,
                     twilio: dict[str, str] | None = None) -> dict[str, str]:
    """The app's environment: the production profile on the soak's database and Redis db."""
    env = {
        "RELAIS_ENV": "production",
        "SECRET_KEY": BENCH_SECRET_KEY,
        "DOCUMENT_KEYS": BENCH_DOCUMENT_KEYS,
        "DATABASE_URL": options.database_url,
        "REDIS_URL": options.redis_url,
        "SAML_DEV_IDP": "0",
        # SMTP never reached (the soak's doctors get no email); Twilio replaced by the local
        # server while gunicorn runs (``twilio`` below).
        **PRODUCTION_SERVICES,
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "WARNING",
        # All 200 doctors sign in from 127.0.0.1 within a minute or so: in production they
        # come from as many addresses. The per-account limit is left as it is.
        "RATELIMIT_SIGNIN_PER_ADDRESS": "5000 per minute;50000 per hour",
    }
    if port:
        env["GUNICORN_BIND"] = f"127.0.0.1:{port}"
        env["GUNICORN_WORKERS"] = str(options.workers)
    env.update(twilio or {})
    return env


def prepare_database(url: str) -> None:
    """Drop and create the database, then the real migrations."""
    parsed = make_url(url)
    name = parsed.database
    if not name or not re.fullmatch(r"[a-z0-9_]+", name):
        raise SystemExit(f"refusing database name {name!r}")
    admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    from flask_migrate import upgrade

    from app import create_app
    from app.extensions import db

    app = create_app(soak_environment(SoakOptions(database_url=url)))
    with app.app_context():
        upgrade()
        db.session.remove()
        db.engine.dispose()


def letter_pdf() -> str:
    from app.pdf import make_pdf

    return base64.b64encode(make_pdf(["Lettre de sortie - soak",
                                      "Synthetic data, no patient."])).decode()


def letter_body(document_id: str, patient: dict[str, str], recipients: list[str],
                content: str, *, signed_at: datetime, encounter: str = "outpatient",
                sensitive: bool = False, service: str = "cardiologie") -> dict[str, Any]:
    return {
        "document_id": document_id, "patient": {**patient, "deceased": False},
        "encounter": encounter, "recipients": recipients, "type": "discharge_letter",
        "title": f"Lettre de sortie {document_id[-6:]}", "service": service,
        "author": "Dr Soak", "signed_at": signed_at.isoformat(), "sensitive": sensitive,
        "third_party_data": False, "category": "report", "content_type": "application/pdf",
        "content": content,
    }


def seed_cast(options: SoakOptions, acks: Acks) -> Cast:
    """Doctors, consents and letters through the app's services and API (in this process)."""
    from app import create_app
    from app.audit import CLI
    from app.dispatch.clients import create_client
    from app.extensions import db
    from app.models import Doctor
    from app.staff.enrolment import enrol_sms_doctor

    rng = random.Random(options.seed)
    app = create_app(soak_environment(options))
    family = ["Muster", "Favre", "Rochat", "Meier", "Bonvin", "Dubois", "Keller", "Rossi"]
    given = ["Anna", "Luc", "Claire", "Marc", "Sophie", "Pierre", "Julie", "Nicolas"]
    doctors: list[SoakDoctor] = []
    patients: dict[str, dict[str, str]] = {}
    with app.app_context():
        _, token = create_client("soak-dpi", CLI)
        enrolled = []
        for n in range(options.sessions):
            mobile = f"+4179{n:07d}"
            result = enrol_sms_doctor(gln(90_000 + n), family[n % 8], f"{given[n // 8 % 8]}{n}",
                                      f"soak{n}@example.org", mobile, CLI)
            # These doctors chose their own password long ago: the soak measures browsing,
            # not the first sign-in's forced change.
            result.doctor.must_change_password = False
            enrolled.append(result)
        db.session.commit()
        for result in enrolled:
            own = []
            for k in range(options.patients_per_doctor):
                dpi = f"SOAK-P{len(patients):06d}"
                patients[dpi] = {"id": dpi, "family_name": rng.choice(family),
                                 "given_name": rng.choice(given),
                                 "birth_date": f"19{rng.randrange(30, 99)}-0{k + 1}-1{k}"}
                own.append(dpi)
            enrolled_doctor: Doctor = result.doctor
            doctors.append(SoakDoctor(enrolled_doctor.id, enrolled_doctor.gln, result.login,
                                      result.temporary_password, enrolled_doctor.mobile or "",
                                      tuple(own)))
        db.session.remove()
        db.engine.dispose()

    recipients_of = {dpi: [d.gln] for d in doctors for dpi in d.patients}
    # Every other doctor's first patient also sees the next doctor: letters with two recipients.
    for first, second in zip(doctors[0::2], doctors[1::2], strict=False):
        recipients_of[first.patients[0]].append(second.gln)
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    for dpi, glns in recipients_of.items():
        person = patients[dpi]
        for doctor_gln in glns:
            answer = client.put(
                f"/api/v1/patients/{dpi}/consents/{doctor_gln}", base_url="https://127.0.0.1",
                headers=headers,
                json={"electronic_sending": True, "designation": "treating_doctor",
                      "given_by": "patient", "recorded_by": "soak",
                      "patient": {k: person[k] for k in ("family_name", "given_name",
                                                         "birth_date")}})
            if answer.status_code not in (200, 201):
                raise SystemExit(f"consent refused: {answer.status_code} {answer.get_json()}")
    content = letter_pdf()
    signed = datetime.now(UTC) - timedelta(days=3)
    for doctor in doctors:
        for k in range(options.letters_per_doctor):
            document_id = f"{PREFIX}-SEED-{doctor.id:05d}-{k}"
            body = letter_body(document_id, patients[doctor.patients[k % len(doctor.patients)]],
                               [doctor.gln], content, signed_at=signed - timedelta(hours=k))
            answer = client.post("/api/v1/documents", json=body, headers=headers,
                                 base_url="https://127.0.0.1")
            if answer.status_code != 201:
                raise SystemExit(f"seed letter refused: {answer.status_code}")
            acks.add(document_id, answer.get_json())
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
    return Cast(doctors, token, patients, recipients_of)


# --- what the API acknowledged, and the loss check ----------------------------------------------


class Acks:
    """document_id -> the recipients the API answered for (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.recipients: dict[str, list[str]] = {}
        self.held_answers = 0

    def add(self, document_id: str, answer: dict[str, Any]) -> None:
        glns = [d["recipient"] for d in answer.get("deliveries", [])]
        with self._lock:
            self.recipients[document_id] = glns
            self.held_answers += sum(1 for d in answer.get("deliveries", [])
                                     if d.get("status") == "held")


@dataclass(frozen=True)
class Tally:
    acknowledged_documents: int
    acknowledged_deliveries: int
    lost: int
    duplicated: int
    #: Stored rows nobody acknowledged (a request that timed out after the commit): not an
    #: error for the DPI, which retries and gets the stored answer; shown for the record.
    unacknowledged: int


def stored_deliveries(conn: Connection, prefix: str) -> list[tuple[str, str]]:
    """(document_id, recipient GLN) of every stored delivery of the run's letters."""
    rows = conn.execute(text(
        "SELECT documents.document_id, deliveries.recipient_gln FROM deliveries "
        "JOIN documents ON documents.id = deliveries.document_id "
        "WHERE documents.document_id LIKE :pattern"), {"pattern": prefix + "-%"})
    return [(str(d), str(g)) for d, g in rows]


def stored_documents(conn: Connection, prefix: str) -> list[str]:
    rows = conn.execute(text("SELECT document_id FROM documents WHERE document_id LIKE :p"),
                        {"p": prefix + "-%"})
    return [str(r[0]) for r in rows]


def tally(acknowledged: dict[str, list[str]], deliveries: list[tuple[str, str]],
          documents: list[str]) -> Tally:
    """Lost: acknowledged (document, recipient) pairs without a delivery row, and acknowledged
    documents not stored. Duplicated: rows beyond the first of any (document, recipient) and
    documents stored more than once. The schema's unique constraints (documents.document_id,
    deliveries (document_id, recipient_gln)) already forbid duplicates: they are counted
    anyway, so that a migration dropping one would show here."""
    rows = Counter(deliveries)
    stored = Counter(documents)
    wanted = {(d, g) for d, glns in acknowledged.items() for g in glns}
    lost = sum(1 for pair in wanted if pair not in rows)
    lost += sum(1 for d in acknowledged if d not in stored)
    duplicated = sum(n - 1 for n in rows.values()) + sum(n - 1 for n in stored.values())
    unacknowledged = sum(1 for d in stored if d not in acknowledged)
    return Tally(len(acknowledged), len(wanted), lost, duplicated, unacknowledged)


def check_deliveries(conn: Connection, acknowledged: dict[str, list[str]],
                     prefix: str = PREFIX) -> Tally:
    return tally(acknowledged, stored_deliveries(conn, prefix), stored_documents(conn, prefix))


def overdue_held(conn: Connection, now: datetime) -> int:
    """Held deliveries whose release time has passed."""
    return int(conn.execute(text(
        "SELECT count(*) FROM deliveries WHERE status = 'held' AND release_at <= :now"),
        {"now": now}).scalar_one())


def visible_ids(conn: Connection, doctor_id: int) -> set[int]:
    """What Mes documents must list for this doctor (app/inbox/document_queries.py's rule)."""
    from app.states import VISIBLE_TO_DOCTOR

    rows = conn.execute(text(
        "SELECT id, status, delivered_at FROM deliveries WHERE doctor_id = :d "
        "AND reported_not_my_patient_at IS NULL"), {"d": doctor_id})
    return {int(i) for i, status, delivered in rows
            if status in VISIBLE_TO_DOCTOR or (status == "retracted" and delivered is not None)}


# --- the processes ------------------------------------------------------------------------------


@contextmanager
def process(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A child in its own process group, ended (SIGTERM, then SIGKILL) whatever happens."""
    with log.open("ab") as out:
        child = subprocess.Popen(args, cwd=ROOT, env={**os.environ, **env},
                                 stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                 start_new_session=True)
    try:
        yield child
    finally:
        if child.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=30)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=10)


def wait_for_workers(server: Server, workers: int, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise SystemExit(f"gunicorn stopped: see {log}")
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=2)
        try:
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200 and len(server.workers()) == workers:
                return
        except (OSError, http.client.HTTPException):
            pass
        finally:
            conn.close()
        time.sleep(0.3)
    raise SystemExit(f"gunicorn did not answer /healthz: see {log}")


def free_port() -> int:
    return free_ports(1, PORTS)[0]


# --- the load -------------------------------------------------------------------------------------


def sign_in(doctor: SoakDoctor, port: int, stats: Stats, sms_to: Callable[[str], str],
            give_up: threading.Event) -> Browser:
    """Login and password, then the code the Twilio server received for this phone."""
    if give_up.is_set():
        raise HttpError("sign-ins took too long")
    browser = Browser(port, stats)
    page = browser.request("sign-in", "GET", "/auth/login")
    answer = browser.request("sign-in", "POST", "/auth/login", expect=(303,), form={
        "csrf_token": csrf_token(page.body), "login": doctor.login,
        "password": doctor.password, "next": "/documents"})
    if not answer.location.endswith("/auth/code"):
        raise HttpError(f"password step refused ({answer.status})")
    code = sms_to(doctor.mobile)
    page = browser.request("sign-in", "GET", "/auth/code")
    answer = browser.request("sign-in", "POST", "/auth/code", expect=(303,),
                             form={"csrf_token": csrf_token(page.body), "code": code})
    if not answer.location.endswith("/documents"):
        raise HttpError(f"code step refused ({answer.status})")
    return browser


class Session(threading.Thread):
    """One signed-in doctor, browsing until told to stop."""

    def __init__(self, browser: Browser, doctor: SoakDoctor, options: SoakOptions,
                 stop: threading.Event, rng: random.Random) -> None:
        super().__init__(name=f"soak-session-{doctor.id}", daemon=True)
        self.browser, self.doctor, self.options = browser, doctor, options
        self.stop, self.rng = stop, rng
        self.seen: set[int] = set()
        self.next_link: str | None = None

    def think(self) -> bool:
        return not self.stop.wait(self.rng.uniform(self.options.think_min, self.options.think_max))

    def get(self, page: str, path: str) -> Answer | None:
        try:
            answer = self.browser.request(page, "GET", path)
        except HttpError:
            return None
        if self.browser.stats.total >= self.options.max_requests:
            self.stop.set()
        return answer

    def documents_path(self) -> str:
        roll = self.rng.random()
        if roll < 0.15 and self.next_link:
            return self.next_link
        if roll < 0.25:
            return "/documents?" + urlencode({"view": "all", "type": "discharge_letter"})
        if roll < 0.32:
            return "/documents?view=unread"
        return "/documents"

    def run(self) -> None:
        while not self.stop.is_set():
            answer = self.get("documents", self.documents_path())
            if answer is not None and answer.status == 200:
                self.seen |= delivery_ids(answer.body)
                self.next_link = next_page(answer.body) or self.next_link
            if not self.think():
                break
            self.get("patients", "/patients")
            if not self.think():
                break
            if self.seen:
                delivery = self.rng.choice(sorted(self.seen))
                self.get("viewer", f"/documents/{delivery}")
                if not self.think():
                    break
                self.get("content", f"/documents/{delivery}/content")
                if not self.think():
                    break
        self.browser.close()


class Ingest(threading.Thread):
    """The DPI: letters at a steady rate, retried on a failure as the DPI would."""

    def __init__(self, cast: Cast, port: int, options: SoakOptions, stop: threading.Event,
                 stats: Stats, acks: Acks) -> None:
        super().__init__(name="soak-ingest", daemon=True)
        self.cast, self.port, self.options = cast, port, options
        self.stop, self.stats, self.acks = stop, stats, acks
        self.rng = random.Random(options.seed + 1)
        self.content = letter_pdf()
        self.sent = 0
        #: Times all the connections were still busy a whole HTTP timeout after a letter's turn.
        self.late = 0
        self.began = time.monotonic()

    def body(self, n: int) -> dict[str, Any]:
        rng = self.rng
        doctor = rng.choice(self.cast.doctors)
        dpi = rng.choice(doctor.patients)
        recipients = self.cast.recipients_of[dpi]
        now = datetime.now(UTC)
        roll = rng.random()
        kind: dict[str, Any] = {"signed_at": now - timedelta(minutes=5)}
        if roll < 0.15:
            # Inpatient, sensitive: held until signed_at + 24 h, which falls within the run.
            within = rng.uniform(2, max(3.0, self.options.duration * 0.6))
            kind = {"signed_at": now - timedelta(hours=24) + timedelta(seconds=within),
                    "encounter": "inpatient", "sensitive": True}
        elif roll < 0.25:
            kind = {"signed_at": now, "sensitive": True}  # held for 7 days: legitimately held
        elif roll < 0.28:
            kind["service"] = "pedopsychiatrie"  # blocked by the default policy
        return letter_body(f"{PREFIX}-RUN-{n:07d}", self.cast.patients[dpi], recipients,
                           self.content, **kind)

    def post(self, payload: str) -> dict[str, Any] | None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=HTTP_TIMEOUT)
        began = time.monotonic()
        try:
            conn.request("POST", "/api/v1/documents", body=payload, headers={
                "Authorization": f"Bearer {self.cast.token}", "Content-Type": "application/json"})
            response = conn.getresponse()
            data = response.read()
        except TimeoutError:
            self.stats.error("timeout")
            return None
        except (OSError, http.client.HTTPException):
            self.stats.error("connection")
            return None
        finally:
            conn.close()
        self.stats.record("ingest", response.status, time.monotonic() - began)
        if response.status in (200, 201):
            answer: dict[str, Any] = json.loads(data)
            return answer
        if response.status < 500:
            self.stats.error(f"unexpected {response.status} on ingest")
        return None

    def send(self, body: dict[str, Any]) -> None:
        payload = json.dumps(body)
        for attempt in range(3):  # the same body again: 200 and the stored answer
            answer = self.post(payload)
            if answer is not None:
                self.acks.add(body["document_id"], answer)
                return
            if self.stop.wait(0.5 * (attempt + 1)):
                return

    def run(self) -> None:
        """Letters on a fixed schedule, each posted by one of a few connections, so that a
        slow answer does not slow the stream (the DPI's interface engine sends in parallel)."""
        interval = 1.0 / self.options.ingest_rate
        in_flight = threading.Semaphore(INGEST_CONNECTIONS)
        with ThreadPoolExecutor(max_workers=INGEST_CONNECTIONS,
                                thread_name_prefix="soak-ingest") as pool:
            while not self.stop.is_set():
                due = self.began + self.sent * interval
                if self.stop.wait(max(0.0, due - time.monotonic())):
                    break
                if not in_flight.acquire(timeout=HTTP_TIMEOUT):
                    self.late += 1
                    continue
                body = self.body(self.sent)
                self.sent += 1

                def post_one(body: dict[str, Any] = body) -> None:
                    try:
                        self.send(body)
                    finally:
                        in_flight.release()

                pool.submit(post_one)


# --- the run ------------------------------------------------------------------------------------


def run_soak(options: SoakOptions) -> dict[str, Any]:
    options.log_dir.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
                              "options": options, "failures": []}
    began = time.monotonic()
    print(f"soak: database {make_url(options.database_url).database}", file=sys.stderr)
    prepare_database(options.database_url)
    acks = Acks()
    cast = seed_cast(options, acks)
    report["seeded_letters"] = len(acks.recipients)
    stats = Stats()
    stop = threading.Event()
    port = free_port()
    for name in ("TWILIO_EDGE", "TWILIO_REGION"):
        os.environ.pop(name, None)
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"
    with TwilioServer() as twilio:
        env = soak_environment(options, port, twilio.config())
        env.update({**GUNICORN_ENV, "GUNICORN_THREADS": os.environ.get("GUNICORN_THREADS", "4")})
        env = {k: str(v) for k, v in env.items()}
        gunicorn_log = options.log_dir / "gunicorn.log"
        worker_log = options.log_dir / "worker.log"
        gunicorn = [str(Path(sys.executable).parent / "gunicorn"), "-c",
                    str(ROOT / "gunicorn.conf.py"), "wsgi:app"]
        worker = [sys.executable, "-m", "flask", "--app", "wsgi", "worker",
                  "--interval", str(options.worker_interval)]
        sessions: list[Session] = []
        browsers: dict[int, Browser] = {}
        with process(gunicorn, env, gunicorn_log) as master, \
                process(worker, env, worker_log) as _worker:
            server = Server(master, port)
            try:
                wait_for_workers(server, options.workers, gunicorn_log)
                report["workers"] = options.workers

                def sms_to(mobile: str) -> str:
                    deadline = time.monotonic() + 20
                    while time.monotonic() < deadline:
                        for message in reversed(twilio.messages):
                            if message.to == mobile:
                                match = _SMS_CODE.search(message.body)
                                if match:
                                    return match.group(1)
                        time.sleep(0.1)
                    raise HttpError("no SMS arrived")

                print(f"soak: signing in {len(cast.doctors)} doctors", file=sys.stderr)
                signed_in_began = time.monotonic()
                # Bounded: about 0.5 s of argon2 per sign-in on a busy 2-core machine.
                give_up = threading.Event()
                sign_in_deadline = time.monotonic() + 120 + 3 * len(cast.doctors)
                with ThreadPoolExecutor(max_workers=max(2, 4 * options.workers)) as pool:
                    futures = {d.id: pool.submit(sign_in, d, port, stats, sms_to, give_up)
                               for d in cast.doctors}
                    for doctor_id, future in futures.items():
                        try:
                            browsers[doctor_id] = future.result(
                                timeout=max(0.1, sign_in_deadline - time.monotonic()))
                        except HttpError:
                            stats.error("sign-in failed")
                        except TimeoutError:
                            give_up.set()  # the rest fail at once: the run still ends
                            stats.error("sign-in timed out")
                report["signed_in"] = len(browsers)
                report["sign_in_seconds"] = round(time.monotonic() - signed_in_began, 1)
                report["sms_sent"] = len(twilio.messages)
                report["rss_after_sign_in"] = [rss_mb(p) for p in server.workers()]

                rng = random.Random(options.seed)
                for doctor in cast.doctors:
                    if doctor.id in browsers:
                        sessions.append(Session(browsers[doctor.id], doctor, options, stop,
                                                random.Random(rng.random())))
                ingest = Ingest(cast, port, options, stop, stats, acks)
                load_began = time.monotonic()
                print(f"soak: {len(sessions)} sessions for {options.duration:.0f} s",
                      file=sys.stderr)
                for session in sessions:
                    session.start()
                    time.sleep(options.think_max / max(1, len(sessions)))  # spread the starts
                ingest.start()
                warmup = min(30.0, options.duration * 0.1)
                stop.wait(warmup)
                report["rss_start"] = [rss_mb(p) for p in server.workers()]
                report["warmup_s"] = warmup
                end = load_began + options.duration
                while not stop.is_set() and time.monotonic() < end:
                    stop.wait(min(10.0, max(0.0, end - time.monotonic())))
                    print(f"soak: {stats.total} requests, {stats.server_errors()} 5xx, "
                          f"{len(acks.recipients)} letters", file=sys.stderr)
                report["rss_end"] = [rss_mb(p) for p in server.workers()]
                stop.set()
                report["load_seconds"] = round(time.monotonic() - load_began, 1)
                for thread in [*sessions, ingest]:
                    thread.join(timeout=HTTP_TIMEOUT + 5)
                report["threads_left"] = sum(1 for t in [*sessions, ingest] if t.is_alive())
                ended = datetime.now(UTC)
                report["ingested"] = ingest.sent
                report["ingest_late"] = ingest.late
                report["ingest_acknowledged"] = len(acks.recipients) - report["seeded_letters"]

                engine = create_engine(options.database_url)
                try:
                    # The worker runs a round every interval: give it three to catch up.
                    deadline = time.monotonic() + 3 * options.worker_interval + 5
                    with engine.connect() as conn:
                        while overdue_held(conn, ended) and time.monotonic() < deadline:
                            conn.rollback()
                            time.sleep(0.5)
                        conn.rollback()
                        report["overdue_held"] = overdue_held(conn, ended)
                        report["released"] = int(conn.execute(text(
                            "SELECT count(*) FROM audit_events "
                            "WHERE action = 'delivery.released'")).scalar_one())
                        report["still_held"] = int(conn.execute(text(
                            "SELECT count(*) FROM deliveries WHERE status = 'held'")).scalar_one())
                        report["tally"] = check_deliveries(conn, acks.recipients)
                        report["held_answers"] = acks.held_answers
                        sample = random.Random(options.seed).sample(
                            sorted(browsers), min(options.sample_doctors, len(browsers)))
                        report["visibility"] = sample_visibility(conn, sample, browsers)
                finally:
                    engine.dispose()
            finally:
                stop.set()
                for browser in browsers.values():
                    browser.close()
    audit = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "audit", "verify"],
                           cwd=ROOT, env={**os.environ, **soak_environment(options)},
                           capture_output=True, text=True, timeout=600, check=False)
    report["audit_ok"] = audit.returncode == 0
    report["audit_output"] = (audit.stdout + audit.stderr).strip().splitlines()[-1:]
    report["stats"] = stats
    report["seconds"] = round(time.monotonic() - began)
    report["failures"] = failures(report, options)
    return report


def sample_visibility(conn: Connection, doctor_ids: list[int],
                      browsers: dict[int, Browser]) -> dict[str, int]:
    """For each sampled doctor: every delivery the database says is visible is listed in Mes
    documents (all pages, ``view=all``), over HTTP in that doctor's session."""
    missing = extra = checked = 0
    for doctor_id in doctor_ids:
        browser = browsers[doctor_id]
        listed: set[int] = set()
        path: str | None = "/documents?view=all"
        pages = 0
        while path and pages < 100:
            answer = browser.request("final check", "GET", path)
            if answer.status != 200:
                break
            listed |= delivery_ids(answer.body)
            path = next_page(answer.body)
            pages += 1
        wanted = visible_ids(conn, doctor_id)
        missing += len(wanted - listed)
        extra += len(listed - wanted)
        checked += len(wanted)
    return {"doctors": len(doctor_ids), "deliveries": checked, "missing": missing,
            "extra": extra}


def failures(report: dict[str, Any], options: SoakOptions) -> list[str]:
    stats: Stats = report["stats"]
    tally_: Tally = report["tally"]
    out = []
    if stats.server_errors():
        out.append(f"{stats.server_errors()} answers 5xx")
    if tally_.lost:
        out.append(f"{tally_.lost} deliveries lost")
    if tally_.duplicated:
        out.append(f"{tally_.duplicated} deliveries duplicated")
    if report["overdue_held"]:
        out.append(f"{report['overdue_held']} held deliveries past their release time")
    if report["visibility"]["missing"] or report["visibility"]["extra"]:
        out.append(f"Mes documents disagrees with the database: {report['visibility']}")
    if report["signed_in"] != options.sessions:
        out.append(f"only {report['signed_in']} of {options.sessions} doctors signed in")
    if not report["audit_ok"]:
        out.append(f"audit chain broken: {report['audit_output']}")
    for n, (start, end) in enumerate(zip(report["rss_start"], report["rss_end"], strict=False)):
        if end - start > MEMORY_BOUND_MB or end > start * (1 + MEMORY_BOUND_SHARE):
            out.append(f"worker {n} grew from {start} MB to {end} MB")
    if len(report["rss_end"]) != options.workers:
        out.append(f"{len(report['rss_end'])} workers at the end, {options.workers} expected")
    return out


# --- the table ------------------------------------------------------------------------------------


PAGES = ["sign-in", "documents", "patients", "viewer", "content", "ingest", "final check"]


def markdown(report: dict[str, Any]) -> str:
    options: SoakOptions = report["options"]
    stats: Stats = report["stats"]
    tally_: Tally = report["tally"]
    errors = ", ".join(f"{k}: {n}" for k, n in sorted(stats.errors.items())) or "none"
    lines = [
        f"# Relais soak, {report['date']}", "",
        f"{os.cpu_count()} CPUs; gunicorn {report['workers']} workers (gthread, "
        f"{os.environ.get('GUNICORN_THREADS', '4')} threads, production profile); "
        f"think time {options.think_min}-{options.think_max} s; worker round every "
        f"{options.worker_interval} s (RQ).", "",
        "| figure | value |", "|---|---|",
        f"| whole command (database, seeding, sign-ins, load, checks) | {report['seconds']} s; "
        f"server and worker logs in {options.log_dir} |",
        f"| duration of the load | {report['load_seconds']} s (asked {options.duration:.0f} s, "
        f"max {options.max_requests} requests) |",
        f"| sessions signed in (password + SMS code) | {report['signed_in']} of "
        f"{options.sessions}, in {report['sign_in_seconds']} s, {report['sms_sent']} SMS |",
        f"| requests | {stats.total} |",
        f"| 5xx answers | {stats.server_errors()} |",
        f"| other errors (timeouts, unexpected 4xx) | {errors} |",
        f"| letters posted by the DPI during the load | {report['ingested']} at "
        f"{options.ingest_rate}/s, {report['ingest_acknowledged']} acknowledged, "
        f"{report['ingest_late']} late (+{report['seeded_letters']} seeded before) |",
        f"| acknowledged documents / deliveries | {tally_.acknowledged_documents} / "
        f"{tally_.acknowledged_deliveries} |",
        f"| deliveries lost | {tally_.lost} |",
        f"| deliveries duplicated | {tally_.duplicated} |",
        f"| stored but never acknowledged | {tally_.unacknowledged} |",
        f"| held at ingest / released by the worker / still held (not yet due) | "
        f"{report['held_answers']} / {report['released']} / {report['still_held']} |",
        f"| held past their release time | {report['overdue_held']} |",
        f"| Mes documents vs database ({report['visibility']['doctors']} doctors, "
        f"{report['visibility']['deliveries']} deliveries) | "
        f"{report['visibility']['missing']} missing, {report['visibility']['extra']} extra |",
        f"| audit chain | {'verified' if report['audit_ok'] else 'BROKEN'} |",
        f"| worker RSS after sign-ins (MB) | {report['rss_after_sign_in']} |",
        f"| worker RSS after {report['warmup_s']:.0f} s warm-up (start, MB) | "
        f"{report['rss_start']} |",
        f"| worker RSS at the end (MB) | {report['rss_end']} |",
        f"| memory bound | each worker grows < {MEMORY_BOUND_MB:.0f} MB and < "
        f"{MEMORY_BOUND_SHARE:.0%} after the warm-up |",
        "", "| page | requests | 5xx | p50 ms | p95 ms | p99 ms |", "|---|---|---|---|---|---|",
    ]
    for page in PAGES:
        values = stats.latencies.get(page, [])
        fives = sum(n for (p, status), n in stats.statuses.items() if p == page and status >= 500)
        lines.append(f"| {page} | {len(values)} | {fives} | {percentile(values, 0.50)} | "
                     f"{percentile(values, 0.95)} | {percentile(values, 0.99)} |")
    lines += ["", "Result: " + ("PASS" if not report["failures"]
                                else "FAIL: " + "; ".join(report["failures"])), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Relais soak (figures; exit 1 on a failure)")
    defaults = SoakOptions()
    parser.add_argument("--duration", type=float, default=defaults.duration, help="seconds")
    parser.add_argument("--sessions", type=int, default=defaults.sessions)
    parser.add_argument("--ingest-rate", type=float, default=defaults.ingest_rate,
                        help="letters per second")
    parser.add_argument("--max-requests", type=int, default=defaults.max_requests)
    parser.add_argument("--think-min", type=float, default=defaults.think_min)
    parser.add_argument("--think-max", type=float, default=defaults.think_max)
    parser.add_argument("--workers", type=int, default=defaults.workers,
                        help="gunicorn workers (GUNICORN_WORKERS, else 2)")
    parser.add_argument("--output", type=Path, default=RESULTS / "soak.md")
    args = parser.parse_args(argv)
    options = SoakOptions(duration=args.duration, sessions=args.sessions,
                          ingest_rate=args.ingest_rate, max_requests=args.max_requests,
                          think_min=args.think_min, think_max=args.think_max,
                          workers=args.workers)
    report = run_soak(options)
    table = markdown(report)
    print(table)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(table)
    print(f"written: {args.output}", file=sys.stderr)
    sys.exit(1 if report["failures"] else 0)


if __name__ == "__main__":
    main()
