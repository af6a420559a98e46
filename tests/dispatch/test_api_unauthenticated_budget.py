"""Calls without a valid token have a budget per address.

Each refused call is an audit event, so a stranger hammering the API with bad tokens would grow
the trail without end. Past the budget (RATELIMIT_API_UNAUTHENTICATED) the answer is 429 and
nothing is written; the DPI, whose token is valid, never counts against it.
"""

from __future__ import annotations

from flask import Flask
from sqlalchemy import func, select

from app.extensions import db
from app.models import AuditEvent
from tests.openapi_check import assert_response_matches, load_spec


def _audited() -> int:
    return int(db.session.scalar(select(func.count()).select_from(AuditEvent)) or 0)


def test_bad_tokens_past_the_budget_get_429_and_write_nothing(
    app: Flask, api_token: str
) -> None:
    app.config["RATELIMIT_API_UNAUTHENTICATED"] = "3 per minute"
    client = app.test_client()
    spec = load_spec()
    before = _audited()
    bad = {"Authorization": "Bearer not-a-token"}

    answers = [client.get("/api/v1/doctors", headers=bad) for _ in range(3)]
    assert [a.status_code for a in answers] == [401, 401, 401]
    assert _audited() == before + 3  # each refusal within the budget is traced

    for path in ("/api/v1/doctors", "/api/v1/events", "/api/v1/documents/DPI-1"):
        refused = client.get(path, headers=bad)
        assert refused.status_code == 429
        assert_response_matches(spec, "get", path, 429, refused.get_json(silent=True),
                                refused.content_type)
    no_header = client.post("/api/v1/documents", json={})
    assert no_header.status_code == 429
    assert _audited() == before + 3  # nothing more in the trail

    # The DPI's own token is never refused for someone else's probing.
    good = client.get("/api/v1/doctors", headers={"Authorization": f"Bearer {api_token}"})
    assert good.status_code == 200


def test_valid_tokens_do_not_spend_the_budget(app: Flask, api_token: str) -> None:
    app.config["RATELIMIT_API_UNAUTHENTICATED"] = "2 per minute"
    client = app.test_client()
    headers = {"Authorization": f"Bearer {api_token}"}
    for _ in range(5):
        assert client.get("/api/v1/doctors", headers=headers).status_code == 200
    bad = {"Authorization": "Bearer not-a-token"}
    assert [client.get("/api/v1/doctors", headers=bad).status_code for _ in range(3)] == [
        401, 401, 429]
