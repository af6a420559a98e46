"""Redis unavailable (issue 7, faults): sign-in fails closed, the rest keeps working, recovery.

The rate limits of sign-in live in Redis when ``REDIS_URL`` is set. Without them a sign-in could
be tried without bound, so while Redis is away every rate-limited route refuses with a clear
503 page (the view never runs: no password checked, no code consumed, no session started) and
the DPI API's budget for calls without a valid token refuses with a 503 problem. Everything else
(a doctor already signed in, the DPI with its token, /healthz) keeps working. When Redis comes
back on the same address, the same app (not restarted) signs in again and counts again.

Redis here is a throwaway ``redis-server`` of this module (``tests/support/redis_server.py``),
really stopped and started; the app is a sibling of the ``app`` fixture (SQLite and PostgreSQL)
with ``REDIS_URL`` pointing at it.
"""

from __future__ import annotations

import html
import logging
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pyotp
import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from flask_limiter.util import get_qualified_name
from sqlalchemy import func, select
from werkzeug.test import TestResponse

from app.auth.limits import limiter
from app.auth.session import access_of
from app.auth.staff_factors import totp_secret
from app.extensions import db
from app.models import AuditEvent, Delivery, Doctor, OneTimeCode, StaffUser
from tests.conftest import Api, consent_body, document_body, sibling_app
from tests.support.factories import PASSWORD, make_sms_doctor, make_staff
from tests.support.login import GENERIC, IsolatedClient, code_from, signed_in_account
from tests.support.pages import csrf_token
from tests.support.redis_server import (
    RedisServer,
    redis_server_fixture,  # noqa: F401
)
from tests.support.signin import sign_in_as
from tests.support.twilio_server import (
    TwilioServer,
    twilio_server_fixture,  # noqa: F401
)

#: Per-login budget of the app under test: small, so that a few attempts reach it.
ACCOUNT_LIMIT = 3
UNAVAILABLE_FR = ("Connexion momentanément indisponible",
                  "La connexion à Relais est temporairement indisponible. "
                  "Réessayez dans quelques minutes.")
UNAVAILABLE_EN = ("Sign-in temporarily unavailable",
                  "Signing in to Relais is temporarily unavailable. Try again in a few minutes.")

#: Routes that must be rate-limited (and so refuse while Redis is away). The test also finds
#: every limited route from the URL map: a new one is covered without being listed here.
SIGN_IN_ENDPOINTS = {"auth.login", "auth.code", "auth.resend_code", "auth.totp",
                     "auth.totp_enrol", "auth.regenerate_recovery_codes",
                     "auth.change_password", "hin.acs", "hin.login"}


@dataclass
class Outage:
    """The portal with its rate limits in the throwaway Redis, and that Redis."""

    app: Flask
    redis: RedisServer
    twilio: TwilioServer

    def client(self, language: str | None = None) -> FlaskClient:
        client = self.app.test_client()
        if language is not None:
            client.environ_base["HTTP_ACCEPT_LANGUAGE"] = language
        return client


@pytest.fixture()
def outage(app: Flask, redis_server: RedisServer,
           twilio_server: TwilioServer) -> Iterator[Outage]:
    redis_server.ensure_running()
    with sibling_app(
        app, REDIS_URL=redis_server.url,
        RATELIMIT_KEY_PREFIX=f"relais-outage-{os.getpid()}-{uuid.uuid4().hex[:8]}",
        RATELIMIT_SIGNIN_PER_ACCOUNT=f"{ACCOUNT_LIMIT} per hour",
        RATELIMIT_SIGNIN_PER_ADDRESS="1000 per minute",
        **twilio_server.config(),
    ) as portal:
        # Each request in an app context of its own, as on a server (see IsolatedClient).
        portal.test_client_class = IsolatedClient
        try:
            yield Outage(portal, redis_server, twilio_server)
        finally:
            redis_server.ensure_running()  # for the module's next test
            _close_redis_clients(portal)


def _close_redis_clients(portal: Flask) -> None:
    """Close the app's Redis connections (the limiter's and /readyz's): no socket left open."""
    storage = getattr(limiter.limiter, "storage", None)
    client = getattr(storage, "storage", None)
    if isinstance(client, redis.Redis):
        client.connection_pool.disconnect()
    ready = portal.extensions.pop("relais.readyz_redis", None)
    if isinstance(ready, redis.Redis):
        ready.close()


def page(response: TestResponse) -> str:
    return html.unescape(response.get_data(as_text=True))


def audit_count() -> int:
    db.session.expire_all()
    return int(db.session.scalar(select(func.count()).select_from(AuditEvent)) or 0)


def limited_routes(portal: Flask) -> list[tuple[str, str, str]]:
    """(endpoint, path, method) of every rate-limited route, from the URL map and the limiter."""
    found = []
    with portal.app_context():
        for rule in portal.url_map.iter_rules():
            view = portal.view_functions[rule.endpoint]
            for limit in limiter.limit_manager.decorated_limits(get_qualified_name(view)):
                assert not rule.arguments, f"{rule.rule}: give the test a value for its arguments"
                for method in sorted(limit.methods or rule.methods or ()):
                    found.append((rule.endpoint, rule.rule, method.upper()))
    return sorted(set(found))


def assert_refused_as_unavailable(response: TestResponse, texts: tuple[str, str]) -> None:
    assert response.status_code == 503, (response.status_code, page(response)[:400])
    assert response.mimetype == "text/html"
    assert int(response.headers["Retry-After"]) > 0
    shown = page(response)
    for text in texts:
        assert text in shown


def login_form(client: FlaskClient, login: str, password: str) -> dict[str, str]:
    # The sign-in page itself is not limited: it renders while Redis is away.
    form_page = client.get("/auth/login")
    assert form_page.status_code == 200
    return {"csrf_token": csrf_token(form_page), "login": login, "password": password}


# --- every limited route fails closed ---------------------------------------------------------


@pytest.mark.parametrize("language, texts", [("fr", UNAVAILABLE_FR), ("en", UNAVAILABLE_EN)])
def test_every_limited_route_refuses_with_a_clear_page_while_redis_is_down(
    outage: Outage, caplog: pytest.LogCaptureFixture, language: str, texts: tuple[str, str],
) -> None:
    # Given the portal and every route its limiter guards (found from the URL map)
    routes = limited_routes(outage.app)
    assert {endpoint for endpoint, _, _ in routes} >= SIGN_IN_ENDPOINTS, routes
    make_sms_doctor("cmuller")
    anonymous = outage.client(language)
    form = login_form(anonymous, "cmuller", PASSWORD)
    # the routes behind the gate (a password change, new recovery codes) by a signed-in user
    staff = make_staff("m.dupont")
    signed_in = outage.client(language)
    sign_in_as(signed_in, staff)
    staff_form = {"csrf_token": csrf_token(signed_in.get("/auth/password")),
                  "password": PASSWORD, "current_password": PASSWORD,
                  "new_password": "a-brand-new-long-passphrase-42",
                  "confirm_password": "a-brand-new-long-passphrase-42"}
    staff_account = signed_in_account(signed_in)
    events_before = audit_count()

    # When Redis stops and each route is called the way it is limited
    outage.redis.stop()
    caplog.set_level(logging.DEBUG)
    for endpoint, path, method in routes:
        access = access_of(outage.app, endpoint)
        if access == "public":
            client, data, account = anonymous, {**form, "code": "123456",
                                                "SAMLResponse": "PHNhbWxwOlJlc3BvbnNlLz4="}, None
        else:
            assert access is not None and "staff" in access, (endpoint, access)
            client, data, account = signed_in, staff_form, staff_account
        response = client.open(path, method=method, data=data)
        # Then each answers 503 with the page saying sign-in is unavailable, try again later
        assert_refused_as_unavailable(response, texts)
        # and no session was started (or changed)
        assert signed_in_account(client) == account, endpoint

    # And no view ran: nothing was audited, no code was sent, no failure counted
    assert audit_count() == events_before
    assert outage.twilio.messages == []
    doctor = db.session.scalar(select(Doctor).where(Doctor.login == "cmuller"))
    assert doctor is not None and doctor.failed_sign_ins == 0
    stored_staff = db.session.get(StaffUser, staff.id)
    assert stored_staff is not None and stored_staff.failed_sign_ins == 0
    assert stored_staff.password_hash == staff.password_hash  # not changed
    # One WARNING line per refusal, naming no login, password or code
    warnings = [r for r in caplog.records if r.name == "app.auth.limits"]
    assert len(warnings) == len(routes)
    assert all(r.levelno == logging.WARNING for r in warnings)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for secret in ("cmuller", "m.dupont", PASSWORD, "a-brand-new-long-passphrase-42"):
        assert secret not in logged
    assert "Traceback" not in logged and "rate-limit storage unreachable" in logged


def test_the_api_budget_without_a_token_fails_closed_while_redis_is_down(
    outage: Outage, api_token: str,
) -> None:
    client = outage.client()
    events_before = audit_count()
    outage.redis.stop()

    # A call without a token, or with a wrong one, cannot be counted: 503, not 401 or 500
    for headers in ({}, {"Authorization": "Bearer not-a-token"}):
        response = client.get("/api/v1/doctors", headers=headers)
        assert response.status_code == 503, response.get_data(as_text=True)
        assert response.mimetype == "application/problem+json"
        body = response.get_json()
        assert body["status"] == 503 and body["type"].endswith("/unavailable")
        assert "retry" in body["detail"].lower()
        assert int(response.headers["Retry-After"]) > 0
    # and, refused before counting, it wrote no api.rejected event
    assert audit_count() == events_before

    # Once Redis is back the same app counts again: the usual 401, audited
    outage.redis.start()
    response = client.get("/api/v1/doctors")
    assert response.status_code == 401
    assert audit_count() == events_before + 1


# --- no factor is checked or consumed, and sign-in resumes by itself ----------------------------


def test_an_sms_sign_in_is_neither_checked_nor_consumed_during_the_outage_then_completes(
    outage: Outage,
) -> None:
    # Given a doctor who typed the right password while Redis was up: a code went by SMS
    doctor = make_sms_doctor("cmuller")
    client = outage.client()
    response = client.post("/auth/login", data=login_form(client, "cmuller", PASSWORD))
    assert response.status_code == 303 and response.headers["Location"] == "/auth/code"
    code = code_from(outage.twilio)
    code_page = client.get("/auth/code")
    events_before = audit_count()

    # When Redis stops
    outage.redis.stop()
    # a wrong password for the same login is not checked (no failure counted towards lockout),
    other = outage.client()
    assert_refused_as_unavailable(
        other.post("/auth/login", data=login_form(other, "cmuller", "wrong-password-0")),
        UNAVAILABLE_FR)
    # a wrong code is not tried, the right code is not consumed, no new code is sent
    token = csrf_token(code_page)
    for typed in ("000000", code):
        assert_refused_as_unavailable(
            client.post("/auth/code", data={"csrf_token": token, "code": typed}), UNAVAILABLE_FR)
    assert_refused_as_unavailable(
        client.post("/auth/code/resend", data={"csrf_token": token}), UNAVAILABLE_FR)
    assert signed_in_account(client) is None

    db.session.expire_all()
    challenge = db.session.scalar(select(OneTimeCode).where(OneTimeCode.doctor_id == doctor.id))
    assert challenge is not None
    assert (challenge.used_at, challenge.tries, challenge.sends) == (None, 0, 1)
    assert db.session.get(Doctor, doctor.id).failed_sign_ins == 0  # type: ignore[union-attr]
    assert len(outage.twilio.messages) == 1
    assert audit_count() == events_before
    # while the portal itself stays alive, though not ready for the load balancer
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 503

    # When Redis is started again on the same port (the app is not restarted)
    outage.redis.start()
    # Then the same code completes the sign-in: the limiter's client reconnected by itself
    response = client.post("/auth/code", data={"csrf_token": token, "code": code})
    assert response.status_code == 303, page(response)[:400]
    assert signed_in_account(client) is not None
    assert client.get("/documents").status_code == 200
    assert client.get("/readyz").status_code == 200


def test_a_staff_authenticator_code_is_not_checked_during_the_outage(outage: Outage) -> None:
    staff = make_staff("m.dupont")
    client = outage.client()
    response = client.post("/auth/login", data=login_form(client, "m.dupont", PASSWORD))
    assert response.status_code == 303 and response.headers["Location"] == "/auth/totp"
    token = csrf_token(client.get("/auth/totp"))
    code = pyotp.TOTP(totp_secret(staff)).now()

    outage.redis.stop()
    for typed in ("000000", code):
        assert_refused_as_unavailable(
            client.post("/auth/totp", data={"csrf_token": token, "code": typed}), UNAVAILABLE_FR)
    db.session.expire_all()
    stored = db.session.get(StaffUser, staff.id)
    assert stored is not None
    # Not checked: no failure counted, and the code not recorded as used (replay guard untouched)
    assert (stored.failed_sign_ins, stored.totp_last_counter) == (0, None)
    assert signed_in_account(client) is None

    outage.redis.start()
    response = client.post("/auth/totp", data={"csrf_token": token, "code": code})
    assert response.status_code == 303, page(response)[:400]
    assert signed_in_account(client) is not None


def test_the_limits_count_again_after_redis_comes_back(outage: Outage) -> None:
    make_sms_doctor("cmuller")
    client = outage.client()
    # Given an outage (Redis keeps nothing on disk: it comes back empty)
    outage.redis.stop()
    assert_refused_as_unavailable(
        client.post("/auth/login", data=login_form(client, "cmuller", "wrong-password-0")),
        UNAVAILABLE_FR)
    outage.redis.start()

    # When the same login is tried wrongly after recovery, the per-login budget counts again
    for attempt in range(ACCOUNT_LIMIT):
        response = client.post("/auth/login",
                               data=login_form(client, "cmuller", f"wrong-password-{attempt}"))
        assert response.status_code == 200 and GENERIC in page(response)
    refused = client.post("/auth/login", data=login_form(client, "cmuller", PASSWORD))
    # Then the next attempt is refused before its password is checked, even the right one
    assert refused.status_code == 429
    assert signed_in_account(client) is None
    db.session.expire_all()
    doctor = db.session.scalar(select(Doctor).where(Doctor.login == "cmuller"))
    assert doctor is not None and doctor.failed_sign_ins == ACCOUNT_LIMIT
    assert outage.twilio.messages == []


# --- the rest of the portal keeps working ------------------------------------------------------


def test_a_signed_in_doctor_and_the_dpi_keep_working_while_redis_is_down(
    outage: Outage, api_token: str, active_doctor: Doctor,
) -> None:
    dpi = Api(outage.client(), api_token)
    reader = outage.client()
    sign_in_as(reader, active_doctor)
    consent = dpi.put("/api/v1/patients/P-0042/consents/7601000000019", json=consent_body())
    assert consent.status_code in (200, 201)

    outage.redis.stop()
    # The DPI, with its token, keeps sending letters (its calls never touch the limiter)
    response = dpi.post("/api/v1/documents", json=document_body("DPI-OUTAGE-1"))
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["deliveries"][0]["status"] == "delivered"
    assert dpi.get("/api/v1/documents/DPI-OUTAGE-1").status_code == 200

    # The doctor signed in before the outage reads it: the list, the viewer and the content
    db.session.expire_all()
    delivery_id = db.session.scalar(select(Delivery.id))
    listing = reader.get("/documents")
    assert listing.status_code == 200 and "Lettre de sortie" in page(listing)
    assert reader.get(f"/documents/{delivery_id}").status_code == 200
    content = reader.get(f"/documents/{delivery_id}/content")
    assert content.status_code == 200 and content.data.startswith(b"%PDF")
    # Liveness holds; readiness says Redis is missing
    assert reader.get("/healthz").status_code == 200
    ready = reader.get("/readyz")
    assert ready.status_code == 503
    assert signed_in_account(reader) is not None

    outage.redis.start()
    assert reader.get("/readyz").status_code == 200
