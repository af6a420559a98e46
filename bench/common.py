"""Settings shared by the benchmark's seeder and runner: databases, keys, the app's config.

The keys below are benchmark keys for synthetic data only; they are written here on purpose
(a benchmark must be reproducible from a fresh clone) and must never serve real documents.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

from flask import Flask

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"

#: Documents per database size; every size has the same doctors and patients.
SIZES: dict[str, int] = {"10k": 10_000, "100k": 100_000, "1m": 1_000_000}
DOCTORS = 5_000
PATIENTS = 200_000

PG_SERVER = os.environ.get("BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/7")

BENCH_SECRET_KEY = "relais-benchmark-only-secret-key-0123456789abcdef"  # noqa: S105
BENCH_DOCUMENT_KEYS = "bench1:" + base64.b64encode(b"relais-benchmark-document-key-32").decode()

#: What production insists on besides the database, Redis and the keys (it refuses console
#: SMS and email, and development SAML settings): an SMTP relay and Twilio that the benchmark
#: never reaches (it sends no email, and signs in with the app's own session cookies; the soak
#: replaces Twilio by its local server), and a SAML folder of its own that does not exist (HIN
#: off): instance/saml may hold a laptop's development settings, which production refuses.
PRODUCTION_SERVICES: dict[str, str] = {
    "MAIL_BACKEND": "smtp",
    "MAIL_SERVER": "127.0.0.1",
    "MAIL_PORT": "25",
    "SMS_BACKEND": "twilio",
    "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
    "TWILIO_AUTH_TOKEN": "benchmark-not-a-secret",
    "TWILIO_FROM_NUMBER": "+41225550100",
    "TWILIO_API_BASE": "http://127.0.0.1:9",
    "SAML_SETTINGS_DIR": str(ROOT / "bench" / "no-saml-settings"),
}


def database_name(size: str) -> str:
    return f"relais_bench_{size}"


def database_url(size: str) -> str:
    return f"{PG_SERVER}/{database_name(size)}"


def libpq_url(size: str) -> str:
    """The same database for plain psycopg (no SQLAlchemy driver suffix)."""
    return database_url(size).replace("postgresql+psycopg://", "postgresql://")


def app_environment(size: str) -> dict[str, str]:
    """The environment of the app under test: the production profile on a bench database."""
    return {
        "RELAIS_ENV": "production",
        "SECRET_KEY": BENCH_SECRET_KEY,
        "DOCUMENT_KEYS": BENCH_DOCUMENT_KEYS,
        "DATABASE_URL": database_url(size),
        "REDIS_URL": REDIS_URL,
        "SAML_DEV_IDP": "0",
        **PRODUCTION_SERVICES,
    }


def make_bench_app(size: str, **overrides: Any) -> Flask:
    """The app in this process, configured as the one gunicorn serves."""
    from app import create_app

    config: dict[str, Any] = dict(app_environment(size))
    config.update(overrides)
    return create_app(config)
