"""The soak (bench/soak.py, ``make soak``): its checker on a small database, and a short run of
the whole thing against real PostgreSQL, Redis, gunicorn and the Twilio-compatible server.

The short run asserts counts only (5xx, lost, duplicated, overdue, missing from the lists),
never a time: how fast the machine is does not decide whether a letter was lost.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import delete, select

from app.extensions import db
from app.models import Delivery, Document
from bench.soak import SoakOptions, Tally, check_deliveries, markdown, run_soak, tally
from tests.conftest import (
    Api,
    consent_body,
    document_body,
    postgres_url,
    private_postgres_database,
    skip_or_fail,
)

SECOND_GLN = "7601000000026"


def _ingest(api: Api, document_id: str, recipients: list[str]) -> dict[str, Any]:
    answer = api.post("/api/v1/documents", json=document_body(document_id,
                                                               recipients=recipients))
    assert answer.status_code == 201, answer.get_json()
    body: dict[str, Any] = answer.get_json()
    return body


def _acknowledged(*answers: dict[str, Any]) -> dict[str, list[str]]:
    return {a["document_id"]: [d["recipient"] for d in a["deliveries"]] for a in answers}


# --- the checker ----------------------------------------------------------------------------------


def test_checker_counts_nothing_when_every_acknowledged_delivery_is_stored(
        app: Flask, api: Api, active_doctor: Any) -> None:
    # Given two letters the API acknowledged, one of them with an unknown second recipient
    api.put(f"/api/v1/patients/P-0042/consents/{active_doctor.gln}", json=consent_body())
    first = _ingest(api, "DPI-2026-000001", [active_doctor.gln])
    second = _ingest(api, "DPI-2026-000002", [active_doctor.gln, SECOND_GLN])
    # When the checker reads the database
    with app.app_context():
        found = check_deliveries(db.session.connection(), _acknowledged(first, second), "DPI")
    # Then nothing is lost or duplicated
    assert found == Tally(acknowledged_documents=2, acknowledged_deliveries=3, lost=0,
                          duplicated=0, unacknowledged=0)


def test_checker_sees_a_delivery_deleted_behind_its_back(
        app: Flask, api: Api, active_doctor: Any) -> None:
    # Given two acknowledged letters
    api.put(f"/api/v1/patients/P-0042/consents/{active_doctor.gln}", json=consent_body())
    first = _ingest(api, "DPI-2026-000001", [active_doctor.gln])
    second = _ingest(api, "DPI-2026-000002", [active_doctor.gln, SECOND_GLN])
    # When one delivery row disappears
    with app.app_context():
        document = db.session.scalar(select(Document.id).where(
            Document.document_id == "DPI-2026-000002"))
        db.session.execute(delete(Delivery).where(Delivery.document_id == document,
                                                  Delivery.recipient_gln == SECOND_GLN))
        db.session.commit()
        found = check_deliveries(db.session.connection(), _acknowledged(first, second), "DPI")
    # Then the checker counts it lost
    assert found.lost == 1
    assert found.duplicated == 0


def test_checker_sees_a_document_missing_altogether(app: Flask, api: Api,
                                                    active_doctor: Any) -> None:
    api.put(f"/api/v1/patients/P-0042/consents/{active_doctor.gln}", json=consent_body())
    first = _ingest(api, "DPI-2026-000001", [active_doctor.gln])
    # An acknowledgement for a letter that was never stored (one recipient, and the document)
    acknowledged = {**_acknowledged(first), "DPI-2026-000009": [active_doctor.gln]}
    with app.app_context():
        found = check_deliveries(db.session.connection(), acknowledged, "DPI")
    assert found.lost == 2


def test_tally_counts_duplicates_the_schema_forbids_anyway() -> None:
    # The unique constraints stop these rows from being written; were one dropped by a
    # migration, the soak would still count every extra row.
    acknowledged = {"S-1": ["7601000000019"], "S-2": ["7601000000019", SECOND_GLN]}
    rows = [("S-1", "7601000000019"), ("S-1", "7601000000019"),
            ("S-2", "7601000000019"), ("S-2", SECOND_GLN), ("S-3", SECOND_GLN)]
    found = tally(acknowledged, rows, ["S-1", "S-2", "S-2", "S-3"])
    assert found == Tally(acknowledged_documents=2, acknowledged_deliveries=3, lost=0,
                          duplicated=2, unacknowledged=1)


# --- a short soak -----------------------------------------------------------------------------


def test_short_soak_loses_nothing_and_answers_no_5xx(tmp_path: Path) -> None:
    url = postgres_url()
    if url is None:
        skip_or_fail("the soak needs PostgreSQL: set TEST_DATABASE_URL")
        return
    redis_url = os.environ.get("REDIS_URL")
    if not redis_url:
        skip_or_fail("the soak needs Redis: set REDIS_URL")
        return
    with private_postgres_database(url, "soak") as database_url:
        report = run_soak(SoakOptions(
            duration=15, sessions=10, ingest_rate=2, think_min=0.3, think_max=1.5,
            workers=2, letters_per_doctor=2, sample_doctors=10, worker_interval=2,
            database_url=database_url, redis_url=redis_url, log_dir=tmp_path))
    stats = report["stats"]
    found: Tally = report["tally"]
    assert report["signed_in"] == 10
    assert report["sms_sent"] >= 10
    assert stats.total > 0
    assert {"documents", "patients", "viewer", "content", "ingest"} <= set(stats.latencies)
    assert stats.server_errors() == 0
    assert not stats.errors, stats.errors
    assert found.acknowledged_documents > 20  # 20 seeded, and the stream's
    assert found.lost == 0
    assert found.duplicated == 0
    assert report["overdue_held"] == 0
    assert report["visibility"]["missing"] == 0
    assert report["visibility"]["extra"] == 0
    assert report["visibility"]["deliveries"] > 0
    assert report["audit_ok"]
    for figures in ("rss_start", "rss_end"):
        assert len(report[figures]) == 2
        assert all(mb > 0 for mb in report[figures])
    # The table `make soak` prints carries the figures the issue asks for
    table = markdown(report)
    for row in ("| requests | ", "| 5xx answers | 0 |", "| deliveries lost | 0 |",
                "| deliveries duplicated | 0 |", "| worker RSS at the end (MB) | ["):
        assert row in table
