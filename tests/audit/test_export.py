"""The exports of the audit viewer: CSV (formula cells neutralised) and a FHIR R4 Bundle of
AuditEvent resources following IHE BALP, checked with ``fhir.resources.R4B``. Both carry the
current filters, stream in batches, stop at the cap, and are themselves audited.

Every test runs on SQLite and, with TEST_DATABASE_URL, on PostgreSQL.
"""

from __future__ import annotations

import base64
import csv
import io
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.test import TestResponse

from app.audit import CLI, Actor, record, verify
from app.audit import queries as audit_export
from app.audit.csv_export import neutralise
from app.audit.fhir import (
    ACTION_PATTERNS,
    BALP,
    CREATE,
    DELETE,
    LOGIN,
    QUERY,
    READ,
    UPDATE,
    pattern_for,
)
from app.audit.queries import AuditFilters, export_rows, parse_filters
from app.extensions import db
from app.models import AuditEvent, StaffUser
from app.staff.accounts import create_staff
from tests.support.signin import sign_in_as

DESK_ACTOR = "desk:desk-export"


@pytest.fixture()
def desk(client: FlaskClient) -> StaffUser:
    user, _, _ = create_staff("desk-export", "desk", CLI)
    user.must_change_password = False
    db.session.commit()
    sign_in_as(client, user)
    return user


def seed() -> None:
    record(Actor("api", "dpi"), "document.received", target="document:DPI-1", patient="P-1",
           details={"recipients": 1})
    record(Actor("doctor", "7601000000019"), "document.viewed", target="document:DPI-1",
           patient="P-1", details={"delivery": 1, "via": "viewer"})
    record(Actor("api", "dpi"), "api.rejected", outcome="rejected", details={"status": 422})
    record(Actor("staff", "accueil"), "consent.recorded", target="consent:P-2/7601000000019",
           patient="P-2", rule="minor")
    record(Actor("doctor", "7601000000019"), "auth.signed_in", target="doctor:7601000000019")
    record(CLI, "documents.keys_rotated", outcome="failure", details={"error": "x"})
    db.session.commit()


def csv_rows(response: TestResponse) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))


def exported(action: str = "audit.exported") -> list[AuditEvent]:
    db.session.expire_all()
    return list(db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)))


def bundle_of(response: TestResponse) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(response.get_data(as_text=True))
    Bundle.model_validate(data)  # raises on anything R4B refuses
    return data


def resources(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [entry["resource"] for entry in bundle.get("entry", [])]


def by_action(bundle: dict[str, Any], action: str) -> dict[str, Any]:
    [found] = [r for r in resources(bundle)
               if any(c["code"] == action for c in r["subtype"])]
    return found


def entity(resource: dict[str, Any], role: str) -> list[dict[str, Any]]:
    return [e for e in resource.get("entity", []) if e["role"]["code"] == role]


# --- CSV -------------------------------------------------------------------------------------


def test_csv_export_of_the_current_filter(client: FlaskClient, desk: StaffUser) -> None:
    seed()
    response = client.get("/staff/audit/export.csv?patient=P-1")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    disposition = response.headers["Content-Disposition"]
    assert disposition.startswith("attachment;") and disposition.endswith('.csv"')
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_data(as_text=True)
    assert body.splitlines()[0] == ("id,time,actor,action,target,patient,outcome,rule,"
                                    "request_id,details,hash")
    rows = csv_rows(response)
    assert [r["action"] for r in rows] == ["document.viewed", "document.received"]
    assert {r["patient"] for r in rows} == {"P-1"}
    viewed = rows[0]
    assert viewed["actor"] == "doctor:7601000000019"
    assert viewed["target"] == "document:DPI-1"
    assert json.loads(viewed["details"]) == {"delivery": 1, "via": "viewer"}
    stored = db.session.get(AuditEvent, int(viewed["id"]))
    assert stored is not None
    assert viewed["hash"] == stored.hash
    # ISO 8601 in UTC
    when = datetime.fromisoformat(viewed["time"].replace("Z", "+00:00"))
    assert viewed["time"].endswith("Z")
    assert when == stored.time.astimezone(UTC)


def test_csv_neutralises_spreadsheet_formulas(client: FlaskClient, desk: StaffUser) -> None:
    record(Actor("=cmd|' /C calc'!A0"), "test.event", target="+thing:1",
           patient="-P-3", rule="@SUM(A1)", details={"note": "=1+1"})
    record(Actor("\tdpi"), "test.event", target="\rtab", patient="P-4")
    db.session.commit()
    rows = csv_rows(client.get("/staff/audit/export.csv?action=test.event"))
    second, first = rows
    assert first["actor"] == "'=cmd|' /C calc'!A0"
    assert first["target"] == "'+thing:1"
    assert first["patient"] == "'-P-3"
    assert first["rule"] == "'@SUM(A1)"
    assert first["details"] == '{"note": "=1+1"}'  # JSON starts with "{": left as it is
    assert second["actor"] == "'\tdpi"
    assert second["target"] == "'\rtab"
    assert second["patient"] == "P-4"
    for start in ("=", "+", "-", "@", "\t", "\r"):
        assert neutralise(start + "x") == "'" + start + "x"
    assert neutralise("plain") == "plain"
    assert neutralise("") == ""


def test_an_export_is_audited_with_its_count_and_filters(
    client: FlaskClient, desk: StaffUser
) -> None:
    seed()
    rows = csv_rows(client.get("/staff/audit/export.csv?patient=P-1&from=2020-01-01"))
    [event] = exported()
    assert event.actor == DESK_ACTOR
    assert event.patient == "P-1"  # the patient in the event's own column, not in details
    assert event.details["format"] == "csv"
    assert event.details["count"] == len(rows) == 2
    assert event.details["filters"] == {"from": "2020-01-01"}
    assert event.details["capped"] is False
    # The export does not carry its own event; the next one carries the first
    response = client.get("/staff/audit/export.json?action=audit.exported")
    bundle = bundle_of(response)
    assert [r["id"] for r in resources(bundle)] == [str(event.id)]
    assert exported()[-1].details["format"] == "fhir"
    assert exported()[-1].details["count"] == 1
    assert verify() is None


def test_exports_stop_at_the_cap(
    client: FlaskClient, desk: StaffUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(7):
        record(Actor("api", "dpi"), "test.event", target=f"thing:{i}")
    db.session.commit()
    monkeypatch.setattr(audit_export, "EXPORT_LIMIT", 5)
    rows = csv_rows(client.get("/staff/audit/export.csv?action=test.event"))
    assert [r["target"] for r in rows] == [f"thing:{i}" for i in (6, 5, 4, 3, 2)]
    assert exported()[-1].details["count"] == 5
    assert exported()[-1].details["capped"] is True
    assert len(resources(bundle_of(client.get("/staff/audit/export.json")))) == 5


def test_rows_are_read_in_batches(app: Flask) -> None:
    for i in range(10):
        record(Actor("api", "dpi"), "test.event", target=f"thing:{i}")
    db.session.commit()
    filters, errors = parse_filters({"action": "test.event"})
    assert errors == {}
    rows = list(export_rows(filters, through=9, batch=3))
    assert [r.id for r in rows] == list(range(9, 0, -1))  # the tenth is after ``through``
    assert [r.id for r in export_rows(filters, through=10, limit=4, batch=3)] == [10, 9, 8, 7]
    assert list(export_rows(AuditFilters(raw={}, action="none"), through=10)) == []


# --- FHIR --------------------------------------------------------------------------------------


def test_fhir_export_is_a_valid_r4b_bundle_of_balp_audit_events(
    client: FlaskClient, desk: StaffUser
) -> None:
    seed()
    response = client.get("/staff/audit/export.json")
    assert response.status_code == 200
    assert response.mimetype == "application/fhir+json"
    disposition = response.headers["Content-Disposition"]
    assert disposition.startswith("attachment;") and disposition.endswith('.json"')
    bundle = bundle_of(response)
    assert bundle["resourceType"] == "Bundle"
    assert bundle["type"] == "collection"
    found = resources(bundle)
    assert len(found) == 7  # the desk user's creation and the six seeded
    for resource in found:
        assert resource["resourceType"] == "AuditEvent"
        [profile] = resource["meta"]["profile"]
        assert profile.startswith(BALP)
        assert resource["recorded"].endswith("Z")
        assert resource["source"]["observer"]["display"] == "Relais"
        requestors = [a for a in resource["agent"] if a["requestor"]]
        assert len(requestors) == 1
        assert any(a["type"]["coding"][0]["code"] == "110152" for a in resource["agent"])
        stored = db.session.get(AuditEvent, int(resource["id"]))
        assert stored is not None
        # The patient entity whenever the event has a patient, and only then
        patients = entity(resource, "1")
        if stored.patient:
            [patient] = patients
            assert patient["what"]["identifier"]["value"] == stored.patient
            assert patient["type"]["code"] == "1"
            assert "Patient" in profile
        else:
            assert patients == []
            assert "Patient" not in profile

    received = by_action(bundle, "document.received")
    assert received["meta"]["profile"] == [BALP + "PatientCreate"]
    assert received["action"] == "C"
    assert received["type"]["code"] == "rest"
    assert received["subtype"][0] == {"system": "http://hl7.org/fhir/restful-interaction",
                                      "code": "create", "display": "create"}
    assert received["outcome"] == "0"
    [document] = entity(received, "4")
    assert document["what"]["type"] == "DocumentReference"
    assert document["what"]["identifier"]["value"] == "DPI-1"
    [client_agent, _server] = received["agent"]
    assert client_agent["who"]["identifier"]["value"] == "dpi"
    assert client_agent["requestor"] is True

    viewed = by_action(bundle, "document.viewed")
    assert viewed["meta"]["profile"] == [BALP + "PatientRead"]
    assert viewed["action"] == "R"
    user = next(a for a in viewed["agent"] if a["requestor"])
    assert user["who"]["identifier"] == {"system": "urn:oid:2.51.1.3",
                                         "value": "7601000000019"}
    details = {d["type"]: d["valueString"] for d in entity(viewed, "4")[0]["detail"]}
    assert details["via"] == "viewer"
    assert details["hash"]

    rejected = by_action(bundle, "api.rejected")
    assert rejected["outcome"] == "4"
    assert rejected["meta"]["profile"] == [BALP + "Create"]

    consent = by_action(bundle, "consent.recorded")
    assert consent["meta"]["profile"] == [BALP + "PatientCreate"]
    assert entity(consent, "1")[0]["what"]["identifier"]["value"] == "P-2"

    login = by_action(bundle, "auth.signed_in")
    assert login["meta"]["profile"] == [BALP + "Login"]
    assert login["type"]["code"] == "110114"
    assert login["subtype"][0]["code"] == "110122"
    assert login["action"] == "E"

    rotated = by_action(bundle, "documents.keys_rotated")
    assert rotated["outcome"] == "8"
    assert rotated["meta"]["profile"] == [BALP + "Update"]


def test_fhir_export_of_one_patient_and_of_nothing(client: FlaskClient, desk: StaffUser) -> None:
    seed()
    bundle = bundle_of(client.get("/staff/audit/export.json?patient=P-2"))
    [only] = resources(bundle)
    assert entity(only, "1")[0]["what"]["identifier"]["value"] == "P-2"
    empty = bundle_of(client.get("/staff/audit/export.json?patient=P-404"))
    assert "entry" not in empty


def test_query_pattern_for_exports_and_verifications(client: FlaskClient, desk: StaffUser) -> None:
    seed()
    client.get("/staff/audit/export.csv?patient=P-1")
    bundle = bundle_of(client.get("/staff/audit/export.json?action=audit.exported"))
    [resource] = resources(bundle)
    assert resource["meta"]["profile"] == [BALP + "PatientQuery"]
    assert resource["action"] == "E"
    assert resource["subtype"][0]["code"] == "search-type"
    [query] = entity(resource, "24")
    assert json.loads(base64.b64decode(query["query"]))["format"] == "csv"


def test_a_broken_chain_verification_is_a_major_failure(app: Flask) -> None:
    from app.audit.fhir import audit_event_resource
    from app.audit.trail import ChainBreak, Verification, record_verification

    event = record_verification(CLI, Verification(ChainBreak(3, "rewritten"), 3))
    resource = audit_event_resource(event)
    assert resource["outcome"] == "12"
    Bundle.model_validate({"resourceType": "Bundle", "type": "collection",
                           "entry": [{"resource": resource}]})
    db.session.rollback()


# --- the mapping table -------------------------------------------------------------------------


def test_every_mapped_action_and_unknown_ones_have_a_pattern() -> None:
    assert {ACTION_PATTERNS[a] for a in ("document.viewed", "document.downloaded")} == {READ}
    assert ACTION_PATTERNS["document.retracted"] is DELETE
    assert ACTION_PATTERNS["auth.signed_in"] is LOGIN
    assert ACTION_PATTERNS["audit.exported"] is QUERY
    # A new action is placed by its verb
    assert pattern_for("worklist.created") is CREATE
    assert pattern_for("notification.viewed") is READ
    assert pattern_for("thing.deleted") is DELETE
    assert pattern_for("things.searched") is QUERY
    assert pattern_for("worklist.handled") is UPDATE
