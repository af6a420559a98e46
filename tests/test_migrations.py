"""The migrations build exactly the schema the models describe, and take it down again."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade as alembic_downgrade
from flask_migrate import upgrade as alembic_upgrade
from sqlalchemy import column, insert, inspect, table, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError

import app.models  # noqa: F401 - registers every table on the metadata
from app.extensions import db
from app.models.audit import GENESIS_HASH
from app.models.base import UTCDateTime, utcnow
from tests.conftest import make_app, postgres_url, skip_or_fail

# A unique name per test: two suites running at once (two engineers, two CI jobs on one server)
# must not drop each other's database halfway through.
MIGRATIONS_DB_PREFIX = "relais_test_migrations"


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database no test has touched: a new SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / f'migrations-{uuid.uuid4().hex}.db'}"
        return
    url = postgres_url()
    if url is None:
        skip_or_fail("TEST_DATABASE_URL is not set: PostgreSQL migration tests skipped")
    assert url is not None
    parsed = make_url(url)
    conninfo: dict[str, Any] = {
        "host": parsed.host or "127.0.0.1", "port": parsed.port or 5432,
        "user": parsed.username, "password": parsed.password, "dbname": "postgres",
    }
    conninfo = {k: v for k, v in conninfo.items() if v is not None}
    name = f"{MIGRATIONS_DB_PREFIX}_{uuid.uuid4().hex[:12]}"

    def admin(statement: str) -> None:
        with psycopg.connect(**conninfo, autocommit=True) as conn:
            conn.execute(statement)  # type: ignore[arg-type]

    admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin(f"CREATE DATABASE {name}")
    try:
        yield parsed.set(database=name).render_as_string(hide_password=False)
    finally:
        admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _tables() -> set[str]:
    return set(inspect(db.engine).get_table_names()) - {"alembic_version"}


def _schema_differences() -> list[Any]:
    with db.engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True}
        )
        return list(compare_metadata(context, db.metadata))


def _expected_tables() -> set[str]:
    return set(db.metadata.tables)


def test_upgrade_downgrade_upgrade(fresh_url: str) -> None:
    flask_app = make_app(fresh_url)
    with flask_app.app_context():
        try:
            assert _tables() == set()
            alembic_upgrade()

            assert _expected_tables() <= _tables()
            assert _tables() == _expected_tables()
            with db.engine.connect() as conn:
                head = conn.execute(text("SELECT id, seq, last_hash FROM audit_head")).all()
            assert [tuple(row) for row in head] == [(1, 0, GENESIS_HASH)]

            # compare_type catches a column whose type drifted from the model; on SQLite it
            # compares the reflected declared types (VARCHAR(64), DATETIME, BLOB ...), which the
            # migration writes from the same SQLAlchemy types, so no affinity noise shows here.
            assert _schema_differences() == []
            # ... and the comparison does see drift: an index the migration failed to create.
            with db.engine.begin() as conn:
                conn.execute(text("DROP INDEX ix_doctors_state"))
            drift = _schema_differences()
            assert [d[0] for d in drift] == ["add_index"]
            assert drift[0][1].name == "ix_doctors_state"
            with db.engine.begin() as conn:
                conn.execute(text("CREATE INDEX ix_doctors_state ON doctors (state)"))
            assert _schema_differences() == []

            alembic_downgrade(revision="base")
            assert _tables() == set()

            alembic_upgrade()
            assert _tables() == _expected_tables()
            assert _schema_differences() == []
            with db.engine.connect() as conn:
                assert conn.execute(text("SELECT count(*) FROM audit_head")).scalar_one() == 1
        finally:
            db.session.remove()
            db.engine.dispose()


def test_migrated_schema_works_with_the_audit_trail(fresh_url: str) -> None:
    """On a freshly migrated database the head row lets the first event be written."""
    from app.audit import CLI, record, verify

    flask_app = make_app(fresh_url)
    with flask_app.app_context():
        try:
            alembic_upgrade()
            event = record(CLI, "test.first")
            db.session.commit()
            assert event.id == 1
            assert event.prev_hash == GENESIS_HASH
            assert verify() is None
        finally:
            db.session.remove()
            db.engine.dispose()


def test_migrating_in_process_keeps_the_app_loggers(tmp_path: Path) -> None:
    """Alembic's logging setup must not disable the loggers that exist before it runs."""
    import logging

    import app.web  # noqa: F401 - creates its module logger

    logger = logging.getLogger("app.web")
    logger.disabled = False
    flask_app = make_app(f"sqlite:///{tmp_path / 'logging.db'}")
    with flask_app.app_context():
        try:
            alembic_upgrade()
        finally:
            db.session.remove()
            db.engine.dispose()
    assert not logger.disabled


def test_api_client_scopes_migration_gives_existing_clients_the_dpis_set(fresh_url: str) -> None:
    """0010: a client made before scopes existed keeps what the DPI does, not documents:admin."""
    token = "rl_0123456789abcdef_" + "A" * 43
    flask_app = make_app(fresh_url)
    with flask_app.app_context():
        try:
            # Given a database at 0009 with a live client and a revoked one
            alembic_upgrade(revision="0009_content_retention")
            clients = table("api_clients", column("name"), column("token_id"),
                            column("token_hash"), column("created_at", UTCDateTime),
                            column("revoked_at", UTCDateTime))
            made = utcnow() - timedelta(days=400)
            with db.engine.begin() as conn:
                conn.execute(insert(clients), [
                    {"name": "dpi-old", "token_id": "0123456789abcdef",
                     "token_hash": hashlib.sha256(token.encode()).hexdigest(),
                     "created_at": made, "revoked_at": None},
                    {"name": "dpi-gone", "token_id": "fedcba9876543210", "token_hash": "0" * 64,
                     "created_at": made, "revoked_at": made + timedelta(days=30)},
                ])

            # When it is upgraded
            alembic_upgrade()

            # Then each client holds the DPI's set, and the schema is the models'
            with db.engine.connect() as conn:
                rows = conn.execute(text(
                    "SELECT c.name, s.scope FROM api_client_scopes s"
                    " JOIN api_clients c ON c.id = s.api_client_id ORDER BY c.name, s.scope"
                )).all()
            dpi_set = ["consents:write", "doctors:read", "documents:read", "documents:write",
                       "events:read", "patients:write"]
            assert [tuple(r) for r in rows] == (
                [("dpi-gone", s) for s in dpi_set] + [("dpi-old", s) for s in dpi_set])
            assert _schema_differences() == []
            # ... and the old token works as before for what the DPI does, no further
            api = flask_app.test_client()
            headers = {"Authorization": f"Bearer {token}"}
            assert api.get("/api/v1/doctors", headers=headers).status_code == 200
            assert api.get("/api/v1/events", headers=headers).status_code == 200
            db.session.remove()

            # And a scope the model does not know is refused by the database itself
            with pytest.raises(IntegrityError, match=r"(?i)check"), db.engine.begin() as conn:
                conn.execute(text(
                    "INSERT INTO api_client_scopes (api_client_id, scope)"
                    " SELECT id, 'documents:delete' FROM api_clients WHERE name = 'dpi-old'"
                ))

            # And down again: the clients stay, their scopes go
            alembic_downgrade(revision="0009_content_retention")
            assert "api_client_scopes" not in _tables()
            with db.engine.connect() as conn:
                names = conn.execute(text("SELECT name FROM api_clients ORDER BY name")).all()
            assert [n for (n,) in names] == ["dpi-gone", "dpi-old"]
        finally:
            db.session.remove()
            db.engine.dispose()
