"""The command line (``flask --app wsgi ...``): API clients, desk enrolment, demo data, jobs."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from sqlalchemy import func, select

from app.extensions import db
from app.models import (
    ApiClient,
    AuditEvent,
    Consent,
    Delivery,
    Doctor,
    Document,
    DocumentContent,
    Patient,
)
from app.models.base import utcnow
from tests.conftest import audit_text, consent_body, document_body
from tests.support.pages import csrf_token
from tests.support.twilio_server import (
    TwilioServer,
    twilio_server_fixture,  # noqa: F401
)

GLN = "7601000000026"  # valid GS1 check digit, not the active_doctor fixture's


@pytest.fixture()
def runner(app: Flask) -> FlaskCliRunner:
    return app.test_cli_runner()


def count(model: Any) -> int:
    return int(db.session.scalar(select(func.count()).select_from(model)) or 0)


def actions() -> list[str]:
    return list(db.session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))


# --- api-client -------------------------------------------------------------------------------


def created_token(runner: FlaskCliRunner, name: str) -> str:
    result = runner.invoke(args=["api-client", "create", name])
    assert result.exit_code == 0, result.output
    tokens = re.findall(r"^rl_\S+$", result.output, re.MULTILINE)
    assert len(tokens) == 1, result.output  # printed once
    return tokens[0]


def test_api_client_create_prints_a_token_that_authenticates(
    runner: FlaskCliRunner, client: FlaskClient
) -> None:
    # Given a client created on the command line
    token = created_token(runner, "dpi-prod")

    # When the DPI uses the printed token
    answer = client.get("/api/v1/doctors", headers={"Authorization": f"Bearer {token}"})

    # Then it is let in, and the creation was audited
    assert answer.status_code == 200
    assert "api_client.created" in actions()


def test_api_client_token_is_not_stored_in_clear(runner: FlaskCliRunner) -> None:
    token = created_token(runner, "dpi-prod")
    stored = db.session.scalar(select(ApiClient).where(ApiClient.name == "dpi-prod"))
    assert stored is not None
    secret = token[len("rl_") + 16 + 1 :]  # rl_<16 hex id>_<secret>
    assert len(secret) == 43
    for value in (stored.name, stored.token_id, stored.token_hash):
        assert token not in value
        assert secret not in value
    assert re.fullmatch(r"[0-9a-f]{64}", stored.token_hash)
    assert token not in audit_text()


def test_api_client_same_name_twice_fails(runner: FlaskCliRunner) -> None:
    created_token(runner, "dpi-prod")
    result = runner.invoke(args=["api-client", "create", "dpi-prod"])
    assert result.exit_code == 1
    assert "already exists" in result.output
    assert count(ApiClient) == 1


def test_api_client_bad_name_fails(runner: FlaskCliRunner) -> None:
    result = runner.invoke(args=["api-client", "create", "dpi prod; drop"])
    assert result.exit_code == 1
    assert count(ApiClient) == 0


def test_api_client_revoke_answers_401_at_once(
    runner: FlaskCliRunner, client: FlaskClient
) -> None:
    token = created_token(runner, "dpi-prod")
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v1/doctors", headers=headers).status_code == 200

    result = runner.invoke(args=["api-client", "revoke", "dpi-prod"])

    assert result.exit_code == 0, result.output
    answer = client.get("/api/v1/doctors", headers=headers)
    assert answer.status_code == 401
    assert answer.mimetype == "application/problem+json"
    assert "api_client.revoked" in actions()


def test_api_client_revoke_unknown_name_fails(runner: FlaskCliRunner) -> None:
    result = runner.invoke(args=["api-client", "revoke", "nobody"])
    assert result.exit_code == 1
    assert "no API client" in result.output


DPI_SCOPES = ["consents:write", "doctors:read", "documents:read", "documents:write",
              "events:read", "patients:write"]


def scopes_of(name: str) -> list[str]:
    db.session.expire_all()
    stored = db.session.scalars(select(ApiClient).where(ApiClient.name == name)).one()
    return sorted(stored.scopes)


def test_api_client_create_without_scope_gives_the_dpis_set(runner: FlaskCliRunner) -> None:
    result = runner.invoke(args=["api-client", "create", "dpi-prod"])
    assert result.exit_code == 0, result.output
    # Every scope but documents:admin, said on creation and in the trail
    assert scopes_of("dpi-prod") == DPI_SCOPES
    assert f"scopes: {' '.join(DPI_SCOPES)}" in result.output
    (created,) = db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == "api_client.created")).all()
    assert created.details == {"scopes": DPI_SCOPES}


def test_api_client_create_with_scopes_gives_exactly_those(
    runner: FlaskCliRunner, client: FlaskClient
) -> None:
    result = runner.invoke(args=["api-client", "create", "dpi-audit", "--scope", "events:read",
                                 "--scope", "documents:admin", "--scope", "events:read"])
    assert result.exit_code == 0, result.output
    assert scopes_of("dpi-audit") == ["documents:admin", "events:read"]
    token = re.findall(r"^rl_\S+$", result.output, re.MULTILINE)[0]
    headers = {"Authorization": f"Bearer {token}"}
    # The feed is open to it, the directory is not
    assert client.get("/api/v1/events", headers=headers).status_code == 200
    assert client.get("/api/v1/doctors", headers=headers).status_code == 403


@pytest.mark.parametrize("scope", ["documents:delete", "DOCUMENTS:WRITE", "documents", "",
                                   "documents:write events:read"])
def test_api_client_create_with_an_unknown_scope_creates_nothing(
    runner: FlaskCliRunner, scope: str
) -> None:
    result = runner.invoke(args=["api-client", "create", "dpi-prod", "--scope", "doctors:read",
                                 "--scope", scope])
    assert result.exit_code == 1
    assert f"unknown scope {scope!r}" in result.output
    # The message names the scopes there are
    assert "documents:write" in result.output and "events:read" in result.output
    assert "rl_" not in result.output
    assert count(ApiClient) == 0
    assert actions() == []


# --- doctors enrol ------------------------------------------------------------------------------


def enrol(runner: FlaskCliRunner, gln: str = GLN, **options: str) -> Any:
    values = {
        "family-name": "Rochat",
        "given-name": "Luc",
        "email": "luc.rochat@example.ch",
        "mobile": "+41791234567",
        **options,
    }
    args = ["doctors", "enrol", gln]
    for name, value in values.items():
        args += [f"--{name}", value]
    return runner.invoke(args=args)


def printed(output: str, label: str) -> str:
    match = re.search(rf"^{label}: (\S+)$", output, re.MULTILINE)
    assert match is not None, output
    return match.group(1)


def test_doctors_enrol_creates_an_active_sms_doctor(runner: FlaskCliRunner) -> None:
    result = enrol(runner)

    assert result.exit_code == 0, result.output
    login = printed(result.output, "login")
    password = printed(result.output, "temporary password")
    doctor = db.session.scalar(select(Doctor).where(Doctor.gln == GLN))
    assert doctor is not None
    assert doctor.login == login == "lrochat"
    assert doctor.state == "active"
    assert doctor.activated_at is not None
    assert doctor.can_receive
    assert doctor.sign_in_mode == "sms"
    assert doctor.mobile == "+41791234567"
    assert doctor.email == "luc.rochat@example.ch"
    assert doctor.must_change_password is True
    assert doctor.password_hash is not None
    assert doctor.password_hash.startswith("$argon2id$")
    assert password not in doctor.password_hash

    from app.auth.passwords import verify_password

    assert verify_password(doctor.password_hash, password)
    enrolled = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "doctor.enrolled"))
    assert enrolled is not None
    assert enrolled.target == f"doctor:{GLN}"
    assert enrolled.actor == "cli"


def test_doctors_enrol_never_writes_the_temporary_password_to_the_audit(
    runner: FlaskCliRunner,
) -> None:
    result = enrol(runner)
    assert result.exit_code == 0, result.output
    password = printed(result.output, "temporary password")
    trail = audit_text()
    assert password not in trail
    assert password.replace("-", "") not in trail


def test_doctors_enrol_completes_a_pending_doctor(
    runner: FlaskCliRunner, app: Flask, api: Any
) -> None:
    # Given a doctor known only from a consent (pending, cannot receive)
    answer = api.put(f"/api/v1/patients/P-0042/consents/{GLN}", json=consent_body())
    assert answer.status_code in (200, 201)
    pending = db.session.scalar(select(Doctor).where(Doctor.gln == GLN))
    assert pending is not None and pending.state == "pending"
    pending_id = pending.id

    # When the desk's migration enrols the same GLN
    result = enrol(runner)

    # Then the same doctor is completed, not duplicated, and the consent is still theirs
    assert result.exit_code == 0, result.output
    db.session.expire_all()
    doctors = db.session.scalars(select(Doctor)).all()
    assert [d.id for d in doctors] == [pending_id]
    assert doctors[0].state == "active"
    assert doctors[0].login == "lrochat"
    assert count(Consent) == 1


@pytest.mark.parametrize("typed", ["0791234567", "+41 79 123 45 67", "0041 79 123 45 67",
                                   "079/123.45.67"])
def test_doctors_enrol_stores_the_mobile_in_e164_form(runner: FlaskCliRunner, typed: str) -> None:
    # The same inputs as at the desk: a Swiss number as people write it.
    result = enrol(runner, mobile=typed)
    assert result.exit_code == 0, result.output
    doctor = db.session.scalar(select(Doctor).where(Doctor.gln == GLN))
    assert doctor is not None
    assert doctor.mobile == "+41791234567"


def test_doctors_enrol_avoids_a_staff_login(runner: FlaskCliRunner) -> None:
    # Given a staff account whose login is the one the doctor would get
    from app.audit import CLI
    from app.staff.accounts import create_staff

    create_staff("lrochat", "staff", CLI)
    db.session.commit()

    # Then the doctor gets another one: one login names one person on the sign-in page
    result = enrol(runner)
    assert result.exit_code == 0, result.output
    assert printed(result.output, "login") == "lrochat2"


def test_doctors_enrol_leads_to_a_working_sign_in(
    runner: FlaskCliRunner, app: Flask, client: FlaskClient, twilio_server: TwilioServer
) -> None:
    # Given a doctor migrated on the command line
    app.config.update(twilio_server.config())
    result = enrol(runner, mobile="079 123 45 67")
    assert result.exit_code == 0, result.output
    login = printed(result.output, "login")
    password = printed(result.output, "temporary password")

    # When the doctor signs in with the printed login and password
    token = csrf_token(client.get("/auth/login"))
    answer = client.post("/auth/login", data={"csrf_token": token, "login": login,
                                              "password": password})

    # Then the password is accepted and the SMS code goes to the mobile
    assert answer.status_code == 303, answer.get_data(as_text=True)
    assert answer.headers["Location"] == "/auth/code"
    assert [m.to for m in twilio_server.messages] == ["+41791234567"]


def test_doctors_enrol_picks_a_free_login(runner: FlaskCliRunner) -> None:
    assert enrol(runner).exit_code == 0
    result = enrol(runner, "7601000000033", email="l.rochat@example.ch")
    assert result.exit_code == 0, result.output
    assert printed(result.output, "login") == "lrochat2"


@pytest.mark.parametrize(
    ("gln", "options", "message"),
    [
        ("7601000000020", {}, "GLN"),
        ("760100000002", {}, "GLN"),
        (GLN, {"mobile": "+41 22 379 11 11"}, "mobile"),
        (GLN, {"mobile": "+4179123"}, "mobile"),
        (GLN, {"mobile": "call me"}, "mobile"),
        (GLN, {"email": "luc.rochat"}, "email"),
        (GLN, {"email": "luc@rochat@example.ch"}, "email"),
        (GLN, {"family-name": "  "}, "names"),
        (GLN, {"family-name": "R" * 201}, "names"),
        (GLN, {"given-name": "Luc\x1b[31m"}, "names"),
        (GLN, {"email": "luc\x00@example.ch"}, "email"),
        (GLN, {"email": "l" * 64 + "@" + "e" * 300 + ".ch"}, "email"),
    ],
    ids=["bad-check-digit", "short-gln", "landline", "short-mobile", "not-a-number", "no-domain",
         "two-ats", "blank-name", "long-name", "control-in-name", "nul-in-email",
         "long-email"],
)
def test_doctors_enrol_refuses_bad_input(
    runner: FlaskCliRunner, gln: str, options: dict[str, str], message: str
) -> None:
    result = enrol(runner, gln, **options)
    assert result.exit_code == 1
    assert message in result.output
    assert count(Doctor) == 0
    assert count(AuditEvent) == 0


def test_doctors_enrol_refuses_a_doctor_who_has_a_login(runner: FlaskCliRunner) -> None:
    first = enrol(runner)
    assert first.exit_code == 0
    hash_before = db.session.scalar(select(Doctor.password_hash).where(Doctor.gln == GLN))
    events_before = count(AuditEvent)

    second = enrol(runner, email="other@example.ch", mobile="+41790000009")

    assert second.exit_code == 1
    assert "already has a login" in second.output
    assert "temporary password" not in second.output
    db.session.expire_all()
    doctor = db.session.scalar(select(Doctor).where(Doctor.gln == GLN))
    assert doctor is not None
    assert doctor.password_hash == hash_before
    assert doctor.email == "luc.rochat@example.ch"
    assert count(AuditEvent) == events_before


def test_doctors_enrol_refuses_a_deactivated_doctor(runner: FlaskCliRunner) -> None:
    db.session.add(Doctor(gln=GLN, family_name="Rochat", given_name="Luc", state="deactivated",
                          activated_at=utcnow(), deactivated_at=utcnow()))
    db.session.commit()
    result = enrol(runner)
    assert result.exit_code == 1
    db.session.expire_all()
    doctor = db.session.scalar(select(Doctor).where(Doctor.gln == GLN))
    assert doctor is not None
    assert doctor.state == "deactivated"
    assert doctor.login is None


# --- demo load ----------------------------------------------------------------------------------


def row_counts() -> dict[str, int]:
    return {
        model.__name__: count(model)
        for model in (Doctor, Patient, Consent, Document, DocumentContent, Delivery, ApiClient)
    }


def test_demo_load_has_every_state_and_rule(runner: FlaskCliRunner) -> None:
    result = runner.invoke(args=["demo", "load"])

    assert result.exit_code == 0, result.output
    assert "demo-Relais-2026!" in result.output  # the printed demo sign-in
    counts = row_counts()
    assert counts["Doctor"] >= 5
    assert counts["Patient"] >= 5
    assert counts["Document"] >= 15
    # A retracted letter's content is destroyed: no one can open it any more.
    retracted = count(select(Document).where(Document.retracted_at.is_not(None)).subquery())
    assert retracted >= 1
    assert counts["DocumentContent"] == counts["Document"] - retracted
    deliveries = db.session.scalars(select(Delivery)).all()
    statuses = {d.status for d in deliveries}
    assert statuses >= {"delivered", "read", "held", "blocked", "cancelled", "retracted"}
    blocked_rules = {d.rule for d in deliveries if d.status == "blocked"}
    assert blocked_rules >= {
        "recipient_unknown", "recipient_inactive", "patient_deceased", "no_consent",
        "third_party_data", "excluded_category", "excluded_service",
    }
    assert any(d.status == "held" and d.release_at is not None for d in deliveries)
    doctors = {d.gln: d for d in db.session.scalars(select(Doctor))}
    assert {d.state for d in doctors.values()} == {"active", "pending", "deactivated"}
    sms = [d for d in doctors.values() if d.sign_in_mode == "sms"]
    assert sms and all(d.password_hash.startswith("$argon2id$") for d in sms)
    assert "demo-Relais-2026!" not in audit_text()


def test_demo_load_is_idempotent(runner: FlaskCliRunner) -> None:
    first = runner.invoke(args=["demo", "load"])
    assert first.exit_code == 0, first.output
    before = row_counts()
    statuses_before = sorted(db.session.scalars(select(Delivery.status)))

    second = runner.invoke(args=["demo", "load"])

    assert second.exit_code == 0, second.output
    assert row_counts() == before
    assert sorted(db.session.scalars(select(Delivery.status))) == statuses_before


def test_demo_load_then_audit_verify_passes(runner: FlaskCliRunner) -> None:
    assert runner.invoke(args=["demo", "load"]).exit_code == 0
    assert runner.invoke(args=["demo", "load"]).exit_code == 0
    result = runner.invoke(args=["audit", "verify"])
    assert result.exit_code == 0, result.output
    assert "intact" in result.output


def test_demo_load_is_refused_in_production(app: Flask, runner: FlaskCliRunner) -> None:
    # Production refuses the demo data however the app was started (simulated here: a real
    # production app would also need production secrets).
    app.config["RELAIS_ENV"] = "production"
    result = runner.invoke(args=["demo", "load"])
    assert result.exit_code == 1
    assert "production" in result.output
    assert row_counts() == dict.fromkeys(row_counts(), 0)


# --- audit verify -------------------------------------------------------------------------------


def test_audit_verify_reports_a_broken_chain(runner: FlaskCliRunner) -> None:
    assert enrol(runner).exit_code == 0
    event = db.session.scalars(select(AuditEvent).order_by(AuditEvent.id)).first()
    assert event is not None
    event.target = "doctor:tampered"
    db.session.commit()
    result = runner.invoke(args=["audit", "verify"])
    assert result.exit_code == 1
    assert "BROKEN" in result.output


def test_audit_verify_refuses_a_malformed_anchor(runner: FlaskCliRunner) -> None:
    result = runner.invoke(args=["audit", "verify", "--anchor", "nonsense"])
    assert result.exit_code == 1


# --- dispatch release-due -----------------------------------------------------------------------


def test_dispatch_release_due_prints_its_counts(
    runner: FlaskCliRunner, api: Any, active_doctor: Doctor
) -> None:
    # Given two held letters whose time has come, one of whose patients has since revoked consent
    for patient_id in ("P-0042", "P-0043"):
        put = api.put(f"/api/v1/patients/{patient_id}/consents/{active_doctor.gln}",
                      json=consent_body())
        assert put.status_code in (200, 201)
        signed = (utcnow() - timedelta(hours=1)).isoformat()
        patient = {"id": patient_id, "family_name": "Muster", "given_name": "Anna",
                   "birth_date": "1961-04-02", "deceased": False}
        posted = api.post("/api/v1/documents", json=document_body(
            f"DPI-{patient_id}", patient=patient, sensitive=True, signed_at=signed))
        assert posted.status_code == 201, posted.get_json()
        assert posted.get_json()["deliveries"][0]["status"] == "held"
    for delivery in db.session.scalars(select(Delivery)):
        delivery.release_at = utcnow() - timedelta(minutes=1)
    consent = db.session.scalars(
        select(Consent).join(Patient).where(Patient.dpi_id == "P-0043")
    ).one()
    consent.revoked_at = utcnow()
    db.session.commit()

    # When the job runs
    result = runner.invoke(args=["dispatch", "release-due"])

    # Then it says what it did
    assert result.exit_code == 0, result.output
    assert "released: 1 delivered, 1 cancelled" in result.output
    assert sorted(db.session.scalars(select(Delivery.status))) == ["cancelled", "delivered"]

    # And a second run finds nothing left
    again = runner.invoke(args=["dispatch", "release-due"])
    assert "released: 0 delivered, 0 cancelled" in again.output


# --- audit verify records its result (read by the desk's audit viewer) ----------------------------


def _verifications() -> list[AuditEvent]:
    db.session.expire_all()
    return list(db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == "audit.verified").order_by(AuditEvent.id)))


def test_audit_verify_records_a_success(runner: FlaskCliRunner) -> None:
    assert enrol(runner).exit_code == 0
    last = int(db.session.scalar(select(func.max(AuditEvent.id))) or 0)
    result = runner.invoke(args=["audit", "verify"])
    assert result.exit_code == 0, result.output
    assert result.output == "audit trail intact\n"
    [verified] = _verifications()
    assert (verified.actor, verified.outcome, verified.target) == ("cli", "success",
                                                                  "audit:trail")
    assert verified.details == {"through": last}
    assert verified.id == last + 1
    # The recorded verification keeps the chain whole: the next run checks it too
    again = runner.invoke(args=["audit", "verify"])
    assert again.exit_code == 0, again.output
    assert _verifications()[-1].details == {"through": verified.id}


def test_audit_verify_records_a_failure_with_the_first_break(runner: FlaskCliRunner) -> None:
    assert enrol(runner).exit_code == 0
    event = db.session.scalars(select(AuditEvent).order_by(AuditEvent.id)).first()
    assert event is not None
    event.target = "doctor:tampered"
    db.session.commit()
    result = runner.invoke(args=["audit", "verify"])
    assert result.exit_code == 1
    assert result.output.startswith(f"audit trail BROKEN at event {event.id}: ")
    [verified] = _verifications()
    assert verified.outcome == "failure"
    assert verified.details["broken_at"] == event.id
    assert verified.details["through"] == event.id
    assert verified.details["problem"] == "its content does not match its hash"


def test_audit_verify_records_the_anchor(runner: FlaskCliRunner) -> None:
    assert enrol(runner).exit_code == 0
    first = db.session.scalars(select(AuditEvent).order_by(AuditEvent.id)).first()
    assert first is not None
    result = runner.invoke(args=["audit", "verify", "--anchor", f"{first.id}:{'a' * 64}"])
    assert result.exit_code == 1
    [verified] = _verifications()
    assert verified.outcome == "failure"
    assert verified.details["anchor"] == first.id
    assert verified.details["problem"] == "differs from the anchored copy"


def test_audit_verify_without_a_head_row_still_reports(runner: FlaskCliRunner) -> None:
    from sqlalchemy import text

    assert enrol(runner).exit_code == 0
    db.session.execute(text("DELETE FROM audit_head"))
    db.session.commit()
    try:
        result = runner.invoke(args=["audit", "verify"])
        assert result.exit_code == 1
        assert "BROKEN at chain head: the head row is missing" in result.output
        assert "could not be recorded" in result.output
        assert _verifications() == []
    finally:  # the next test's reset only rewinds the head row: put it back
        db.session.rollback()
        db.session.execute(text("INSERT INTO audit_head (id, seq, last_hash) VALUES (1, 0, :h)"),
                           {"h": "0" * 64})
        db.session.commit()
