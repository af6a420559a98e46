"""/readyz: the load balancer's question "may this server take requests now?".

200 when the database answers and, with REDIS_URL, Redis answers PING; 503 otherwise. The
answer holds ok or error per dependency and nothing else (no host, no driver message).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis
from flask import Flask

from app.extensions import db
from tests.conftest import make_app, skip_or_fail
from tests.support.pages import assert_secure_headers


def closed_port() -> int:
    """A loopback port with nothing listening (bound then released, never listened on)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture()
def redis_url() -> Iterator[str]:
    url = os.environ.get("REDIS_URL", "")
    if not url:
        skip_or_fail("REDIS_URL is not set: /readyz with Redis needs a Redis server")
    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as error:
        skip_or_fail(f"Redis at REDIS_URL is unreachable ({type(error).__name__})")
    finally:
        client.close()
    yield url


@contextmanager
def server(database_url: str, **overrides: Any) -> Iterator[Flask]:
    """An app on other settings; its connections (database, Redis) closed afterwards."""
    other = make_app(database_url, **overrides)
    try:
        yield other
    finally:
        with other.app_context():
            db.session.remove()
            db.engine.dispose()
        client = other.extensions.get("relais.readyz_redis")
        if client is not None:
            client.close()


def readyz(database_url: str, **overrides: Any) -> tuple[int, dict[str, str], str]:
    with server(database_url, **overrides) as app:
        response = app.test_client().get("/readyz")
        assert_secure_headers(response)
        return response.status_code, response.get_json(), response.get_data(as_text=True)


def test_ready_with_the_database_and_a_real_redis(app: Flask, redis_url: str) -> None:
    ready = readyz(app.config["SQLALCHEMY_DATABASE_URI"], REDIS_URL=redis_url)
    assert ready[:2] == (200, {"status": "ok", "database": "ok", "redis": "ok"})


def test_ready_without_redis_when_none_is_configured(app: Flask) -> None:
    laptop = readyz(app.config["SQLALCHEMY_DATABASE_URI"], REDIS_URL="")
    assert laptop[:2] == (200, {"status": "ok", "database": "ok"})


def test_not_ready_when_redis_does_not_answer(app: Flask) -> None:
    port = closed_port()
    status, body, text = readyz(app.config["SQLALCHEMY_DATABASE_URI"],
                                REDIS_URL=f"redis://:hunter2-secret@127.0.0.1:{port}/5")
    assert (status, body) == (503, {"status": "error", "database": "ok", "redis": "error"})
    assert str(port) not in text and "hunter2" not in text


def test_not_ready_when_the_database_does_not_answer() -> None:
    status, body, text = readyz("sqlite:////nonexistent/dir/relais.db", REDIS_URL="")
    assert (status, body) == (503, {"status": "error", "database": "error"})
    assert "nonexistent" not in text


def test_not_ready_when_postgresql_does_not_answer() -> None:
    port = closed_port()
    status, body, text = readyz(f"postgresql+psycopg://relais:pw-secret@127.0.0.1:{port}/relais",
                                REDIS_URL="")
    assert (status, body) == (503, {"status": "error", "database": "error"})
    assert "pw-secret" not in text and str(port) not in text


def test_healthz_stays_liveness_only(app: Flask) -> None:
    """Redis away does not make the process unhealthy: restarting it would not help."""
    with server(app.config["SQLALCHEMY_DATABASE_URI"],
                REDIS_URL=f"redis://127.0.0.1:{closed_port()}/5") as broken:
        response = broken.test_client().get("/healthz")
    assert (response.status_code, response.get_json()) == (200, {"status": "ok",
                                                               "database": "ok"})
