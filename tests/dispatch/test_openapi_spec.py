"""The DPI API's OpenAPI description: valid OpenAPI 3.1, true to INTERFACES.md, and strict enough
that tests/openapi_check.py catches an app answering something else."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from openapi_spec_validator import OpenAPIV31SpecValidator, validate

from tests.openapi_check import (
    assert_request_valid,
    assert_response_matches,
    find_operation,
    load_spec,
    schema_errors,
)

JSON = "application/json"
PROBLEM = "application/problem+json"
GLN = "7601000000019"  # valid GS1 check digit
OTHER_GLN = "7601000000026"
HASH_A = "a" * 64
HASH_0 = "0" * 64

# Every operation of the contract and the statuses it may answer (INTERFACES.md, DPI API v1).
EXPECTED_STATUSES: dict[tuple[str, str], set[str]] = {
    ("post", "/api/v1/documents"): {"200", "201", "400", "401", "403", "409", "413", "415",
                                    "422", "429", "503"},
    ("get", "/api/v1/documents/{document_id}"): {"200", "401", "403", "404", "429", "503"},
    ("post", "/api/v1/documents/{document_id}/retract"): {
        "200",
        "400",
        "401",
        "403",
        "404",
        "413",
        "422",
        "429",
        "503",
    },
    ("put", "/api/v1/patients/{patient_id}/consents/{gln}"): {
        "200",
        "201",
        "400",
        "401",
        "403",
        "413",
        "422",
        "429",
        "503",
    },
    ("delete", "/api/v1/patients/{patient_id}/consents/{gln}"): {"204", "401", "403", "404",
                                                                 "429", "503"},
    ("patch", "/api/v1/patients/{patient_id}"): {"200", "400", "401", "403", "404", "413", "422",
                                                   "429", "503"},
    ("get", "/api/v1/events"): {"200", "401", "403", "422", "429", "503"},
    ("get", "/api/v1/doctors"): {"200", "401", "403", "422", "429", "503"},
    ("get", "/api/v1/openapi.json"): {"200"},
}
# The scopes each operation needs, any one of them (INTERFACES.md, "API client scopes").
EXPECTED_SCOPES: dict[tuple[str, str], list[str]] = {
    ("post", "/api/v1/documents"): ["documents:write"],
    ("get", "/api/v1/documents/{document_id}"): ["documents:read", "documents:admin"],
    ("post", "/api/v1/documents/{document_id}/retract"): ["documents:write", "documents:admin"],
    ("put", "/api/v1/patients/{patient_id}/consents/{gln}"): ["consents:write"],
    ("delete", "/api/v1/patients/{patient_id}/consents/{gln}"): ["consents:write"],
    ("patch", "/api/v1/patients/{patient_id}"): ["patients:write"],
    ("get", "/api/v1/events"): ["events:read"],
    ("get", "/api/v1/doctors"): ["doctors:read"],
}
SCOPES = ["documents:write", "documents:read", "documents:admin", "consents:write",
          "patients:write", "doctors:read", "events:read"]
PUBLIC_OPERATIONS = {("get", "/api/v1/openapi.json")}
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return load_spec()


def operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield method, path, operation


def walk(node: object, trail: str = "") -> Iterator[tuple[str, object]]:
    """Every node of a JSON document with its JSON pointer."""
    yield trail, node
    if isinstance(node, dict):
        for key, value in node.items():
            token = str(key).replace("~", "~0").replace("/", "~1")
            yield from walk(value, f"{trail}/{token}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, f"{trail}/{index}")


# --- Example bodies, one per schema, as the app answers them --------------------------------


def ingest_document() -> dict[str, Any]:
    return {
        "document_id": "DPI-2026-000123",
        "patient": {
            "id": "P-0042",
            "family_name": "Muster",
            "given_name": "Anna",
            "birth_date": "1961-04-02",
            "deceased": False,
        },
        "encounter": "outpatient",
        "recipients": [GLN],
        "type": "discharge_letter",
        "title": "Lettre de sortie",
        "service": "cardiologie",
        "author": "Dr B. Exemple",
        "signed_at": "2026-11-20T16:05:00+01:00",
        "sensitive": False,
        "third_party_data": False,
        "category": "report",
        "content_type": "application/pdf",
        "content": "JVBERi0xLjQK",
    }


def ingest_result() -> dict[str, Any]:
    return {
        "document_id": "DPI-2026-000123",
        "deliveries": [
            {
                "recipient": GLN,
                "status": "delivered",
                "rule": "ok",
                "reason": "All dispatch rules passed.",
                "release_at": None,
            },
            {
                "recipient": OTHER_GLN,
                "status": "held",
                "rule": "sensitive_delay",
                "reason": "Sensitive document held for 7 days after signature.",
                "release_at": "2026-11-27T15:05:00Z",
            },
            {
                "recipient": "7601000000033",
                "status": "blocked",
                "rule": "no_consent",
                "reason": "Patient has not consented.",
                "release_at": None,
            },
        ],
    }


def delivery_out(**changes: object) -> dict[str, Any]:
    delivery: dict[str, Any] = {
        "recipient": GLN,
        "status": "read",
        "rule": "ok",
        "reason": "All dispatch rules passed.",
        "release_at": None,
        "decided_at": "2026-11-20T15:06:00+00:00",
        "delivered_at": "2026-11-20T15:06:00+00:00",
        "first_read_at": "2026-11-21T08:30:12.5+01:00",
        "cancelled_at": None,
        "retracted_at": None,
        "reported_not_my_patient_at": None,
    }
    delivery.update(changes)
    return delivery


def document_out(*deliveries: dict[str, Any]) -> dict[str, Any]:
    return {
        "document_id": "DPI-2026-000123",
        "patient_id": "P-0042",
        "type": "discharge_letter",
        "title": "Lettre de sortie <b>",
        "service": "cardiologie",
        "author": "Dr B. Exemple",
        "encounter": "inpatient",
        "category": "report",
        "signed_at": "2026-11-20T16:05:00+01:00",
        "sensitive": True,
        "third_party_data": False,
        "content_type": "application/pdf",
        "size": 18234,
        "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "received_at": "2026-11-20T15:06:00Z",
        "retracted_at": None,
        "retraction_reason": None,
        "deliveries": list(deliveries),
    }


def consent_in(**changes: object) -> dict[str, Any]:
    consent: dict[str, Any] = {
        "electronic_sending": True,
        "designation": "treating_doctor",
        "given_by": "patient",
        "recorded_by": "staff login or name",
        "patient": {"family_name": "Muster", "given_name": "Anna", "birth_date": "1961-04-02"},
    }
    consent.update(changes)
    return consent


def consent_out() -> dict[str, Any]:
    return {
        "patient_id": "P-0042",
        "gln": GLN,
        "designation": "treating_doctor",
        "electronic_sending": True,
        "given_by": "representative",
        "representative_name": "Marie Muster",
        "minor_agreement": True,
        "recorded_by": "desk.anna",
        "recorded_at": "2026-11-20T10:00:00+01:00",
        "revoked_at": None,
        "doctor_state": "pending",
    }


def event(event_id: int, **changes: object) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": event_id,
        "time": "2026-11-20T15:06:00+00:00",
        "actor": "api:dpi",
        "action": "document.ingest",
        "target": "document:DPI-2026-000123",
        "patient": "P-0042",
        "outcome": "success",
        "rule": None,
        "request_id": "0b7c1f2e",
        "details": {"deliveries": 1},
        "prev_hash": HASH_0,
        "hash": HASH_A,
    }
    entry.update(changes)
    return entry


def doctor() -> dict[str, Any]:
    return {
        "gln": GLN,
        "family_name": "Exemple",
        "given_name": "Claire",
        "specialties": ["cardiology"],
        "locality": None,
        "active": True,
        "state": "active",
        "sign_in_mode": "hin",
        "notifications": False,
    }


def problem(status: int, **extra: object) -> dict[str, Any]:
    return {
        "type": "about:blank",
        "title": "Problem",
        "status": status,
        "detail": "Something is wrong.",
        **extra,
    }


# --- The document itself -------------------------------------------------------------------


def test_is_a_valid_openapi_31_document(spec: dict[str, Any]) -> None:
    validate(spec, cls=OpenAPIV31SpecValidator)
    assert spec["openapi"] == "3.1.0"
    assert spec["servers"] == [{"url": "/"}]
    bearer = spec["components"]["securitySchemes"]["bearerAuth"]
    assert (bearer["type"], bearer["scheme"]) == ("http", "bearer")
    assert spec["security"] == [{"bearerAuth": []}]


def test_every_operation_of_the_contract_is_there_with_its_statuses(spec: dict[str, Any]) -> None:
    documented = {
        (method, path): set(operation["responses"]) for method, path, operation in operations(spec)
    }
    assert documented == EXPECTED_STATUSES
    assert all(path.startswith("/api/v1/") for path in spec["paths"])


def test_operation_ids_are_present_and_unique(spec: dict[str, Any]) -> None:
    ids = [operation.get("operationId") for _, _, operation in operations(spec)]
    assert all(ids)
    assert len(ids) == len(set(ids))


def test_every_operation_documents_401_and_403_unless_public(spec: dict[str, Any]) -> None:
    for method, path, operation in operations(spec):
        if (method, path) in PUBLIC_OPERATIONS:
            assert operation["security"] == []
        else:
            assert "401" in operation["responses"], (method, path)
            assert operation["responses"]["403"] == {"$ref": "#/components/responses/Forbidden"}


def test_every_operation_declares_the_scopes_it_needs(spec: dict[str, Any]) -> None:
    # OpenAPI 3.1 lets a security requirement name roles for any scheme: one requirement per
    # scope that allows the call (the requirements of a list are alternatives).
    declared = {
        (method, path): [scope for requirement in operation["security"]
                         for scope in requirement["bearerAuth"]]
        for method, path, operation in operations(spec) if (method, path) not in PUBLIC_OPERATIONS
    }
    assert declared == EXPECTED_SCOPES
    for method, path, operation in operations(spec):
        if (method, path) not in PUBLIC_OPERATIONS:
            assert all(len(r) == 1 and len(r["bearerAuth"]) == 1 for r in operation["security"])
            # ... and the same in words, for readers of the description
            for scope in EXPECTED_SCOPES[(method, path)]:
                assert f"`{scope}`" in operation["description"], (method, path, scope)


def test_the_security_scheme_lists_every_scope(spec: dict[str, Any]) -> None:
    bearer = spec["components"]["securitySchemes"]["bearerAuth"]
    assert list(bearer["x-scopes"]) == SCOPES
    assert all(isinstance(text, str) and text for text in bearer["x-scopes"].values())
    for scope in SCOPES:
        assert f"`{scope}`" in bearer["description"]
    assert "403" in spec["components"]["responses"]["Forbidden"]["description"]
    assert "WWW-Authenticate" in spec["components"]["responses"]["Forbidden"]["headers"]


def test_the_declared_scopes_are_the_ones_the_code_checks(
    spec: dict[str, Any], app: Flask
) -> None:
    from app.dispatch.api import REQUIRED_SCOPES

    checked = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint in REQUIRED_SCOPES:
            path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
            for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
                checked[(method.lower(), path)] = list(REQUIRED_SCOPES[rule.endpoint])
    assert checked == EXPECTED_SCOPES


def test_errors_are_problem_details(spec: dict[str, Any]) -> None:
    for method, path, operation in operations(spec):
        for status, response in operation["responses"].items():
            if int(status) < 400:
                continue
            if "$ref" in response:
                response = spec["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
            assert response["content"] == {
                PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}
            }, (method, path, status)


def test_no_openapi_30_nullable(spec: dict[str, Any]) -> None:
    assert [
        trail for trail, node in walk(spec) if isinstance(node, dict) and "nullable" in node
    ] == []


def test_required_properties_are_all_listed(spec: dict[str, Any]) -> None:
    for name, schema in spec["components"]["schemas"].items():
        assert set(schema.get("required", [])) <= set(schema.get("properties", {})), name


def test_request_bodies_refuse_unknown_members(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    reached: set[str] = set()
    pending = [
        media["schema"]
        for _, _, operation in operations(spec)
        for media in operation.get("requestBody", {}).get("content", {}).values()
    ]
    while pending:
        for _, node in walk(pending.pop()):
            if isinstance(node, dict) and str(node.get("$ref", "")).startswith("#/components/"):
                name = node["$ref"].rsplit("/", 1)[1]
                if name not in reached:
                    reached.add(name)
                    pending.append(schemas[name])
    objects = {name for name in reached if schemas[name].get("type") == "object"}
    assert objects == {
        "DocumentIn",
        "PatientIn",
        "RetractIn",
        "ConsentIn",
        "ConsentPatient",
        "PatientPatch",
    }
    for name in objects:
        assert schemas[name]["additionalProperties"] is False, name


def test_examples_in_the_document_are_valid(spec: dict[str, Any]) -> None:
    checked = 0
    for trail, node in walk(spec):
        if isinstance(node, dict) and "schema" in node and "example" in node:
            assert schema_errors(spec, f"{trail}/schema", node["example"]) == [], trail
            checked += 1
    assert checked >= 4


def test_the_helper_checks_date_time_formats(spec: dict[str, Any]) -> None:
    # Without rfc3339-validator, jsonschema would let every string pass as a date-time.
    assert schema_errors(spec, "/components/schemas/DeliveryOut/properties/decided_at", "x") != []


# --- Responses: the helper accepts what the contract says, refuses anything else --------------

VALID_RESPONSES: list[tuple[str, str, int, object, str | None]] = [
    ("POST", "/api/v1/documents", 201, ingest_result(), JSON),
    ("POST", "/api/v1/documents", 200, ingest_result(), "application/json; charset=utf-8"),
    ("POST", "/api/v1/documents", 409, problem(409), PROBLEM),
    ("POST", "/api/v1/documents", 413, problem(413), PROBLEM),
    ("POST", "/api/v1/documents", 415, problem(415), PROBLEM),
    (
        "POST",
        "/api/v1/documents",
        422,
        problem(422, errors=[{"field": "signed_at", "message": "Required."}]),
        PROBLEM,
    ),
    ("POST", "/api/v1/documents", 400, problem(400, type="/problems/malformed-json"), PROBLEM),
    ("GET", "/api/v1/documents/DPI-1", 401, problem(401), PROBLEM),
    (
        "GET",
        "/api/v1/documents/DPI-2026-000123",
        200,
        document_out(
            delivery_out(),
            delivery_out(
                status="held",
                rule="sensitive_delay",
                release_at="2026-11-21T15:05:00Z",
                delivered_at=None,
                first_read_at=None,
            ),
            delivery_out(
                status="cancelled", rule="no_consent", cancelled_at="2026-11-21T15:05:00Z"
            ),
            delivery_out(reported_not_my_patient_at="2026-11-22T09:00:00+01:00"),
        ),
        JSON,
    ),
    ("GET", "/api/v1/documents/DPI-1?x=1", 404, problem(404), PROBLEM),
    (
        "POST",
        "/api/v1/documents/DPI-1/retract",
        200,
        {
            **document_out(delivery_out(status="retracted", retracted_at="2026-11-22T10:00:00Z")),
            "retracted_at": "2026-11-22T10:00:00+01:00",
            "retraction_reason": "Sent to the wrong doctor.",
        },
        JSON,
    ),
    ("PUT", f"/api/v1/patients/P-0042/consents/{GLN}", 201, consent_out(), JSON),
    ("PUT", f"/api/v1/patients/P-0042/consents/{GLN}", 200, consent_out(), JSON),
    ("DELETE", f"/api/v1/patients/P-0042/consents/{GLN}", 204, None, None),
    ("DELETE", f"/api/v1/patients/P-0042/consents/{GLN}", 204, b"", "text/html; charset=utf-8"),
    ("DELETE", f"/api/v1/patients/P-0042/consents/{GLN}", 404, problem(404), PROBLEM),
    ("DELETE", f"/api/v1/patients/P-0042/consents/{GLN}", 403, problem(403), PROBLEM),
    ("GET", "/api/v1/events", 403, problem(403), PROBLEM),
    (
        "PATCH",
        "/api/v1/patients/P-0042",
        200,
        {
            "patient_id": "P-0042",
            "family_name": "Muster",
            "given_name": "Anna",
            "birth_date": "1961-04-02",
            "deceased": True,
            "deceased_at": "2026-11-22T10:00:00+01:00",
        },
        JSON,
    ),
    (
        "GET",
        "/api/v1/events?after=c2&limit=2",
        200,
        {"events": [event(1), event(2, prev_hash=HASH_A, outcome="rejected")], "next": "c3"},
        JSON,
    ),
    ("GET", "/api/v1/events", 200, {"events": [], "next": None}, JSON),
    ("GET", "/api/v1/events?after=nope", 422, problem(422), PROBLEM),
    ("GET", "/api/v1/doctors?q=exe&specialty=cardiology", 200, {"doctors": [doctor()]}, JSON),
    ("GET", "/api/v1/openapi.json", 200, load_spec(), JSON),
]


@pytest.mark.parametrize(
    ("method", "path", "status", "body", "content_type"),
    VALID_RESPONSES,
    ids=[f"{m} {p} {s}" for m, p, s, _, _ in VALID_RESPONSES],
)
def test_the_helper_accepts_documented_answers(
    spec: dict[str, Any],
    method: str,
    path: str,
    status: int,
    body: object,
    content_type: str | None,
) -> None:
    assert_response_matches(spec, method, path, status, body, content_type)


def _with(body: dict[str, Any], dotted: str, value: object) -> dict[str, Any]:
    """A deep copy of ``body`` with ``dotted`` (``deliveries.0.status``) set to ``value``, or
    removed when ``value`` is ``...``."""
    changed = copy.deepcopy(body)
    *parents, last = dotted.split(".")
    node: Any = changed
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return changed


INVALID_RESPONSES: list[tuple[str, str, str, int, object, str | None, str]] = [
    (
        "delivery status lost",
        "GET",
        "/api/v1/documents/DPI-1",
        200,
        document_out(delivery_out(status="lost")),
        JSON,
        "'lost' is not one of",
    ),
    (
        "time without offset",
        "GET",
        "/api/v1/documents/DPI-1",
        200,
        document_out(delivery_out(decided_at="2026-11-20T15:06:00")),
        JSON,
        "is not a 'date-time'",
    ),
    (
        "document content leaks",
        "GET",
        "/api/v1/documents/DPI-1",
        200,
        {**document_out(), "content": "JVBERi0xLjQK"},
        JSON,
        "Additional properties are not allowed",
    ),
    (
        "sha256 too short",
        "GET",
        "/api/v1/documents/DPI-1",
        200,
        {**document_out(), "sha256": "abc"},
        JSON,
        "does not match",
    ),
    (
        "release_at missing",
        "POST",
        "/api/v1/documents",
        201,
        _with(ingest_result(), "deliveries.0.release_at", ...),
        JSON,
        "'release_at' is a required property",
    ),
    (
        "ingest status read",
        "POST",
        "/api/v1/documents",
        201,
        _with(ingest_result(), "deliveries.0.status", "read"),
        JSON,
        "'read' is not one of",
    ),
    (
        "recipient not a GLN",
        "POST",
        "/api/v1/documents",
        201,
        _with(ingest_result(), "deliveries.0.recipient", "760100000001"),
        JSON,
        "does not match",
    ),
    (
        "undocumented status",
        "GET",
        "/api/v1/documents/DPI-1",
        500,
        problem(500),
        PROBLEM,
        "status 500 not documented",
    ),
    (
        "409 only on ingest",
        "POST",
        "/api/v1/documents/DPI-1/retract",
        409,
        problem(409),
        PROBLEM,
        "status 409 not documented",
    ),
    (
        "problem as plain JSON",
        "GET",
        "/api/v1/documents/DPI-1",
        404,
        problem(404),
        JSON,
        "Content-Type 'application/json' not documented",
    ),
    (
        "problem without detail",
        "GET",
        "/api/v1/documents/DPI-1",
        404,
        _with(problem(404), "detail", ...),
        PROBLEM,
        "'detail' is a required property",
    ),
    (
        "204 with a body",
        "DELETE",
        f"/api/v1/patients/P-0042/consents/{GLN}",
        204,
        {"ok": True},
        JSON,
        "documented without content",
    ),
    (
        "consent minor_agreement null",
        "PUT",
        f"/api/v1/patients/P-0042/consents/{GLN}",
        200,
        {**consent_out(), "minor_agreement": None},
        JSON,
        "None is not of type 'boolean'",
    ),
    (
        "event hash uppercase",
        "GET",
        "/api/v1/events",
        200,
        {"events": [event(1, hash="A" * 64)], "next": None},
        JSON,
        "does not match",
    ),
    (
        "events without next",
        "GET",
        "/api/v1/events",
        200,
        {"events": []},
        JSON,
        "'next' is a required property",
    ),
    (
        "doctor sign-in mode",
        "GET",
        "/api/v1/doctors",
        200,
        {"doctors": [{**doctor(), "sign_in_mode": "password"}]},
        JSON,
        "'password' is not one of",
    ),
    (
        "unknown path",
        "GET",
        "/api/v1/documents",
        200,
        {},
        JSON,
        "method not documented",
    ),
    ("unknown api", "GET", "/api/v2/documents/DPI-1", 200, {}, JSON, "no documented path"),
]


@pytest.mark.parametrize(
    ("method", "path", "status", "body", "content_type", "message"),
    [case[1:] for case in INVALID_RESPONSES],
    ids=[case[0] for case in INVALID_RESPONSES],
)
def test_the_helper_refuses_undocumented_answers(
    spec: dict[str, Any],
    method: str,
    path: str,
    status: int,
    body: object,
    content_type: str | None,
    message: str,
) -> None:
    with pytest.raises(AssertionError) as failure:
        assert_response_matches(spec, method, path, status, body, content_type)
    assert message in str(failure.value)
    assert f"{method} {path}" in str(failure.value)


# --- Requests --------------------------------------------------------------------------------

VALID_REQUESTS: list[tuple[str, str, str, object]] = [
    ("ingest", "POST", "/api/v1/documents", ingest_document()),
    (
        "ingest without recipients or deceased",
        "POST",
        "/api/v1/documents",
        _with(_with(ingest_document(), "recipients", ...), "patient.deceased", ...),
    ),
    (
        "ingest with tab and newline",
        "POST",
        "/api/v1/documents",
        {**ingest_document(), "title": "Lettre\tde\nsortie"},
    ),
    (
        "ingest with null signed_at (schema-valid; the app answers 422)",
        "POST",
        "/api/v1/documents",
        {**ingest_document(), "signed_at": None},
    ),
    ("retract", "POST", "/api/v1/documents/DPI-1/retract", {"reason": "Wrong doctor."}),
    ("consent by patient", "PUT", f"/api/v1/patients/P-0042/consents/{GLN}", consent_in()),
    (
        "consent by representative",
        "PUT",
        f"/api/v1/patients/P-7/consents/{GLN}",
        consent_in(given_by="representative", representative_name="Marie", minor_agreement=True),
    ),
    ("revoke", "DELETE", f"/api/v1/patients/P-0042/consents/{GLN}", None),
    ("death", "PATCH", "/api/v1/patients/P-0042", {"deceased": True}),
    ("events", "GET", "/api/v1/events?after=abc&limit=1000", None),
    ("doctors", "GET", "/api/v1/doctors?q=&specialty=cardiology&limit=200", None),
    ("document id with colons and dots", "GET", "/api/v1/documents/DPI:2026.1", None),
]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [case[1:] for case in VALID_REQUESTS],
    ids=[case[0] for case in VALID_REQUESTS],
)
def test_the_helper_accepts_valid_requests(
    spec: dict[str, Any], method: str, path: str, body: object
) -> None:
    assert_request_valid(spec, method, path, body)


INVALID_REQUESTS: list[tuple[str, str, str, object, str]] = [
    (
        "unknown encounter",
        "POST",
        "/api/v1/documents",
        {**ingest_document(), "encounter": "emergency"},
        "'emergency' is not one of",
    ),
    (
        "unknown member",
        "POST",
        "/api/v1/documents",
        {**ingest_document(), "priority": "high"},
        "Additional properties are not allowed",
    ),
    (
        "signed_at missing",
        "POST",
        "/api/v1/documents",
        _with(ingest_document(), "signed_at", ...),
        "'signed_at' is a required property",
    ),
    (
        "signed_at without offset",
        "POST",
        "/api/v1/documents",
        {**ingest_document(), "signed_at": "2026-11-20T16:05:00"},
        "is not a 'date-time'",
    ),
    (
        "bad GLN",
        "POST",
        "/api/v1/documents",
        {**ingest_document(), "recipients": ["76010000000"]},
        "does not match",
    ),
    (
        "duplicate recipients",
        "POST",
        "/api/v1/documents",
        {**ingest_document(), "recipients": [GLN, GLN]},
        "non-unique elements",
    ),
    (
        "empty recipients",
        "POST",
        "/api/v1/documents",
        {**ingest_document(), "recipients": []},
        "should be non-empty",
    ),
    (
        "C0 control character",
        "POST",
        "/api/v1/documents",
        {**ingest_document(), "title": "Lettre\x00"},
        "does not match",
    ),
    (
        "not a PDF content type",
        "POST",
        "/api/v1/documents",
        {**ingest_document(), "content_type": "text/html"},
        "'application/pdf' was expected",
    ),
    (
        "bad document id",
        "POST",
        "/api/v1/documents",
        {**ingest_document(), "document_id": "-leading-dash"},
        "does not match",
    ),
    (
        "patient member unknown",
        "POST",
        "/api/v1/documents",
        _with(ingest_document(), "patient.sex", "F"),
        "Additional properties are not allowed",
    ),
    (
        "empty retract reason",
        "POST",
        "/api/v1/documents/DPI-1/retract",
        {"reason": ""},
        "should be non-empty",
    ),
    ("retract without body", "POST", "/api/v1/documents/DPI-1/retract", None, "required"),
    (
        "representative without name",
        "PUT",
        f"/api/v1/patients/P-7/consents/{GLN}",
        consent_in(given_by="representative"),
        "'representative_name' is a required property",
    ),
    (
        "consent designation",
        "PUT",
        f"/api/v1/patients/P-7/consents/{GLN}",
        consent_in(designation="specialist"),
        "'specialist' is not one of",
    ),
    (
        "consent GLN in path",
        "PUT",
        "/api/v1/patients/P-7/consents/123",
        consent_in(),
        "path parameter 'gln'",
    ),
    (
        "undo a death",
        "PATCH",
        "/api/v1/patients/P-0042",
        {"deceased": False},
        "True was expected",
    ),
    (
        "blank title",
        "POST",
        "/api/v1/documents",
        {**ingest_document(), "title": " \t\n"},
        "does not match",
    ),
    (
        "DEL in author",
        "POST",
        "/api/v1/documents",
        {**ingest_document(), "author": "Dr\x7f"},
        "does not match",
    ),
    (
        "content not base64",
        "POST",
        "/api/v1/documents",
        {**ingest_document(), "content": "%PDF-1.4"},
        "does not match",
    ),
    ("limit zero", "GET", "/api/v1/events?limit=0", None, "query parameter 'limit'"),
    ("doctors limit", "GET", "/api/v1/doctors?limit=201", None, "query parameter 'limit'"),
    ("doctors query", "GET", "/api/v1/doctors?q=" + "x" * 101, None, "query parameter 'q'"),
    ("limit not a number", "GET", "/api/v1/events?limit=ten", None, "query parameter 'limit'"),
    ("body on a GET", "GET", "/api/v1/doctors", {"q": "x"}, "none is documented"),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "message"),
    [case[1:] for case in INVALID_REQUESTS],
    ids=[case[0] for case in INVALID_REQUESTS],
)
def test_the_helper_refuses_invalid_requests(
    spec: dict[str, Any], method: str, path: str, body: object, message: str
) -> None:
    with pytest.raises(AssertionError) as failure:
        assert_request_valid(spec, method, path, body)
    assert message in str(failure.value)


def test_path_templates_prefer_the_most_literal_match(spec: dict[str, Any]) -> None:
    template, _, params = find_operation(spec, "POST", "/api/v1/documents/DPI/2026/1/retract")
    assert (template, params) == (
        "/api/v1/documents/{document_id}/retract",
        {"document_id": "DPI/2026/1"},
    )
    template, _, params = find_operation(spec, "GET", "/api/v1/documents/DPI%2F1?x=y")
    assert (template, params) == ("/api/v1/documents/{document_id}", {"document_id": "DPI/1"})
