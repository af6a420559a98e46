"""Backup and restore as docs/operations.md describes it: ``pg_dump --format=custom`` of a
database that holds letters ingested through the real service, ``pg_restore`` into an empty
database, the same key ring: the audit chain holds, a letter decrypts to the very bytes the DPI
sent, whose SHA-256 is the stored one. Without the right keys the content does not decrypt (a
clear error, never garbage), and a tampered audit row in the restored copy is found.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

from app.audit import CLI, SYSTEM
from app.audit.trail import check_chain
from app.crypto import ContentIntegrityError
from app.dispatch.documents import read_content
from app.dispatch.facts import NotFound
from app.dispatch.release import release_due
from app.extensions import db
from app.models import Doctor, Document
from app.models.base import utcnow
from app.pdf import make_pdf
from tests.conftest import (
    TEST_KEY,
    Api,
    consent_body,
    document_body,
    make_app,
    postgres_url,
    private_postgres_database,
    skip_or_fail,
    upgrade,
)

GLN = "7601000000019"
OTHER_KEY = base64.b64encode(b"o" * 32).decode()


def pg_tool(name: str, url: str) -> str:
    """The ``pg_dump``/``pg_restore`` of the server's major version (an older client refuses to
    dump a newer server; Debian keeps each version under /usr/lib/postgresql/<major>/bin)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            version = int(conn.execute(text("SHOW server_version_num")).scalar_one())
    finally:
        engine.dispose()
    candidate = Path(f"/usr/lib/postgresql/{version // 10000}/bin/{name}")
    if candidate.is_file():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        skip_or_fail(f"{name} for PostgreSQL {version // 10000} is not installed")
    assert found is not None
    return found


def libpq_args(url: str) -> list[str]:
    parsed = make_url(url)
    args = ["--host", parsed.host or "127.0.0.1", "--port", str(parsed.port or 5432),
            "--username", parsed.username or "postgres", "--no-password"]
    return args


@pytest.fixture(name="server_url")
def server_url_fixture() -> str:
    url = postgres_url()
    if url is None:
        skip_or_fail("TEST_DATABASE_URL is not set: the backup and restore test needs PostgreSQL")
    assert url is not None
    return url


@pytest.fixture(name="source_url")
def source_url_fixture(server_url: str) -> Iterator[str]:
    with private_postgres_database(server_url, "backup_source") as url:
        yield url


@pytest.fixture(name="restored_url")
def restored_url_fixture(server_url: str) -> Iterator[str]:
    with private_postgres_database(server_url, "backup_restored") as url:
        yield url


def close(app: Flask) -> None:
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def fill(app: Flask) -> dict[str, bytes]:
    """Letters through the real API and service: delivered, held then released, retracted, and
    one purged at the end of its retention. Answers each letter's original bytes."""
    sent: dict[str, bytes] = {}
    with app.app_context():
        db.session.add(Doctor(gln=GLN, family_name="Muller", given_name="Claire",
                              state="active", activated_at=utcnow()))
        db.session.commit()
        from app.dispatch.clients import create_client

        _, token = create_client("dpi-backup", CLI)
        db.session.commit()
        api = Api(app.test_client(), token)
        assert api.put(f"/api/v1/patients/P-0042/consents/{GLN}",
                       json=consent_body()).status_code == 201
        now = utcnow()
        letters = {
            "DPI-B-DELIVERED": {},
            "DPI-B-HELD": {"sensitive": True,
                           "signed_at": (now - timedelta(days=6)).isoformat()},
            "DPI-B-RETRACTED": {},
            "DPI-B-OLD": {"signed_at": (now - timedelta(days=365 * 21)).isoformat()},
        }
        for document_id, changes in letters.items():
            pdf = make_pdf([f"Lettre {document_id}", "Contenu clinique"])
            sent[document_id] = pdf
            body = document_body(document_id, content=base64.b64encode(pdf).decode(), **changes)
            answer = api.post("/api/v1/documents", json=body)
            assert answer.status_code == 201, answer.get_json()
        assert api.post("/api/v1/documents/DPI-B-RETRACTED/retract",
                        json={"reason": "Erreur"}).status_code == 200
        # The held letter's time comes (one more day): the worker releases it
        delivered, _ = release_due(SYSTEM, now=now + timedelta(days=2))
        db.session.commit()
        assert delivered == 1
        result = app.test_cli_runner().invoke(args=["documents", "purge-expired"])
        assert "1 document(s) purged" in result.output, result.output
        assert check_chain().broken is None
        db.session.remove()
    return sent


def dump_and_restore(source_url: str, restored_url: str, folder: Path) -> None:
    dump = folder / "relais.dump"
    subprocess.run(
        [pg_tool("pg_dump", source_url), *libpq_args(source_url), "--format=custom",
         "--file", str(dump), make_url(source_url).database or ""],
        check=True, capture_output=True, timeout=120,
    )
    assert dump.stat().st_size > 0
    subprocess.run(
        [pg_tool("pg_restore", restored_url), *libpq_args(restored_url), "--no-owner",
         "--exit-on-error", "--dbname", make_url(restored_url).database or "", str(dump)],
        check=True, capture_output=True, timeout=120,
    )


def read(document_id: str) -> bytes:
    document = db.session.scalar(select(Document).where(Document.document_id == document_id))
    assert document is not None
    return read_content(document)


def test_a_restored_dump_keeps_the_chain_and_the_letters(
    source_url: str, restored_url: str, tmp_path: Path
) -> None:
    # Given a database with letters, deliveries and an audit trail
    source = make_app(source_url)
    upgrade(source)
    try:
        sent = fill(source)
    finally:
        close(source)

    # When it is dumped and restored into an empty database
    dump_and_restore(source_url, restored_url, tmp_path)

    # Then an app on the restored copy with the same key ring finds everything intact
    restored = make_app(restored_url)
    try:
        upgrade(restored)  # `flask db upgrade` after a restore: already at head, a no-op
        with restored.app_context():
            verify = restored.test_cli_runner().invoke(args=["audit", "verify"])
            assert verify.exit_code == 0 and "audit trail intact" in verify.output
            assert check_chain().broken is None
            for document_id in ("DPI-B-DELIVERED", "DPI-B-HELD"):
                plaintext = read(document_id)
                stored = db.session.scalar(
                    select(Document.sha256).where(Document.document_id == document_id))
                assert hashlib.sha256(plaintext).hexdigest() == stored
                assert plaintext == sent[document_id]
            statuses = dict(db.session.execute(
                select(Document.document_id, Document.purged_at)).tuples().all())
            assert statuses["DPI-B-OLD"] is not None and statuses["DPI-B-DELIVERED"] is None
            with pytest.raises(NotFound):
                read("DPI-B-OLD")  # purged before the dump: not in it either
            db.session.remove()
    finally:
        close(restored)

    # And with a key ring that lacks the key, the content does not decrypt: an error, no bytes
    for keys, problem in ((f"test1:{OTHER_KEY}", "failed authentication"),
                          (f"other:{OTHER_KEY}", "unknown document key id 'test1'")):
        wrong = make_app(restored_url, DOCUMENT_KEYS=keys)
        try:
            with wrong.app_context():
                with pytest.raises(ContentIntegrityError, match=problem):
                    read("DPI-B-DELIVERED")
                db.session.remove()
        finally:
            close(wrong)

    # And a tampered audit row in the restored copy is found at that row
    tampered = make_app(restored_url, DOCUMENT_KEYS=f"test1:{TEST_KEY}")
    try:
        with tampered.app_context():
            target = db.session.execute(text(
                "SELECT id FROM audit_events WHERE action = 'document.received' ORDER BY id "
                "LIMIT 1")).scalar_one()
            db.session.execute(text(
                "UPDATE audit_events SET outcome = 'rejected' WHERE id = :id"), {"id": target})
            db.session.commit()
            broken = check_chain().broken
            assert broken is not None and broken.event_id == target
            verify = tampered.test_cli_runner().invoke(args=["audit", "verify"])
            assert verify.exit_code == 1 and f"event {target}" in verify.output
            db.session.remove()
    finally:
        close(tampered)

    # While the original is untouched by what happened to its copy
    source = make_app(source_url)
    try:
        with source.app_context():
            assert check_chain().broken is None
            db.session.remove()
    finally:
        close(source)
