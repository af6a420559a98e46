"""Hostile values: timestamps at and past the edges of the calendar and of the time zones,
cursors, ids and page sizes at and past their bounds, on every list and on the API.

Python's datetime covers years 1 to 9999 and offsets below 24 hours: ``0001-01-01T00:00+23:59``
parses, and then overflows when turned into UTC; a letter signed on 31 December 9999 overflows
when its hold is added. Each such value must be a clear refusal (400 on a page, 422 with the
field named in the API), never a 500, and nothing may be stored but the audit trail's record of
an API rejection. Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from app.extensions import db
from app.models import AuditEvent
from tests.conftest import consent_body, document_body
from tests.hostile.conftest import GLN, counts, snapshot

#: Date-times with an offset, each well-formed ISO 8601, each beyond what can be stored or
#: computed with: the calendar's edges shifted out of range by their offset, years that cannot
#: hold a letter's delay, offsets no place on Earth has.
EXTREME_MOMENTS = [
    "0001-01-01T00:00:00+23:59",
    "0001-01-01T00:00:00+00:01",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59-23:59",
    "9999-12-31T23:59:59Z",
    "9999-12-31T23:59:59+00:00",
    "1000-01-01T00:00:00Z",
    "3000-01-01T00:00:00Z",
    "2026-11-20T16:05:00+23:59",
    "2026-11-20T16:05:00-23:59",
    "2026-11-20T16:05:00+15:00",
]

#: Days outside any life: the calendar's edges, and days still to come.
EXTREME_DAYS = ["0001-01-01", "0999-12-31", "9999-12-31", "3000-01-01"]


def _cursor(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


#: Keyset cursors as an attacker would forge them: well encoded, out of range.
EXTREME_CURSORS = [
    _cursor("0001-01-01T00:00:00+00:00|1"),
    _cursor("0001-01-01T00:00:00+23:59|1"),
    _cursor("9999-12-31T23:59:59-23:59|1"),
    _cursor("9999-12-31T23:59:59+00:00|1"),
    _cursor(f"2026-11-20T16:05:00+00:00|{2**70}"),
    _cursor(f"2026-11-20T16:05:00+00:00|{2**63}"),
    _cursor(f"2026-11-20T16:05:00+00:00|{2**31}"),
    _cursor("2026-11-20T16:05:00+00:00|-1"),
    _cursor("2026-11-20T16:05:00+00:00|" + "9" * 400),
    _cursor("2026-11-20T16:05:00|1"),
]


def _api_rejections() -> int:
    return int(db.session.scalar(
        select(func.count(AuditEvent.id)).where(AuditEvent.outcome != "success")) or 0)


def _post(clients: dict[str, Any], body: dict[str, Any]) -> Any:
    return clients["api"].post("/api/v1/documents", json=body, headers=clients["api_headers"])


@pytest.mark.parametrize("value", EXTREME_MOMENTS)
def test_a_signature_time_out_of_range_is_a_422_naming_it(
    app: Flask, clients: dict[str, Any], value: str
) -> None:
    before, state, rejections = counts(), snapshot(), _api_rejections()
    # When the DPI sends a letter signed at an impossible moment
    answer = _post(clients, document_body("DPI-EXTREME", signed_at=value))
    # Then it is refused, naming the field, and nothing is stored but the rejection's event
    assert answer.status_code == 422, answer.get_data(as_text=True)
    assert answer.mimetype == "application/problem+json"
    assert [e["field"] for e in answer.get_json()["errors"]] == ["signed_at"]
    db.session.rollback()
    assert (counts(), snapshot()) == (before, state)
    assert _api_rejections() == rejections + 1


@pytest.mark.parametrize("value", EXTREME_DAYS)
@pytest.mark.parametrize("where", ["document", "consent"])
def test_a_birth_date_out_of_range_is_a_422_naming_it(
    app: Flask, clients: dict[str, Any], value: str, where: str
) -> None:
    before, state = counts(), snapshot()
    patient = {"family_name": "Muster", "given_name": "Anna", "birth_date": value}
    if where == "document":
        answer = _post(clients, document_body(
            "DPI-EXTREME", patient={**patient, "id": "P-0099", "deceased": False}))
        field = "patient.birth_date"
    else:
        answer = clients["api"].put(f"/api/v1/patients/P-0099/consents/{GLN}",
                                    json=consent_body(patient=patient),
                                    headers=clients["api_headers"])
        field = "patient.birth_date"
    assert answer.status_code == 422, answer.get_data(as_text=True)
    assert field in [e["field"] for e in answer.get_json()["errors"]]
    db.session.rollback()
    assert (counts(), snapshot()) == (before, state)


def test_a_signature_at_the_edges_of_the_accepted_range_is_stored(
    app: Flask, clients: dict[str, Any]
) -> None:
    # A letter signed an instant ago, with the largest real offset (UTC+14, Kiribati), and one
    # signed long ago in UTC-12, are real letters.
    now = datetime.now(UTC)
    recent = (now - timedelta(minutes=1)).astimezone(
        timezone(timedelta(hours=14))).isoformat(timespec="seconds")
    assert _post(clients, document_body("DPI-EDGE-1", signed_at=recent)).status_code == 201
    old = "1990-01-01T00:00:00-12:00"
    assert _post(clients, document_body("DPI-EDGE-2", signed_at=old)).status_code == 201


#: Every list page and the API's lists, by the role that may read them, with each query
#: argument that takes a day, a moment, a cursor, an id or a page size.
LIST_ARGUMENTS: list[tuple[str, str, list[str]]] = [
    ("doctor", "/documents?from=", EXTREME_DAYS),
    ("doctor", "/documents?to=", EXTREME_DAYS),
    ("doctor", "/documents?after=", EXTREME_CURSORS),
    ("doctor", "/patients?after=", [str(2**31), str(2**63), str(2**70), "0"]),
    ("desk", "/staff/worklist?from=", EXTREME_DAYS),
    ("desk", "/staff/worklist?to=", EXTREME_DAYS),
    ("desk", "/staff/worklist?after=", EXTREME_CURSORS),
    ("desk", "/staff/worklist?state=all&after=", EXTREME_CURSORS),
    ("desk", "/staff/audit?from=", [*EXTREME_DAYS, "0001-01-01T00:00", "9999-12-31T23:59"]),
    ("desk", "/staff/audit?to=", [*EXTREME_DAYS, "0001-01-01T00:00", "9999-12-31T23:59:59"]),
    ("desk", "/staff/audit?before=", [str(2**63), str(2**70), "0"]),
    ("desk", "/staff/audit/export.csv?from=", EXTREME_DAYS),
    ("desk", "/staff/audit/export.json?to=", EXTREME_DAYS),
    ("desk", "/staff/patients?q=Muster&birth_date=", EXTREME_DAYS),
    ("desk", "/staff/desk/notifications?after=", [str(2**63), str(2**70)]),
    ("api", "/api/v1/events?after=", [str(2**62), str(2**62 + 1), str(2**63), str(2**70)]),
    ("api", "/api/v1/events?limit=", ["0", "1", "1000", "1001", str(2**63), str(2**70)]),
    ("api", "/api/v1/doctors?limit=", ["0", "1", "200", "201", str(2**63), str(2**70)]),
]


def _cases() -> list[tuple[str, str]]:
    return [(role, prefix + value) for role, prefix, values in LIST_ARGUMENTS
            for value in values]


def test_lists_refuse_or_bound_extreme_values(app: Flask, clients: dict[str, Any]) -> None:
    # Given a database with a letter, a consent and a desk account
    before, state = counts(), snapshot()
    failures = []
    for role, path in _cases():
        headers = clients["api_headers"] if role == "api" else {}
        # When a list is asked for with an extreme value
        answer = clients[role].get(path, headers=headers)
        # Then it is a clear refusal, or a page that applies the value within its bounds
        if answer.status_code not in (200, 400, 422):
            failures.append(f"{path[:100]} -> {answer.status_code}")
        if role == "api" and answer.status_code != 200 and (
            answer.mimetype != "application/problem+json"
        ):
            failures.append(f"{path[:100]} -> {answer.mimetype}")
        db.session.rollback()
    assert failures == []
    # and nothing was stored
    assert (counts(), snapshot()) == (before, state)


@pytest.mark.parametrize(("role", "path"), [
    ("doctor", "/documents?after=" + c) for c in EXTREME_CURSORS[:5]
] + [("desk", "/staff/worklist?after=" + c) for c in EXTREME_CURSORS[:5]])
def test_a_cursor_out_of_range_is_a_bad_request(
    app: Flask, clients: dict[str, Any], role: str, path: str
) -> None:
    # A cursor names a row and a moment this list could have given; others are not guessed at.
    assert clients[role].get(path).status_code == 400


def test_api_page_sizes_and_cursors_past_their_bounds_are_422_naming_them(
    app: Flask, clients: dict[str, Any]
) -> None:
    for path in ["/api/v1/events?limit=0", "/api/v1/events?limit=1001",
                 f"/api/v1/events?limit={2**70}", f"/api/v1/events?after={2**70}",
                 "/api/v1/doctors?limit=0", "/api/v1/doctors?limit=201"]:
        answer = clients["api"].get(path, headers=clients["api_headers"])
        assert answer.status_code == 422, path
        named = path.split("?")[1].split("=")[0]
        assert [e["field"] for e in answer.get_json()["errors"]] == [named]


@pytest.mark.parametrize("value", EXTREME_DAYS)
def test_registering_a_patient_refuses_a_birth_date_out_of_range(
    app: Flask, clients: dict[str, Any], value: str
) -> None:
    # (the fixture's clients post without the CSRF token: the check is off for these tests)
    before, state = counts(), snapshot()
    form = {"dpi_id": "P-NEW", "family_name": "Rochat", "given_name": "Léa",
            "birth_date": value, "gln": GLN, "electronic_sending": "yes", "given_by": "patient"}
    answer = clients["desk"].post("/staff/patients/new", data=form)
    assert answer.status_code == 422
    assert "entre le 1er janvier 1880 et aujourd&#39;hui" in answer.get_data(as_text=True)
    db.session.rollback()
    assert (counts(), snapshot()) == (before, state)
