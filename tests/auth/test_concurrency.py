"""The lockout and the per-code tries hold when the attempts come all at once (issue 14, 6).

An attacker who has the password (or none of it) sends 30 sign-in steps at the same instant,
from several browsers, hoping that some slip between the check "is the account locked?" and
the count of the failure. Each attempt is counted in the database, atomically, *before* the
factor is looked at, so that no more factors are ever evaluated than the lockout (10) and the
code's own tries (5) allow. The evaluations are counted where they happen: the comparison of
a typed code with the stored HMAC, the argon2 check of the account's own hash, the TOTP check.

Real threads, each with its own browser (a Flask test client, its own app context and
database session), meet at a barrier and post at once; on PostgreSQL they really run side by
side in the database, and a last test does the same over HTTP against gunicorn with several
worker processes. Every barrier and join has a timeout, and an exception in a thread fails
the test. Each test runs on SQLite and, with TEST_DATABASE_URL, on PostgreSQL.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pyotp
import pytest
import requests
from argon2 import PasswordHasher
from flask import Flask, has_app_context
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.test import TestResponse

from app.auth import codes, totp
from app.auth.lockout import LOCKOUT_FAILURES, is_locked
from app.auth.staff_factors import totp_secret
from app.extensions import db
from app.models import Doctor, OneTimeCode, StaffUser
from app.models.base import utcnow
from tests.conftest import (
    TEST_KEY,
    make_app,
    postgres_url,
    private_postgres_database,
    skip_or_fail,
    upgrade,
)
from tests.support.factories import PASSWORD, make_sms_doctor, make_staff
from tests.support.login import IsolatedClient, code_from, post_login, token
from tests.support.servers import AppServer, free_ports
from tests.support.trail import events
from tests.support.twilio_server import TwilioServer

T = TypeVar("T")

#: Attempts sent at the same instant.
AT_ONCE = 30
#: The longest a thread may wait at the barrier, and a join may wait for a thread.
WAIT_SECONDS = 60.0


def at_once(tasks: list[Callable[[], T]]) -> list[T]:
    """Runs every task in its own thread, all released together; returns their results.

    A task that raises fails the test (the first error is raised here); a thread that
    outlives the timeout fails it too, so nothing can hang.
    """
    barrier = threading.Barrier(len(tasks))
    results: list[Any] = [None] * len(tasks)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait(timeout=WAIT_SECONDS)
            results[index] = tasks[index]()
        except BaseException as error:  # reported in the test's thread below
            errors.append(error)
            barrier.abort()  # the others stop waiting at once

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(tasks))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=WAIT_SECONDS)
    assert not any(thread.is_alive() for thread in threads), "a thread did not finish in time"
    if errors:
        raise errors[0]
    if has_app_context():
        db.session.expire_all()  # the test reads what the threads wrote
    return results


class Counter:
    """Counts calls of a function, from every thread."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def add(self) -> None:
        with self._lock:
            self.count += 1


@pytest.fixture()
def open_limits(app: Flask) -> None:
    """Rate limits out of the way: what is tested here is the database's count alone."""
    app.config["RATELIMIT_SIGNIN_PER_ADDRESS"] = "10000 per minute"
    app.config["RATELIMIT_SIGNIN_PER_ACCOUNT"] = "10000 per minute"


@pytest.fixture()
def browsers(app: Flask) -> Iterator[Callable[[], FlaskClient]]:
    """A new browser each call: a test client whose requests run in app contexts of their own
    (in the test's thread as in the others)."""
    app.test_client_class = IsolatedClient
    yield app.test_client


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


def code_post(browser: FlaskClient, code: str) -> Callable[[], TestResponse]:
    data = {"csrf_token": token(browser, "/auth/code"), "code": code}
    return lambda: browser.post("/auth/code", data=data)


def count_code_evaluations(monkeypatch: pytest.MonkeyPatch) -> Counter:
    """Every comparison of a typed code with the stored HMAC goes through ``code_hash``."""
    counter = Counter()
    real = codes.code_hash

    def counting(handle: str, code: str) -> str:
        counter.add()
        return real(handle, code)

    monkeypatch.setattr(codes, "code_hash", counting)
    return counter


def assert_no_server_error(answers: list[TestResponse]) -> int:
    """No answer is an error of ours; returns how many were 503: SQLite's writers wait for
    one another at most 5 s, and one that waited longer is refused (fails closed)."""
    statuses = sorted({answer.status_code for answer in answers})
    assert set(statuses) <= {200, 303, 503}, statuses
    return sum(1 for answer in answers if answer.status_code == 503)


# --- the lockout: 10 evaluations at most --------------------------------------------------


def test_thirty_wrong_codes_at_once_get_at_most_ten_evaluations(
    app: Flask, open_limits: None, browsers: Callable[[], FlaskClient], twilio: TwilioServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given an attacker with the password, who opened 6 sign-ins (6 codes of 5 tries each:
    # the codes' own tries would allow 30 guesses, only the lockout stands in the way)
    doctor = make_sms_doctor()
    tasks = []
    for _ in range(AT_ONCE // codes.MAX_TRIES):
        browser = browsers()
        assert post_login(browser, "cmuller").headers["Location"] == "/auth/code"
        guess = wrong(code_from(twilio))
        tasks.extend(code_post(browser, guess) for _ in range(codes.MAX_TRIES))
    assert len(tasks) == AT_ONCE
    evaluated = count_code_evaluations(monkeypatch)

    # When 30 wrong codes arrive at the same instant
    answers = at_once(tasks)

    # Then at most 10 were looked at, each one counted and audited, and the account is locked
    busy = assert_no_server_error(answers)
    assert evaluated.count <= LOCKOUT_FAILURES
    failed = [e for e in events("auth.failed") if e.details["stage"] == "code"]
    assert len(failed) == evaluated.count
    stored = db.session.get(Doctor, doctor.id)
    assert stored is not None
    assert stored.failed_sign_ins == LOCKOUT_FAILURES  # every place was taken
    assert is_locked(stored)
    # Every other attempt was refused without a look at its code
    refused = [e for e in events("auth.refused") if e.details["reason"] == "locked"]
    assert len(failed) + len(refused) + busy == AT_ONCE
    if not busy:
        assert evaluated.count == LOCKOUT_FAILURES
        assert len(events("auth.locked")) == 1


def test_thirty_wrong_codes_at_once_get_at_most_five_tries_of_one_code(
    app: Flask, open_limits: None, browsers: Callable[[], FlaskClient], twilio: TwilioServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given one sign-in, its code unknown to the attacker
    make_sms_doctor()
    browser = browsers()
    post_login(browser, "cmuller")
    guess = wrong(code_from(twilio))
    tasks = [code_post(browser, guess) for _ in range(AT_ONCE)]
    evaluated = count_code_evaluations(monkeypatch)

    # When 30 guesses of it arrive at once
    answers = at_once(tasks)

    # Then at most 5 were compared with the code, and each counted a try
    busy = assert_no_server_error(answers)
    assert evaluated.count <= codes.MAX_TRIES
    challenge = db.session.scalars(select(OneTimeCode)).one()
    assert challenge.tries == evaluated.count
    assert len(events("auth.failed")) == evaluated.count
    if not busy:
        assert evaluated.count == codes.MAX_TRIES
    # The account is not locked by one code's tries, and the others were told so
    stored = db.session.scalars(select(Doctor)).one()
    assert stored.failed_sign_ins == evaluated.count and not is_locked(stored)


def test_the_right_code_among_thirty_wrong_ones_counts_within_the_five_tries(
    app: Flask, open_limits: None, browsers: Callable[[], FlaskClient], twilio: TwilioServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given one sign-in, and 29 wrong guesses sent with the right code at once
    make_sms_doctor()
    browser = browsers()
    post_login(browser, "cmuller")
    code = code_from(twilio)
    tasks = [code_post(browser, wrong(code)) for _ in range(AT_ONCE - 1)]
    tasks.append(code_post(browser, code))
    evaluated = count_code_evaluations(monkeypatch)

    answers = at_once(tasks)

    # Then no more than 5 were compared; the right one signed in only if it was one of them
    assert_no_server_error(answers)
    assert 0 < evaluated.count <= codes.MAX_TRIES
    challenge = db.session.scalars(select(OneTimeCode)).one()
    signed_in = [e for e in events("auth.signed_in") if e.details["method"] == "sms"]
    assert len(signed_in) == (1 if challenge.used_at is not None else 0)
    assert challenge.tries == evaluated.count


def test_thirty_wrong_passwords_at_once_get_at_most_ten_argon2_checks(
    app: Flask, open_limits: None, browsers: Callable[[], FlaskClient],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    doctor = make_sms_doctor()
    assert doctor.password_hash is not None
    own_hash = doctor.password_hash
    tasks = []
    for n in range(AT_ONCE):
        browser = browsers()
        data = {"csrf_token": token(browser), "login": "cmuller", "password": f"guess-{n}"}
        tasks.append(lambda browser=browser, data=data: browser.post("/auth/login", data=data))
    checks = Counter()
    real_verify = PasswordHasher.verify

    def counting(self: PasswordHasher, hash: str, password: Any) -> Any:
        if hash == own_hash:  # the dummy hash of a refused attempt is not the account's
            checks.add()
        return real_verify(self, hash, password)

    monkeypatch.setattr(PasswordHasher, "verify", counting)

    answers = at_once(tasks)

    busy = assert_no_server_error(answers)
    assert checks.count <= LOCKOUT_FAILURES
    assert len(events("auth.failed")) == checks.count
    stored = db.session.get(Doctor, doctor.id)
    assert stored is not None and stored.failed_sign_ins == LOCKOUT_FAILURES
    assert is_locked(stored)
    if not busy:
        assert checks.count == LOCKOUT_FAILURES


def test_thirty_wrong_authenticator_codes_at_once_get_at_most_ten_checks(
    app: Flask, open_limits: None, browsers: Callable[[], FlaskClient],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a staff sign-in at its authenticator step (a TOTP code has no tries of its own)
    user = make_staff()
    browser = browsers()
    assert post_login(browser, "m.dupont").headers["Location"] == "/auth/totp"
    secret = totp_secret(user)
    later = pyotp.TOTP(secret).at(utcnow().timestamp() + 3600)  # valid in an hour, not now
    data = {"csrf_token": token(browser, "/auth/totp"), "code": later}
    tasks = [lambda: browser.post("/auth/totp", data=data) for _ in range(AT_ONCE)]
    checks = Counter()
    real_verify = totp.verify

    def counting(*args: Any, **kwargs: Any) -> Any:
        checks.add()
        return real_verify(*args, **kwargs)

    monkeypatch.setattr(totp, "verify", counting)

    answers = at_once(tasks)

    busy = assert_no_server_error(answers)
    assert checks.count <= LOCKOUT_FAILURES
    stored = db.session.get(StaffUser, user.id)
    assert stored is not None and stored.failed_sign_ins == LOCKOUT_FAILURES
    assert is_locked(stored)
    assert len(events("auth.failed")) == checks.count
    if not busy:
        assert checks.count == LOCKOUT_FAILURES


# --- over HTTP, against gunicorn's worker processes on PostgreSQL --------------------------


@pytest.mark.postgres
def test_thirty_wrong_codes_at_once_against_gunicorn_get_at_most_ten_evaluations(
    tmp_path: Path,
) -> None:
    """The same attack as above, on a real server: 3 worker processes of 4 threads each, so the
    attempts are evaluated in several processes at the same instant, sharing PostgreSQL only.
    Evaluations are counted in the audit trail (each wrong code looked at writes one event)."""
    url = postgres_url()
    if url is None:
        skip_or_fail("TEST_DATABASE_URL is not set: the gunicorn test needs PostgreSQL")
    assert url is not None
    with private_postgres_database(url, "lockout") as database_url, TwilioServer() as twilio:
        app = make_app(database_url)
        upgrade(app)
        with app.app_context():
            make_sms_doctor()
            db.session.remove()
        settings = {
            "RELAIS_ENV": "testing",
            "SECRET_KEY": "lockout-test-secret-key-0123456789abcdef",
            "DOCUMENT_KEYS": f"test1:{TEST_KEY}",
            "DATABASE_URL": database_url,
            "MAIL_BACKEND": "console",
            # What is tested is the database's count: the rate limits stay out of the way.
            "RATELIMIT_SIGNIN_PER_ACCOUNT": "10000 per minute",
            "RATELIMIT_SIGNIN_PER_ADDRESS": "10000 per minute",
            "GUNICORN_CMD_ARGS": "--threads 4",
            **{key: str(value) for key, value in twilio.config().items()},
        }
        [port] = free_ports(1, range(18300, 18400))
        with AppServer("lockout", port, settings, tmp_path, workers=3) as server:
            assert "Using worker: gthread" in server.stderr()  # threads in each process
            tasks = []
            for _ in range(AT_ONCE // codes.MAX_TRIES):
                tasks.extend(_http_guesses(server, twilio, codes.MAX_TRIES))
            answers = at_once(tasks)
            assert {answer.status_code for answer in answers} <= {200, 303}, \
                server.stderr_tail()
            assert "Traceback" not in server.stderr(), server.stderr_tail()
        with app.app_context():
            failed = [e for e in events("auth.failed") if e.details["stage"] == "code"]
            refused = [e for e in events("auth.refused") if e.details["reason"] == "locked"]
            doctor = db.session.scalars(select(Doctor)).one()
            assert len(failed) == LOCKOUT_FAILURES
            assert len(failed) + len(refused) == AT_ONCE
            assert doctor.failed_sign_ins == LOCKOUT_FAILURES and is_locked(doctor)
            assert len(events("auth.locked")) == 1
            db.session.remove()
            db.engine.dispose()


def _http_guesses(server: AppServer, twilio: TwilioServer,
                  count: int) -> list[Callable[[], requests.Response]]:
    """Signs in with the password in a new browser; returns ``count`` posts of a wrong code,
    each from its own HTTP client carrying that browser's cookie."""
    sent = len(twilio.messages)
    with requests.Session() as browser:
        browser.trust_env = False
        page = browser.get(f"{server.url}/auth/login", timeout=10).text
        answer = browser.post(f"{server.url}/auth/login", allow_redirects=False, timeout=30,
                              data={"csrf_token": _csrf(page), "login": "cmuller",
                                    "password": PASSWORD})
        assert answer.headers["Location"] == "/auth/code", answer.text
        guess = wrong(_code(twilio.wait_for_messages(sent + 1)[-1].body))
        form = {"csrf_token": _csrf(browser.get(f"{server.url}/auth/code", timeout=10).text),
                "code": guess}
        cookies = browser.cookies.get_dict()

    def post() -> requests.Response:
        with requests.Session() as client:
            client.trust_env = False
            return client.post(f"{server.url}/auth/code", data=form, cookies=cookies,
                               allow_redirects=False, timeout=60)

    return [post for _ in range(count)]


def _csrf(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match is not None
    return match.group(1)


def _code(body: str) -> str:
    match = re.search(r"\b(\d{6})\b", body)
    assert match is not None
    return match.group(1)
