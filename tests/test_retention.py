"""Content retention: ``documents purge-expired`` deletes the content of documents whose
retention (DOCUMENT_RETENTION_YEARS after ``signed_at``) has passed, keeps their metadata, hash
and deliveries, audits each one, and the doctor, the DPI and staff see why the content is gone.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from sqlalchemy import event, func, select

from app.audit import CLI
from app.audit.trail import check_chain
from app.config import ConfigError, load_settings
from app.dispatch import retention
from app.extensions import db
from app.models import AuditEvent, Document, DocumentContent
from app.models.base import utcnow
from tests.conftest import TEST_KEY, sibling_app
from tests.support.inbox import (
    OTHER_GLN,
    Inbox,
    inbox_fixture,  # noqa: F401
)
from tests.support.signin import sign_in_as

YEARS = 20


def signed(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def mark(years: int = YEARS) -> datetime:
    """The moment, now, before which a signature is beyond retention."""
    return retention.years_before(utcnow(), years)


def send_signed(inbox: Inbox, document_id: str, when: datetime, **changes: Any) -> int:
    return inbox.send(document_id=document_id, signed_at=signed(when), **changes)


def purge(runner: FlaskCliRunner, *args: str) -> Any:
    result = runner.invoke(args=["documents", "purge-expired", *args])
    assert result.exit_code == 0, result.output
    return result


def document(document_id: str) -> Document:
    db.session.expire_all()
    found = db.session.scalar(select(Document).where(Document.document_id == document_id))
    assert found is not None
    return found


def has_content(document_id: str) -> bool:
    return db.session.scalar(
        select(func.count()).select_from(DocumentContent).join(Document)
        .where(Document.document_id == document_id)
    ) == 1


def purge_events() -> list[AuditEvent]:
    db.session.expire_all()
    return list(db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == retention.PURGED).order_by(AuditEvent.id)
    ))


@pytest.fixture()
def runner(app: Flask) -> FlaskCliRunner:
    return app.test_cli_runner()


# --- what is purged ---------------------------------------------------------------------------


def test_content_is_purged_one_day_after_the_mark_and_kept_one_day_before(
    inbox: Inbox, runner: FlaskCliRunner
) -> None:
    # Given a letter signed 20 years and a day ago, and one signed 20 years less a day ago
    send_signed(inbox, "DPI-OLD", mark() - timedelta(days=1))
    send_signed(inbox, "DPI-KEPT", mark() + timedelta(days=1))
    sha = document("DPI-OLD").sha256
    # When the purge runs
    result = purge(runner)
    # Then only the expired letter loses its content; metadata, hash and deliveries stay
    assert result.output.strip() == "1 document(s) purged (retention 20 years)."
    old, kept = document("DPI-OLD"), document("DPI-KEPT")
    assert old.purged_at is not None and not has_content("DPI-OLD")
    assert old.sha256 == sha and old.title == "Lettre de sortie"
    assert [d.status for d in old.deliveries] == ["delivered"]
    assert kept.purged_at is None and has_content("DPI-KEPT")


def test_a_custom_retention_counts_its_own_years(app: Flask, inbox: Inbox) -> None:
    send_signed(inbox, "DPI-6Y", mark(6))
    send_signed(inbox, "DPI-4Y", mark(4))
    with sibling_app(app, DOCUMENT_RETENTION_YEARS="5") as other, other.app_context():
        result = other.test_cli_runner().invoke(args=["documents", "purge-expired"])
        assert result.exit_code == 0, result.output
        assert "1 document(s) purged (retention 5 years)." in result.output
        assert purge_events()[0].details == {
            "retention_years": 5, "signed_at": document("DPI-6Y").signed_at.astimezone(
                retention.ZURICH).date().isoformat()}
        db.session.remove()
    assert document("DPI-6Y").purged_at is not None
    assert document("DPI-4Y").purged_at is None and has_content("DPI-4Y")


def test_before_narrows_the_purge_and_never_widens_it(
    inbox: Inbox, runner: FlaskCliRunner
) -> None:
    send_signed(inbox, "DPI-1990", datetime.fromisoformat("1990-03-01T10:00:00+01:00"))
    send_signed(inbox, "DPI-2000", datetime.fromisoformat("2000-03-01T10:00:00+01:00"))
    send_signed(inbox, "DPI-RECENT", mark() + timedelta(days=30))
    # A date in the future does not reach a letter still within its retention
    assert purge(runner, "--before", "2999-01-01", "--dry-run").output.startswith(
        "2 document(s) would be purged")
    purge(runner, "--before", "1995-01-01")
    assert document("DPI-1990").purged_at is not None
    assert document("DPI-2000").purged_at is None
    purge(runner, "--before", "2999-01-01")
    assert document("DPI-2000").purged_at is not None
    assert document("DPI-RECENT").purged_at is None and has_content("DPI-RECENT")


def test_refuses_a_malformed_before(runner: FlaskCliRunner) -> None:
    result = runner.invoke(args=["documents", "purge-expired", "--before", "last year"])
    assert result.exit_code != 0


# --- audit, idempotence, dry run ---------------------------------------------------------------


def test_each_purge_is_audited_once_and_the_chain_holds(
    inbox: Inbox, runner: FlaskCliRunner
) -> None:
    for n in range(3):
        send_signed(inbox, f"DPI-A{n}", mark() - timedelta(days=10 + n),
                    title="Lettre de Madame Secret")
    result = purge(runner)
    events = purge_events()
    assert sorted(e.target for e in events) == [f"document:DPI-A{n}" for n in range(3)]
    assert {e.actor for e in events} == {"cli"}
    for e in events:
        assert set(e.details) == {"retention_years", "signed_at"}
        assert e.details["retention_years"] == YEARS
        assert e.patient == "P-0042"
    text = result.output + repr([e.details for e in events])
    for secret in ("Muster", "Anna", "Secret", "P-0042", "DPI-A"):
        assert secret not in text
    assert check_chain().broken is None


def test_a_second_run_purges_nothing(inbox: Inbox, runner: FlaskCliRunner) -> None:
    send_signed(inbox, "DPI-ONCE", mark() - timedelta(days=3))
    assert "1 document(s) purged" in purge(runner).output
    first = document("DPI-ONCE").purged_at
    assert "0 document(s) purged" in purge(runner).output
    assert document("DPI-ONCE").purged_at == first
    assert len(purge_events()) == 1


def test_a_dry_run_changes_nothing(inbox: Inbox, runner: FlaskCliRunner) -> None:
    send_signed(inbox, "DPI-DRY1", mark() - timedelta(days=3))
    send_signed(inbox, "DPI-DRY2", mark() - timedelta(days=4))
    send_signed(inbox, "DPI-FRESH", mark() + timedelta(days=4))
    events_before = db.session.scalar(select(func.count(AuditEvent.id)))
    result = purge(runner, "--dry-run")
    assert result.output.strip() == (
        "2 document(s) would be purged (retention 20 years); nothing changed.")
    assert db.session.scalar(select(func.count(AuditEvent.id))) == events_before
    assert db.session.scalar(select(func.count()).select_from(DocumentContent)) == 3
    assert db.session.scalar(select(func.count(Document.id)).where(
        Document.purged_at.is_not(None))) == 0


def test_rotate_keys_skips_purged_documents(
    app: Flask, inbox: Inbox, runner: FlaskCliRunner
) -> None:
    send_signed(inbox, "DPI-ROT-OLD", mark() - timedelta(days=3))
    send_signed(inbox, "DPI-ROT-NEW", mark() + timedelta(days=3))
    purge(runner)
    new_key = "bmV3LWtleS1mb3ItcmV0ZW50aW9uLXRlc3RzLTEyMzQ="  # 32 bytes, base64
    with sibling_app(app, DOCUMENT_KEYS=f"test2:{new_key},test1:{TEST_KEY}") as other, \
            other.app_context():
        result = other.test_cli_runner().invoke(args=["documents", "rotate-keys"])
        assert result.exit_code == 0, result.output
        assert "1 document(s) re-encrypted." in result.output
        db.session.remove()
    assert not has_content("DPI-ROT-OLD")


# --- two purges at once ---------------------------------------------------------------------


def test_a_purge_that_lost_a_race_purges_nothing_twice(app: Flask, inbox: Inbox) -> None:
    # Given expired letters, and a purge that has chosen them but not yet marked them
    for n in range(4):
        send_signed(inbox, f"DPI-RACE{n}", mark() - timedelta(days=5 + n))
    limit = retention.cutoff()
    rival_done = threading.Event()
    started: list[bool] = []
    rival_counts: list[int] = []
    errors: list[BaseException] = []

    def rival() -> None:
        try:
            with sibling_app(app) as other, other.app_context():
                total = 0
                while True:
                    result = retention.purge_batch(CLI, limit)
                    db.session.commit()
                    total += result.purged
                    if not result.more:
                        break
                rival_counts.append(total)
                db.session.remove()
        except BaseException as error:
            errors.append(error)
        finally:
            rival_done.set()

    def before_update(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        # When another purge runs to its end just before this one marks its rows
        if statement.lstrip().upper().startswith("UPDATE DOCUMENTS") and not started:
            started.append(True)
            thread = threading.Thread(target=rival)
            thread.start()
            # On PostgreSQL the rival skips the rows this purge has locked and ends at once;
            # without that lock it would wait for this transaction: do not wait forever.
            thread.join(timeout=10)

    engine = db.engine
    event.listen(engine, "before_cursor_execute", before_update)
    try:
        mine = retention.purge_batch(CLI, limit)
        db.session.commit()
    finally:
        event.remove(engine, "before_cursor_execute", before_update)
    rival_done.wait(timeout=30)
    assert errors == []
    # Then each letter was purged and audited once, by one or the other
    assert mine.purged + sum(rival_counts) == 4
    assert sorted(e.target for e in purge_events()) == [f"document:DPI-RACE{n}" for n in range(4)]
    assert check_chain().broken is None


def test_two_concurrent_purges_purge_each_document_once(
    app: Flask, inbox: Inbox, db_dialect: str
) -> None:
    if db_dialect != "postgresql":
        # Not a missing service: the same test runs on PostgreSQL (always under CI). SQLite
        # serialises whole-database writes, so two purges cannot interleave there. The lost race
        # itself is proven on SQLite too: test_a_purge_that_lost_a_race_purges_nothing_twice.
        pytest.skip("concurrent purges need PostgreSQL row locks")
    count = 30
    for n in range(count):
        send_signed(inbox, f"DPI-C{n:02d}", mark() - timedelta(days=2 + n))
    limit = retention.cutoff()
    barrier = threading.Barrier(2)
    totals: list[int] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            with app.app_context():
                barrier.wait(timeout=30)
                total = 0
                while True:
                    result = retention.purge_batch(CLI, limit, batch=3)
                    db.session.commit()
                    total += result.purged
                    if not result.more:
                        break
                totals.append(total)
                db.session.remove()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert sum(totals) == count
    targets = [e.target for e in purge_events()]
    assert sorted(targets) == sorted(f"document:DPI-C{n:02d}" for n in range(count))
    assert db.session.scalar(select(func.count()).select_from(DocumentContent)) == 0
    assert check_chain().broken is None


# --- what people see after a purge ---------------------------------------------------------------


def test_the_doctor_sees_why_the_content_is_gone(inbox: Inbox, runner: FlaskCliRunner) -> None:
    delivery_id = send_signed(inbox, "DPI-SEEN", mark() - timedelta(days=3),
                              title="Lettre ancienne")
    kept = send_signed(inbox, "DPI-ZIP-OK", mark() + timedelta(days=3))
    purge(runner)
    viewer = inbox.page(f"/documents/{delivery_id}")
    assert "Le contenu de ce document a été supprimé le" in viewer
    assert "conservation de 20 ans" in viewer
    assert "Lettre ancienne" in viewer  # the metadata stays
    assert "viewer.js" not in viewer and "/content" not in viewer
    listing = inbox.page()
    assert "contenu supprimé (conservation)" in listing
    assert f'id="select-{delivery_id}"' not in listing  # no ZIP checkbox for it
    assert f'id="select-{kept}"' in listing
    events_before = db.session.scalar(select(func.count(AuditEvent.id)))
    assert inbox.client.get(f"/documents/{delivery_id}/content").status_code == 410
    assert inbox.client.get(f"/documents/{delivery_id}/content?download=1").status_code == 410
    # A ZIP naming it is refused whole: nothing partial, and nothing recorded as read
    assert inbox.post("/documents/zip", {"ids": [str(delivery_id), str(kept)]}).status_code == 410
    assert db.session.scalar(select(func.count(AuditEvent.id))) == events_before
    assert inbox.post("/documents/zip", {"ids": [str(kept)]}).status_code == 200


def test_the_viewer_speaks_english_too(inbox: Inbox, runner: FlaskCliRunner) -> None:
    delivery_id = send_signed(inbox, "DPI-EN", mark() - timedelta(days=3))
    purge(runner)
    html = inbox.client.get(f"/documents/{delivery_id}",
                            headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert "its retention period of 20 years after signature had ended" in html


def test_the_dpi_sees_purged_at_and_the_feed_keeps_working(
    inbox: Inbox, runner: FlaskCliRunner
) -> None:
    send_signed(inbox, "DPI-API", mark() - timedelta(days=3))
    send_signed(inbox, "DPI-API-NEW", mark() + timedelta(days=3))
    purge(runner)
    old = inbox.api.get("/api/v1/documents/DPI-API")
    assert old.status_code == 200
    body = old.get_json()
    assert body["purged_at"] is not None and body["sha256"] == document("DPI-API").sha256
    assert [d["status"] for d in body["deliveries"]] == ["delivered"]
    assert inbox.api.get("/api/v1/documents/DPI-API-NEW").get_json()["purged_at"] is None
    feed = inbox.api.get("/api/v1/events?limit=500")
    assert feed.status_code == 200
    assert "document.purged" in {e["action"] for e in feed.get_json()["events"]}


def test_staff_see_that_the_content_was_deleted_and_the_export_keeps_working(
    app: Flask, inbox: Inbox, runner: FlaskCliRunner
) -> None:
    from app.staff.accounts import create_staff

    send_signed(inbox, "DPI-STAFF", mark() - timedelta(days=3), title="Lettre archivée")
    # A letter to a doctor who cannot receive it waits on the staff worklist
    blocked = send_signed(inbox, "DPI-STAFF-BLOCKED", mark() - timedelta(days=3),
                          recipient=OTHER_GLN)
    purge(runner)
    desk, _, _ = create_staff("desk-retention", "desk", CLI)
    desk.must_change_password = False
    db.session.commit()
    client: FlaskClient = app.test_client()
    sign_in_as(client, desk)
    page = client.get("/staff/patients/P-0042")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Lettre archivée" in html and "contenu supprimé (conservation)" in html
    worklist = client.get(f"/staff/worklist/{blocked}")
    assert worklist.status_code == 200
    assert "contenu supprimé (conservation) le" in worklist.get_data(as_text=True)
    export = client.get("/staff/audit/export.csv")
    assert export.status_code == 200
    assert "document.purged" in export.get_data(as_text=True)


# --- the setting ------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["0", "-3", "twenty", ""])
def test_a_bad_retention_is_refused_at_start(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match="DOCUMENT_RETENTION_YEARS"):
        load_settings(str(tmp_path), {"DOCUMENT_RETENTION_YEARS": value}, environ={})


def test_retention_defaults_to_twenty_years_and_reads_the_environment(tmp_path: Path) -> None:
    assert load_settings(str(tmp_path), environ={}).flask_config()[
        "DOCUMENT_RETENTION_YEARS"] == 20
    from_env = load_settings(str(tmp_path), environ={"DOCUMENT_RETENTION_YEARS": "30"})
    assert from_env.flask_config()["DOCUMENT_RETENTION_YEARS"] == 30
