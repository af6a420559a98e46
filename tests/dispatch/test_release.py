"""Releasing held deliveries: only when due, re-checked at release, exactly once."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.exc import StatementError

from app.audit import SYSTEM, verify
from app.dispatch.release import release_due
from app.extensions import db
from app.models import AuditEvent, Consent, Delivery, Doctor, Document, Patient
from tests.conftest import Api, consent_body, document_body

GLN = "7601000000019"  # the active_doctor fixture
PATIENT = "P-0042"
NOW = datetime.now(UTC).replace(microsecond=0)


def _held(api: Api, document_id: str, signed_days_ago: float, **changes: Any) -> datetime:
    """Post a sensitive outpatient letter signed ``signed_days_ago``; return its release time."""
    signed_at = NOW - timedelta(days=signed_days_ago)
    body = document_body(document_id, sensitive=True, signed_at=signed_at.isoformat(), **changes)
    response = api.post("/api/v1/documents", json=body)
    assert response.status_code == 201, response.get_json()
    (delivery,) = response.get_json()["deliveries"]
    assert (delivery["status"], delivery["rule"]) == ("held", "sensitive_delay")
    release_at = datetime.fromisoformat(delivery["release_at"])
    assert release_at == signed_at + timedelta(days=7)
    return release_at


def _delivery(document_id: str, gln: str = GLN) -> Delivery:
    db.session.expire_all()
    delivery = db.session.scalar(
        select(Delivery).join(Document).where(
            Document.document_id == document_id, Delivery.recipient_gln == gln
        )
    )
    assert delivery is not None
    return delivery


def _events(action: str) -> list[AuditEvent]:
    return list(db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
    ))


def _release(now: datetime) -> tuple[int, int]:
    result = release_due(SYSTEM, now=now)
    db.session.commit()
    return result


@pytest.fixture()
def consented(app: Flask, api: Api, active_doctor: Doctor) -> Doctor:
    response = api.put(f"/api/v1/patients/{PATIENT}/consents/{GLN}", json=consent_body())
    assert response.status_code in (200, 201), response.get_json()
    return active_doctor


def test_releases_only_what_is_due(app: Flask, api: Api, consented: Doctor) -> None:
    late = _held(api, "DPI-LATE", signed_days_ago=1)     # due in 6 days
    early = _held(api, "DPI-EARLY", signed_days_ago=3)   # due in 4 days
    response = api.post("/api/v1/documents", json=document_body("DPI-PLAIN"))
    assert response.get_json()["deliveries"][0]["status"] == "delivered"
    plain_delivered_at = _delivery("DPI-PLAIN").delivered_at

    assert _release(NOW) == (0, 0)
    assert _release(early - timedelta(seconds=1)) == (0, 0)
    assert _delivery("DPI-EARLY").status == "held"

    at = early  # release_at <= now: due at that very moment
    assert _release(at) == (1, 0)
    released = _delivery("DPI-EARLY")
    assert (released.status, released.rule) == ("delivered", "ok")
    assert released.delivered_at == at
    assert released.decided_at == at
    assert released.release_at == early  # kept for the record
    assert _delivery("DPI-LATE").status == "held"
    assert _delivery("DPI-PLAIN").delivered_at == plain_delivered_at

    assert _release(late + timedelta(minutes=1)) == (1, 0)
    assert _delivery("DPI-LATE").status == "delivered"
    assert _release(late + timedelta(days=30)) == (0, 0)

    events = _events("delivery.released")
    assert [(e.target, e.rule, e.actor) for e in events] == [
        ("document:DPI-EARLY", "ok", "system"), ("document:DPI-LATE", "ok", "system"),
    ]
    assert all(e.details == {"recipient": GLN, "status": "delivered"} for e in events)
    assert verify() is None

    status = api.get("/api/v1/documents/DPI-EARLY").get_json()
    assert status["deliveries"][0]["status"] == "delivered"
    assert status["deliveries"][0]["rule"] == "ok"


def test_release_needs_an_aware_time(app: Flask, api: Api, consented: Doctor) -> None:
    release_at = _held(api, "DPI-1", signed_days_ago=1)
    # Refused before anything changes (today by the UTCDateTime column type, wrapped by SQLAlchemy).
    with pytest.raises((ValueError, TypeError, StatementError)):
        release_due(SYSTEM, now=release_at.replace(tzinfo=None) + timedelta(days=1))
    db.session.rollback()
    assert _delivery("DPI-1").status == "held"


def _revoke_behind_the_scenes() -> None:
    consent = db.session.scalars(select(Consent)).one()
    consent.revoked_at = NOW
    consent.electronic_sending = False


def _deceased_behind_the_scenes() -> None:
    patient = db.session.scalars(select(Patient).where(Patient.dpi_id == PATIENT)).one()
    patient.deceased_at = NOW


def _deactivated() -> None:
    doctor = db.session.scalars(select(Doctor).where(Doctor.gln == GLN)).one()
    doctor.state = "deactivated"
    doctor.deactivated_at = NOW


@pytest.mark.parametrize(
    ("change", "rule"),
    [
        (_revoke_behind_the_scenes, "no_consent"),
        (_deceased_behind_the_scenes, "patient_deceased"),
        (_deactivated, "recipient_inactive"),
    ],
    ids=["consent_revoked", "patient_died", "doctor_deactivated"],
)
def test_release_rechecks_the_facts(
    app: Flask, api: Api, consented: Doctor, change: Any, rule: str
) -> None:
    """The state changed while the letter waited (directly in the database, so that only the
    re-check at release can catch it): the delivery is cancelled with the failing rule."""
    release_at = _held(api, "DPI-1", signed_days_ago=1)
    change()
    db.session.commit()
    at = release_at + timedelta(minutes=5)
    assert _release(at) == (0, 1)
    delivery = _delivery("DPI-1")
    assert (delivery.status, delivery.rule) == ("cancelled", rule)
    assert delivery.cancelled_at == at
    assert delivery.delivered_at is None
    assert "release" in delivery.reason.lower()
    (event,) = _events("delivery.cancelled")
    assert (event.rule, event.target, event.outcome) == (rule, "document:DPI-1", "success")
    assert event.details == {"recipient": GLN, "status": "cancelled"}
    assert not _events("delivery.released")
    assert _release(at + timedelta(days=1)) == (0, 0)
    assert verify() is None

    status = api.get("/api/v1/documents/DPI-1").get_json()
    assert (status["deliveries"][0]["status"], status["deliveries"][0]["rule"]) == (
        "cancelled", rule,
    )


def test_sign_in_lockout_does_not_stop_release(app: Flask, api: Api, consented: Doctor) -> None:
    release_at = _held(api, "DPI-1", signed_days_ago=1)
    doctor = db.session.scalars(select(Doctor).where(Doctor.gln == GLN)).one()
    doctor.sign_in_locked = True
    doctor.sign_in_locked_at = NOW
    db.session.commit()
    assert _release(release_at) == (1, 0)
    assert _delivery("DPI-1").status == "delivered"


def test_death_through_the_api_cancels_at_once(app: Flask, api: Api, consented: Doctor) -> None:
    release_at = _held(api, "DPI-1", signed_days_ago=1)
    response = api.patch(f"/api/v1/patients/{PATIENT}", json={"deceased": True})
    assert response.status_code == 200, response.get_json()
    delivery = _delivery("DPI-1")
    assert (delivery.status, delivery.rule) == ("cancelled", "patient_deceased")
    assert _release(release_at + timedelta(days=1)) == (0, 0)
    assert not _events("delivery.released")
    assert verify() is None


def test_revocation_through_the_api_cancels_at_once(
    app: Flask, api: Api, consented: Doctor
) -> None:
    release_at = _held(api, "DPI-1", signed_days_ago=1)
    response = api.delete(f"/api/v1/patients/{PATIENT}/consents/{GLN}")
    assert response.status_code == 204
    delivery = _delivery("DPI-1")
    assert (delivery.status, delivery.rule) == ("cancelled", "no_consent")
    assert _release(release_at + timedelta(days=1)) == (0, 0)
    assert verify() is None


def test_several_recipients_are_rechecked_one_by_one(
    app: Flask, api: Api, consented: Doctor
) -> None:
    from app.gln import make_gln

    other_gln = make_gln("760100000123")
    other = Doctor(gln=other_gln, family_name="Rossi", given_name="Marco", state="active",
                   activated_at=NOW)
    db.session.add(other)
    db.session.commit()
    response = api.put(f"/api/v1/patients/{PATIENT}/consents/{other_gln}", json=consent_body())
    assert response.status_code in (200, 201)
    release_at = _held_many(api, "DPI-1", [GLN, other_gln])
    other.state = "deactivated"
    db.session.commit()
    assert _release(release_at) == (1, 1)
    assert _delivery("DPI-1", GLN).status == "delivered"
    cancelled = _delivery("DPI-1", other_gln)
    assert (cancelled.status, cancelled.rule) == ("cancelled", "recipient_inactive")
    assert verify() is None


def _held_many(api: Api, document_id: str, recipients: list[str]) -> datetime:
    signed_at = NOW - timedelta(days=1)
    body = document_body(document_id, sensitive=True, signed_at=signed_at.isoformat(),
                         recipients=recipients)
    response = api.post("/api/v1/documents", json=body)
    assert response.status_code == 201, response.get_json()
    assert {d["status"] for d in response.get_json()["deliveries"]} == {"held"}
    return signed_at + timedelta(days=7)


def test_cli_release_due(app: Flask, api: Api, consented: Doctor) -> None:
    """The CLI uses the real clock, and a letter whose delay has already passed at ingest is
    delivered at once: hold one, then move its release time into the past."""
    _held(api, "DPI-1", signed_days_ago=1)
    delivery = _delivery("DPI-1")
    delivery.release_at = datetime.now(UTC) - timedelta(minutes=1)
    db.session.commit()
    result = app.test_cli_runner().invoke(args=["dispatch", "release-due"])
    assert result.exit_code == 0, result.output
    assert "1 delivered, 0 cancelled" in result.output
    assert _delivery("DPI-1").status == "delivered"


# --- two workers at once -------------------------------------------------------------------


def test_two_workers_release_each_delivery_once(
    app: Flask, api: Api, consented: Doctor, db_dialect: str
) -> None:
    if db_dialect != "postgresql":
        # Not a missing service: the same test runs on PostgreSQL (always under CI); only this
        # database's variant is skipped, because the case cannot arise or be raced on it.
        pytest.skip("concurrent workers need PostgreSQL: SQLite has no row locks to race on")
    count = 12
    release_times = [_held(api, f"DPI-{n:03d}", signed_days_ago=1 + n / 100) for n in range(count)]
    at = max(release_times) + timedelta(minutes=1)
    workers = 2
    barrier = threading.Barrier(workers)
    results: list[tuple[int, int]] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            with app.app_context():
                barrier.wait(timeout=30)
                result = release_due(SYSTEM, now=at, batch=5)
                db.session.commit()
                total = result
                # Keep going like the CLI does, until nothing is left.
                while sum(result):
                    result = release_due(SYSTEM, now=at, batch=5)
                    db.session.commit()
                    total = (total[0] + result[0], total[1] + result[1])
                results.append(total)
                db.session.remove()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert sum(r[0] for r in results) == count
    assert sum(r[1] for r in results) == 0

    db.session.expire_all()
    statuses = db.session.execute(
        select(Delivery.status, func.count()).group_by(Delivery.status)
    ).all()
    assert dict(statuses) == {"delivered": count}
    per_target = db.session.execute(
        select(AuditEvent.target, func.count())
        .where(AuditEvent.action == "delivery.released")
        .group_by(AuditEvent.target)
    ).all()
    assert dict(per_target) == {f"document:DPI-{n:03d}": 1 for n in range(count)}
    assert verify() is None


@pytest.mark.parametrize("how", ["patch", "document body"])
def test_with_the_death_rule_off_held_letters_stay_held(
    app: Flask, api: Api, consented: Doctor, how: str
) -> None:
    from app.config.policy import PolicyConfig

    # Given a hospital that switched the CARA death rule off, and a held letter
    app.config["DISPATCH_POLICY"] = PolicyConfig(block_deceased=False)
    release_at = _held(api, "DPI-1", signed_days_ago=1)

    # When the death is recorded (by PATCH, or by a later document that says so)
    if how == "patch":
        response = api.patch(f"/api/v1/patients/{PATIENT}", json={"deceased": True})
        assert response.status_code == 200, response.get_json()
    else:
        patient = document_body()["patient"] | {"deceased": True}
        _held(api, "DPI-2", signed_days_ago=1, patient=patient)

    # Then the letter stays held, and is delivered when its time comes
    assert (_delivery("DPI-1").status, _delivery("DPI-1").rule) == ("held", "sensitive_delay")
    assert not _events("delivery.cancelled")
    delivered, cancelled = _release(release_at + timedelta(days=1))
    assert (delivered, cancelled) == (2 if how != "patch" else 1, 0)
    assert _delivery("DPI-1").status == "delivered"
    assert verify() is None
