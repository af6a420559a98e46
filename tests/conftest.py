"""Fixtures: the app on SQLite always, and on PostgreSQL when TEST_DATABASE_URL is set.

Every test that takes ``app`` (or ``db_session``, ``client``, ``api`` ...) runs once per
database. The schema is built by the real migrations once per database and session; each
test starts from empty tables and a fresh audit chain head.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

from app import create_app
from app.audit import CLI
from app.auth.limits import limiter
from app.extensions import db
from app.models.base import ZURICH
from app.pdf import make_pdf

UNDER_CI = os.environ.get("CI", "").lower() == "true"


def skip_or_fail(reason: str) -> None:
    """On a laptop a missing service skips; under CI=true it is a failure."""
    if UNDER_CI:
        pytest.fail(f"{reason} (CI=true: a missing service is a failure, not a skip)")
    pytest.skip(reason)


def postgres_url() -> str | None:
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        return None
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if not parsed.database:
        raise RuntimeError("TEST_DATABASE_URL must name a database")
    return parsed.render_as_string(hide_password=False)


@contextmanager
def private_postgres_database(url: str, suffix: str) -> Iterator[str]:
    """A database of this test session's own, beside TEST_DATABASE_URL's, dropped afterwards.

    Several suites (developers, CI) may share one server: each works in its own database.
    """
    parsed = make_url(url)
    name = f"{parsed.database}_{suffix}_{os.getpid()}"
    admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield parsed.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


TEST_KEY = base64.b64encode(b"k" * 32).decode()


class OurPagesClient(FlaskClient):
    """Flask's test client, sending what a browser sends for a request made by one of our own
    pages (``Sec-Fetch-Site: same-origin``) unless the test gives that header itself, or the
    client is made with ``app.test_client(from_our_pages=False)``: a request from nowhere in
    particular, like a script's or a link opened from a mail program."""

    def __init__(self, *args: Any, from_our_pages: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.from_our_pages = from_our_pages

    def open(self, *args: Any, **kwargs: Any) -> Any:
        if self.from_our_pages:
            headers = dict(kwargs.pop("headers", None) or {})
            if not any(name.lower() == "sec-fetch-site" for name in headers):
                headers["Sec-Fetch-Site"] = "same-origin"
            kwargs["headers"] = headers
        return super().open(*args, **kwargs)


def make_app(database_url: str, **overrides: Any) -> Flask:
    config: dict[str, Any] = {
        "RELAIS_ENV": "testing",
        "DATABASE_URL": database_url,
        "SECRET_KEY": "test-secret-key-that-is-long-enough-0123456789",
        "DOCUMENT_KEYS": f"test1:{TEST_KEY}",
        "WTF_CSRF_ENABLED": True,
        "SERVER_NAME": "relais.test",
        # Rate-limit counters of this test run only (CI shares one Redis between runs).
        "RATELIMIT_KEY_PREFIX": f"relais-test-{os.getpid()}",
    }
    config.update(overrides)
    app = create_app(config)
    app.test_client_class = OurPagesClient
    return app


def upgrade(app: Flask) -> None:
    from flask_migrate import upgrade as alembic_upgrade

    with app.app_context():
        alembic_upgrade()


def empty_tables(app: Flask) -> None:
    with app.app_context():
        db.session.remove()
        tables = [t for t in reversed(db.metadata.sorted_tables) if t.name != "audit_head"]
        with db.engine.begin() as conn:
            for table in tables:
                conn.execute(table.delete())
            conn.execute(
                text("UPDATE audit_head SET seq = 0, last_hash = :h WHERE id = 1"),
                {"h": "0" * 64},
            )
        db.engine.dispose()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    if request.param == "sqlite":
        path: Path = tmp_path_factory.mktemp("sqlite") / "relais-test.db"
        yield f"sqlite:///{path}"
        return
    url = postgres_url()
    if url is None:
        skip_or_fail("TEST_DATABASE_URL is not set: PostgreSQL tests skipped")
    assert url is not None
    with private_postgres_database(url, "suite") as private_url:
        yield private_url


@contextmanager
def migrated_app(database_url: str) -> Iterator[Flask]:
    """An app on ``database_url`` with every migration applied; its connections closed after."""
    app = make_app(database_url)
    upgrade(app)
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture(scope="session")
def _migrated_app(database_url: str) -> Iterator[Flask]:
    with migrated_app(database_url) as app:
        yield app


@pytest.fixture()
def app(_migrated_app: Flask) -> Iterator[Flask]:
    empty_tables(_migrated_app)
    # Each test gets its own app object on the migrated database, so config changes stay local.
    app = make_app(_migrated_app.config["SQLALCHEMY_DATABASE_URI"])
    with app.app_context():
        limiter.reset()  # one storage for every app of the process: counts start at zero
        yield app
        db.session.remove()
        db.engine.dispose()


@pytest.fixture()
def db_dialect(app: Flask) -> str:
    return str(db.engine.dialect.name)


@pytest.fixture()
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture()
def api_token(app: Flask) -> str:
    from app.dispatch.clients import create_client

    _, token = create_client("dpi-test", CLI)
    db.session.commit()
    return token


def audit_text() -> str:
    """Every audit event as text, to look for what must never be in it."""
    from app.models import AuditEvent

    events = db.session.scalars(select(AuditEvent).order_by(AuditEvent.id)).all()
    return "\n".join(
        json.dumps(
            [e.actor, e.action, e.target, e.patient, e.outcome, e.rule, e.details],
            ensure_ascii=False,
        )
        for e in events
    )


@contextmanager
def sibling_app(app: Flask, **overrides: Any) -> Iterator[Flask]:
    """Another app on the same database with other settings (e.g. other DOCUMENT_KEYS).

    Its connections are closed afterwards. Push its own context to use it: Flask's CLI runs a
    command in whatever app context is already pushed.
    """
    other = make_app(app.config["SQLALCHEMY_DATABASE_URI"], **overrides)
    try:
        yield other
    finally:
        with other.app_context():
            db.session.remove()
            db.engine.dispose()


class Api:
    """A DPI client over HTTP (Flask's test client), with the bearer token set."""

    def __init__(self, client: FlaskClient, token: str) -> None:
        self.client = client
        self.headers = {"Authorization": f"Bearer {token}"}

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return self.client.open(path, method=method, headers=headers, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.request("POST", path, **kwargs)

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> Any:
        return self.request("PUT", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> Any:
        return self.request("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Any:
        return self.request("DELETE", path, **kwargs)


@pytest.fixture()
def api(client: FlaskClient, api_token: str) -> Api:
    return Api(client, api_token)


PDF = make_pdf(["Lettre de sortie", "Test"])


def iso_ago(**delta: float) -> str:
    """The moment ``delta`` before now (``hours=1``, ``days=8``), as the DPI writes it: ISO 8601
    in Geneva's offset, to the second. Tests build their times from the clock, never from a
    date: the suite must pass on any day (``make test-clock-ahead``)."""
    moment = datetime.now(UTC) - timedelta(**delta)
    return moment.astimezone(ZURICH).isoformat(timespec="seconds")


def document_body(document_id: str = "DPI-2026-000123", **changes: Any) -> dict[str, Any]:
    """A valid POST /api/v1/documents body (the INTERFACES.md example, signed an hour ago: a
    sensitive letter is held), with changes."""
    body: dict[str, Any] = {
        "document_id": document_id,
        "patient": {"id": "P-0042", "family_name": "Muster", "given_name": "Anna",
                    "birth_date": "1961-04-02", "deceased": False},
        "encounter": "outpatient",
        "recipients": ["7601000000019"],
        "type": "discharge_letter",
        "title": "Lettre de sortie",
        "service": "cardiologie",
        "author": "Dr B. Exemple",
        "signed_at": iso_ago(hours=1),
        "sensitive": False,
        "third_party_data": False,
        "category": "report",
        "content_type": "application/pdf",
        "content": base64.b64encode(PDF).decode(),
    }
    body.update(changes)
    return body


def consent_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "electronic_sending": True,
        "designation": "treating_doctor",
        "given_by": "patient",
        "recorded_by": "secretariat.cardio",
        "patient": {"family_name": "Muster", "given_name": "Anna", "birth_date": "1961-04-02"},
    }
    body.update(changes)
    return body


@pytest.fixture()
def active_doctor(app: Flask) -> Any:
    """Dr Claire Muller, GLN 7601000000019, active (signed in once through HIN)."""
    from tests.support.factories import make_doctor

    return make_doctor(locality="Genève", specialties=["medecine_interne_generale"])


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Debian's headless Chromium, one for the session (``tests/support/chromium.py``)."""
    from tests.support.chromium import chromium_session

    yield from chromium_session(skip_or_fail)
