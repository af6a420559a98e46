"""What the hostile-input tests share: a database with one of everything, the clients of each
role, and what must not change when a hostile request is refused."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from app.audit import CLI
from app.extensions import db
from app.models import Delivery, Doctor, StaffUser
from app.staff.accounts import create_staff
from tests.conftest import Api, consent_body, document_body
from tests.support.signin import sign_in_as

GLN = "7601000000019"
PATIENT = "P-0042"


def counts() -> dict[str, int]:
    """Rows per table, the audit trail aside (API rejections are audited on purpose)."""
    counts = {}
    for table in db.metadata.sorted_tables:
        if table.name.startswith("audit_"):
            continue
        counts[table.name] = int(db.session.scalar(select(func.count()).select_from(table)) or 0)
    return counts


def snapshot() -> list[tuple[Any, ...]]:
    """What an injected statement would change: the deliveries' and doctors' state."""
    db.session.expire_all()
    deliveries = [(d.id, d.status, d.first_read_at, d.reported_not_my_patient_at)
                  for d in db.session.scalars(select(Delivery).order_by(Delivery.id))]
    doctors = [(d.id, d.state, d.deactivated_at)
               for d in db.session.scalars(select(Doctor).order_by(Doctor.id))]
    return [*deliveries, *doctors]


@pytest.fixture()
def clients(app: Flask, api: Api, active_doctor: Doctor) -> Iterator[dict[str, FlaskClient]]:
    # Given a patient, a consent, a delivered letter and a desk account,
    app.config["WTF_CSRF_ENABLED"] = False  # the route itself must see the hostile id
    app.config["RATELIMIT_API_UNAUTHENTICATED"] = "100000 per minute"
    assert api.put(f"/api/v1/patients/{PATIENT}/consents/{GLN}",
                   json=consent_body()).status_code == 201
    assert api.post("/api/v1/documents", json=document_body()).status_code == 201
    desk, _, _ = create_staff("desk-hostile", "desk", CLI)
    desk.must_change_password = False
    db.session.commit()
    doctor_client, desk_client = app.test_client(), app.test_client()
    sign_in_as(doctor_client, active_doctor)
    sign_in_as(desk_client, db.session.get(StaffUser, desk.id))
    yield {"api": api.client, "doctor": doctor_client, "desk": desk_client,
           "anonymous": app.test_client(), "api_headers": api.headers}  # type: ignore[dict-item]


