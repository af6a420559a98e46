"""DPI API over HTTP: bad input is refused whole, named, and audited (INTERFACES.md, DPI API v1)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask

from app.audit import CLI
from app.dispatch.clients import revoke_client
from app.extensions import db
from app.models import ApiClient, Doctor
from app.pdf import make_pdf
from tests.conftest import PDF, Api, consent_body, document_body, make_app
from tests.dispatch.api_support import (
    GLN,
    PATIENT,
    SPEC,
    CheckedApi,
    assert_rejected,
    counts,
    events,
)
from tests.openapi_check import assert_response_matches


@pytest.fixture()
def dpi(api: Api) -> CheckedApi:
    return CheckedApi(api)


def without(path: str) -> dict[str, Any]:
    body = document_body("DPI-1")
    if "." in path:
        outer, inner = path.split(".")
        del body[outer][inner]
    else:
        del body[path]
    return body


def patient_with(**changes: Any) -> dict[str, Any]:
    return {**document_body()["patient"], **changes}


# (body, the field the 422 must name)
INVALID: list[tuple[dict[str, Any], str]] = [
    # wrong types
    ({**document_body("DPI-1"), "document_id": 123}, "document_id"),
    (document_body("DPI-1", sensitive="yes"), "sensitive"),
    (document_body("DPI-1", third_party_data=0), "third_party_data"),
    (document_body("DPI-1", recipients=GLN), "recipients"),
    (document_body("DPI-1", recipients=[]), "recipients"),
    (document_body("DPI-1", recipients=[7601000000019]), "recipients[0]"),
    (document_body("DPI-1", patient="P-0042"), "patient"),
    (document_body("DPI-1", patient=patient_with(birth_date=19610402)), "patient.birth_date"),
    (document_body("DPI-1", patient=patient_with(birth_date="1961-02-30")), "patient.birth_date"),
    (document_body("DPI-1", patient=patient_with(deceased="no")), "patient.deceased"),
    (document_body("DPI-1", title=None), "title"),
    (document_body("DPI-1", title=["Lettre"]), "title"),
    (document_body("DPI-1", title="   "), "title"),
    (document_body("DPI-1", content=42), "content"),
    # missing fields
    *[(without(f), f) for f in (
        "document_id", "patient", "encounter", "type", "title", "service", "author",
        "sensitive", "third_party_data", "category", "content_type", "content",
    )],
    *[(without(f"patient.{f}"), f"patient.{f}") for f in (
        "id", "family_name", "given_name", "birth_date",
    )],
    # unknown choices
    (document_body("DPI-1", encounter="emergency"), "encounter"),
    (document_body("DPI-1", category="memo"), "category"),
    # GLNs
    (document_body("DPI-1", recipients=["7601000000018"]), "recipients[0]"),
    (document_body("DPI-1", recipients=["760100000001"]), "recipients[0]"),
    (document_body("DPI-1", recipients=[GLN, GLN]), "recipients"),
    # content
    (document_body("DPI-1", content="not base64 at all!"), "content"),
    # times
    (document_body("DPI-1", signed_at="2026-11-20T16:05:00"), "signed_at"),
    (document_body("DPI-1", signed_at="2026-11-20"), "signed_at"),
    (document_body("DPI-1", signed_at="yesterday"), "signed_at"),
    (document_body("DPI-1", signed_at=None), "signed_at"),
    (without("signed_at"), "signed_at"),
    # C0 control characters
    (document_body("DPI-1", title="Lettre\x00"), "title"),
    (document_body("DPI-1", title="Lettre\rde sortie"), "title"),
    (document_body("DPI-1", author="Dr \x1b[31mB"), "author"),
    (document_body("DPI-1", patient=patient_with(family_name="Mu\x07ster")), "patient.family_name"),
    # identifiers
    (document_body("DPI-1 "), "document_id"),
    (document_body("DPI/1"), "document_id"),
    (document_body("DPI-1", patient=patient_with(id="P 42")), "patient.id"),
    # unknown fields
    (document_body("DPI-1", priority="high"), "priority"),
    (document_body("DPI-1", patient=patient_with(ahv="756.1234.5678.97")), "patient.ahv"),
    # NUL and other controls anywhere, even where PostgreSQL could not store them
    (document_body("DPI\x00-1"), "document_id"),
    (document_body("DPI-1", patient=patient_with(id="P\x00")), "patient.id"),
    ({**document_body("DPI-1"), "x\x00y": 1}, "x\x00y"),
    (document_body("DPI-1", title="\x00" * 10), "title"),
]


@pytest.mark.parametrize(("body", "field"), INVALID)
def test_invalid_fields_are_422_naming_the_field(
    dpi: CheckedApi, active_doctor: Doctor, body: dict[str, Any], field: str
) -> None:
    before = counts()
    response = dpi.post("/api/v1/documents", json=body)
    assert_rejected(response, 422, before, field)


@pytest.mark.parametrize("patient", [None, "P-0042", ["P-0042"], "missing"])
def test_a_bad_patient_object_is_named_once(
    dpi: CheckedApi, active_doctor: Doctor, patient: Any
) -> None:
    body = without("patient") if patient == "missing" else document_body("DPI-1", patient=patient)
    response = dpi.post("/api/v1/documents", json=body)
    assert response.status_code == 422
    assert [e["field"] for e in response.get_json()["errors"]] == ["patient"]


@pytest.mark.parametrize("raw", [
    b"{not json",
    b"",
    b'{"document_id": "DPI-1",}',
    '{"title": "caf\u00e9"}'.encode("latin-1"),
    b'\xff\xfe{"a": 1}',
    b"NaN",
    b'{"sensitive": -Infinity}',
    b"[" * 100_000 + b"]" * 100_000,  # nesting too deep for any parser
    # a lone surrogate escape: no Unicode text, and nothing a database can store
    json.dumps(document_body("DPI-1")).replace('"Lettre de sortie"', '"\\ud800"').encode(),
])
def test_malformed_or_non_utf8_body_is_400(
    dpi: CheckedApi, active_doctor: Doctor, raw: bytes
) -> None:
    before = counts()
    response = dpi.post("/api/v1/documents", data=raw, content_type="application/json")
    assert_rejected(response, 400, before)


@pytest.mark.parametrize("body", [[], "a string", 42, None])
def test_a_body_that_is_not_an_object_is_422(
    dpi: CheckedApi, active_doctor: Doctor, body: Any
) -> None:
    before = counts()
    response = dpi.post("/api/v1/documents", data=json.dumps(body), content_type="application/json")
    assert_rejected(response, 422, before, "body")


@pytest.mark.parametrize("changes", [
    {"content": base64.b64encode(b"hello, not a PDF").decode()},
    {"content": base64.b64encode(b"\x89PNG\r\n\x1a\n" + PDF).decode()},
    {"content": ""},
    {"content_type": "text/plain"},
    {"content_type": "application/PDF; charset=x"},
])
def test_content_that_is_not_a_pdf_is_415(
    dpi: CheckedApi, active_doctor: Doctor, changes: dict[str, Any]
) -> None:
    before = counts()
    response = dpi.post("/api/v1/documents", json=document_body("DPI-1", **changes))
    status = 422 if changes.get("content") == "" else 415
    assert_rejected(response, status, before, "content" if status == 422 else None)


@pytest.mark.parametrize("text", ["Lettre\tde sortie", "Lettre\nde sortie\n"])
def test_tab_and_newline_are_fine(dpi: CheckedApi, active_doctor: Doctor, text: str) -> None:
    response = dpi.post("/api/v1/documents", json=document_body("DPI-1", title=text, author=text))
    assert response.status_code == 201
    assert dpi.get("/api/v1/documents/DPI-1").get_json()["title"] == text


def test_unknown_recipient_is_not_an_error(dpi: CheckedApi) -> None:
    response = dpi.post("/api/v1/documents", json=document_body("DPI-1"))
    assert response.status_code == 201
    assert response.get_json()["deliveries"][0]["rule"] == "recipient_unknown"


# --- sizes ----------------------------------------------------------------------------------

SMALL = 4096


@pytest.fixture()
def small_api(app: Flask, api_token: str) -> Iterator[CheckedApi]:
    """The same database, served by an app that accepts PDFs up to SMALL bytes."""
    small = make_app(app.config["SQLALCHEMY_DATABASE_URI"], MAX_DOCUMENT_BYTES=SMALL)
    assert small.config["MAX_DOCUMENT_BYTES"] == SMALL
    yield CheckedApi(Api(small.test_client(), api_token))
    with small.app_context():
        db.session.remove()
        db.engine.dispose()


def pdf_of(size: int) -> bytes:
    pdf = make_pdf(["Lettre"])
    return pdf + b"%" * (size - len(pdf))


@pytest.mark.parametrize("size", [SMALL + 1, SMALL * 3 // 2 + 10, SMALL * 2, SMALL * 3])
def test_content_over_max_document_bytes_is_413(
    small_api: CheckedApi, active_doctor: Doctor, size: int
) -> None:
    before = counts()
    body = document_body("DPI-1", content=base64.b64encode(pdf_of(size)).decode())
    response = small_api.post("/api/v1/documents", json=body)
    assert_rejected(response, 413, before)


def test_content_of_exactly_max_document_bytes_is_accepted(
    small_api: CheckedApi, active_doctor: Doctor
) -> None:
    body = document_body("DPI-1", content=base64.b64encode(pdf_of(SMALL)).decode())
    response = small_api.post("/api/v1/documents", json=body)
    assert response.status_code == 201


def test_request_over_max_content_length_is_413(
    app: Flask, dpi: CheckedApi, active_doctor: Doctor
) -> None:
    before = counts()
    limit = app.config["MAX_CONTENT_LENGTH"]
    body = document_body("DPI-1", author="x" * (limit + 1))
    response = dpi.post("/api/v1/documents", json=body)
    assert_rejected(response, 413, before)


WITH_BODY = [
    ("POST", "/api/v1/documents", document_body("DPI-1")),
    ("POST", "/api/v1/documents/DPI-1/retract", {"reason": "x"}),
    ("PUT", f"/api/v1/patients/{PATIENT}/consents/{GLN}", consent_body()),
    ("PATCH", f"/api/v1/patients/{PATIENT}", {"deceased": True}),
]


@pytest.mark.parametrize(("method", "path", "body"), WITH_BODY)
def test_every_body_over_max_content_length_is_413(
    small_api: CheckedApi, active_doctor: Doctor, method: str, path: str, body: dict[str, Any]
) -> None:
    before = counts()
    padded = json.dumps(body)[:-1] + ', "padding": "' + "x" * 80_000 + '"}'
    response = small_api.request(method, path, data=padded, content_type="application/json")
    assert_rejected(response, 413, before)


@pytest.mark.parametrize(("method", "path", "body"), WITH_BODY)
@pytest.mark.parametrize("raw", [b"{", b"\xff", b"Infinity"])
def test_every_malformed_body_is_400(
    dpi: CheckedApi, active_doctor: Doctor, method: str, path: str, body: Any, raw: bytes
) -> None:
    before = counts()
    response = dpi.request(method, path, data=raw, content_type="application/json")
    assert_rejected(response, 400, before)


# --- authentication -------------------------------------------------------------------------


def unauthenticated(client: Any, method: str, path: str, headers: dict[str, str]) -> Any:
    body = {"PUT": consent_body(), "PATCH": {"deceased": True},
            "POST": document_body("DPI-1")}.get(method)
    if path.endswith("/retract"):
        body = {"reason": "x"}
    response = client.open(path, method=method, headers=headers, json=body)
    assert_response_matches(SPEC, method, path, response.status_code,
                            response.get_json(silent=True), response.content_type)
    return response


ENDPOINTS = [
    ("POST", "/api/v1/documents"),
    ("GET", "/api/v1/documents/DPI-1"),
    ("POST", "/api/v1/documents/DPI-1/retract"),
    ("PUT", f"/api/v1/patients/{PATIENT}/consents/{GLN}"),
    ("DELETE", f"/api/v1/patients/{PATIENT}/consents/{GLN}"),
    ("PATCH", f"/api/v1/patients/{PATIENT}"),
    ("GET", "/api/v1/events"),
    ("GET", "/api/v1/doctors"),
]


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
@pytest.mark.parametrize("how", ["none", "not bearer", "wrong token", "revoked"])
def test_every_endpoint_needs_a_live_token(
    app: Flask, api: Api, api_token: str, active_doctor: Doctor, method: str, path: str, how: str
) -> None:
    headers = {
        "none": {},
        "not bearer": {"Authorization": f"Basic {api_token}"},
        "wrong token": {"Authorization": f"Bearer {api_token[:-4]}AAAA"},
        "revoked": {"Authorization": f"Bearer {api_token}"},
    }[how]
    if how == "revoked":
        revoke_client("dpi-test", CLI)
        db.session.commit()
    before = counts()
    response = unauthenticated(app.test_client(), method, path, headers)
    assert_rejected(response, 401, before)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_token_is_stored_hashed(api: Api, api_token: str) -> None:
    client = db.session.query(ApiClient).one()
    stored = json.dumps({c.name: str(getattr(client, c.key)) for c in ApiClient.__table__.c})
    assert api_token not in stored
    assert api_token[len("rl_0123456789abcdef_"):] not in stored
    assert api.get("/api/v1/events").status_code == 200
    assert all(api_token not in json.dumps(e.details) for e in events())


# (field, longest accepted): the limits match the columns, so PostgreSQL never truncates nor fails
LIMITS = [("title", 500), ("author", 200), ("type", 64), ("service", 64),
          ("patient.family_name", 200), ("patient.given_name", 200), ("patient.id", 64),
          ("document_id", 128)]


def with_text(field: str, value: str) -> dict[str, Any]:
    body = document_body("DPI-1")
    if field.startswith("patient."):
        body["patient"] = patient_with(**{field.split(".")[1]: value})
    else:
        body[field] = value
    return body


@pytest.mark.parametrize(("field", "longest"), LIMITS)
def test_longest_texts_are_stored_whole_and_one_more_is_422(
    dpi: CheckedApi, active_doctor: Doctor, field: str, longest: int
) -> None:
    letter = "D" if field.endswith("id") else "é"
    before = counts()
    too_long = dpi.post("/api/v1/documents", json=with_text(field, letter * (longest + 1)))
    assert_rejected(too_long, 422, before, field)
    body = with_text(field, letter * longest)
    assert dpi.post("/api/v1/documents", json=body).status_code == 201
    stored = dpi.get(f"/api/v1/documents/{body['document_id']}").get_json()
    if field in stored:
        assert stored[field] == letter * longest
