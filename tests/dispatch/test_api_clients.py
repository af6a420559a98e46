"""API clients: last use is recorded, coarsely, so that the desk sees idle clients."""

from __future__ import annotations

from datetime import timedelta

from flask import Flask
from sqlalchemy import select

from app.extensions import db
from app.models import ApiClient
from tests.conftest import Api


def _client() -> ApiClient:
    db.session.expire_all()
    return db.session.scalars(select(ApiClient).where(ApiClient.name == "dpi-test")).one()


def test_last_use_is_recorded_at_most_once_a_minute(app: Flask, api: Api) -> None:
    assert _client().last_used_at is None

    assert api.get("/api/v1/doctors").status_code == 200
    first = _client().last_used_at
    assert first is not None

    # A second call within the minute leaves it alone (no row lock on every call) ...
    assert api.get("/api/v1/doctors").status_code == 200
    assert _client().last_used_at == first

    # ... and a call after a quiet spell moves it on.
    client = _client()
    client.last_used_at = first - timedelta(minutes=5)
    db.session.commit()
    assert api.get("/api/v1/doctors").status_code == 200
    assert _client().last_used_at is not None
    assert _client().last_used_at > first - timedelta(minutes=5)
