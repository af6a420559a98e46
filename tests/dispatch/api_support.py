"""Shared helpers for the DPI API tests: every call checked against the OpenAPI document."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from app.extensions import db
from app.gln import make_gln
from app.models import (
    AuditEvent,
    Consent,
    Delivery,
    Doctor,
    Document,
    DocumentContent,
    Patient,
)
from app.models.base import utcnow
from tests.conftest import Api, consent_body
from tests.openapi_check import assert_request_valid, assert_response_matches, load_spec
from tests.support.factories import make_doctor

SPEC = load_spec()

GLN = "7601000000019"  # Dr Claire Muller, the `active_doctor` fixture
PATIENT = "P-0042"


def gln(n: int) -> str:
    """A valid GLN (GS1 check digit) numbered ``n``, distinct from ``GLN``."""
    return make_gln(f"7601000{n:05d}")


class CheckedApi(Api):
    """The DPI client, asserting that every answer is one the OpenAPI document promises."""

    def __init__(self, api: Api) -> None:
        super().__init__(api.client, api.headers["Authorization"].removeprefix("Bearer "))
        self.api = api

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        sent = kwargs.get("json")
        response = super().request(method, path, **kwargs)
        assert_response_matches(
            SPEC, method, path, response.status_code,
            response.get_json(silent=True), response.content_type,
        )
        if response.status_code < 300 and "data" not in kwargs:
            # What the app accepts, the spec documents (parameters and body).
            assert_request_valid(SPEC, method, path, sent)
        return response


def parse(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value is not None else None


def birth_date(years: int, days: int = 0) -> str:
    """The birth date of someone ``years`` old today (plus ``days`` older)."""
    today = date.today()
    try:
        born = today.replace(year=today.year - years)
    except ValueError:  # 29 February
        born = today.replace(year=today.year - years, day=28)
    return (born - timedelta(days=days)).isoformat()


def add_doctor(number_or_gln: int | str, state: str = "active", **fields: Any) -> Doctor:
    value = number_or_gln if isinstance(number_or_gln, str) else gln(number_or_gln)
    if state == "deactivated":
        fields.setdefault("activated_at", utcnow())
        fields.setdefault("deactivated_at", fields["activated_at"])
    return make_doctor(value, fields.pop("family_name", "Doe"), fields.pop("given_name", "Jo"),
                       state=state, **fields)


def consent(dpi: CheckedApi, patient: str = PATIENT, doctor: str = GLN, **changes: Any) -> Any:
    path = f"/api/v1/patients/{patient}/consents/{doctor}"
    response = dpi.put(path, json=consent_body(**changes))
    assert response.status_code in (200, 201), response.get_json()
    return response


def counts() -> dict[str, int]:
    db.session.expire_all()
    return {
        model.__tablename__: db.session.scalar(select(func.count()).select_from(model)) or 0
        for model in (Document, DocumentContent, Delivery, Patient, Doctor, Consent)
    }


def events(action: str | None = None) -> list[AuditEvent]:
    db.session.expire_all()
    query = select(AuditEvent).order_by(AuditEvent.id)
    if action is not None:
        query = query.where(AuditEvent.action == action)
    return list(db.session.scalars(query))


def assert_rejected(
    response: Any, status: int, before: dict[str, int], field: str | None = None
) -> None:
    """The contract for every bad request: a problem, nothing stored, the rejection audited."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.content_type.startswith("application/problem+json")
    problem = response.get_json()
    assert problem["status"] == status
    if status == 422:
        fields = [e["field"] for e in problem["errors"]]
        assert field in fields, fields
    assert counts() == before
    rejected = events("api.rejected")
    assert rejected, "the rejection was not audited"
    assert rejected[-1].outcome == "rejected"
    assert rejected[-1].details["status"] == status


def delivery_of(body: dict[str, Any], recipient: str = GLN) -> dict[str, Any]:
    found = [d for d in body["deliveries"] if d["recipient"] == recipient]
    assert len(found) == 1, body
    return found[0]
