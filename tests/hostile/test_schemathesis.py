"""Schemathesis against the API's own description: no 500, every answer as described.

The description is read from the running app (``GET /api/v1/openapi.json`` through WSGI), and
every operation in it is called with generated requests, valid (by the schema) and invalid,
with the DPI's bearer token and without one. Each answer must not be a server error and must
match the description: a documented status, the documented media type, the documented body
and headers. Both databases (the ``app`` fixture is parametrised).

schemathesis 4.32.5 imports and runs here without a warning, so pytest's ``filterwarnings =
error`` needs no exception for it (a later version that warns fails here, to be looked at).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import select

from app.audit import CLI
from app.dispatch.clients import create_client
from app.extensions import db
from app.models import AuditEvent

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]

#: Examples per operation and mode: small enough that the whole file stays well under 40 s.
EXAMPLES = 8
#: Without a token every answer is the same 401 whatever the input: fewer examples suffice.
EXAMPLES_WITHOUT_TOKEN = 3

OPERATIONS = [
    ("POST", "/api/v1/documents"),
    ("GET", "/api/v1/documents/{document_id}"),
    ("POST", "/api/v1/documents/{document_id}/retract"),
    ("PATCH", "/api/v1/patients/{patient_id}"),
    ("PUT", "/api/v1/patients/{patient_id}/consents/{gln}"),
    ("DELETE", "/api/v1/patients/{patient_id}/consents/{gln}"),
    ("GET", "/api/v1/events"),
    ("GET", "/api/v1/doctors"),
]
# GET /api/v1/openapi.json is the description itself: schemathesis reads it, and leaves it out of
# the operations it calls.


@pytest.fixture()
def fuzzed_app(app: Flask) -> Iterator[Flask]:
    # Calls without a token are budgeted per address (429 after 30 a minute): here the budget
    # is raised so that the unauthenticated answers are the 401s the description promises;
    # test_429_past_the_budget_is_described keeps the budget and its 429.
    app.config["RATELIMIT_API_UNAUTHENTICATED"] = "100000 per minute"
    yield app


def _schema(app: Flask) -> Any:
    return schemathesis.openapi.from_wsgi(
        "/api/v1/openapi.json", app, headers={"Host": "relais.test"}
    )


def _fuzz(app: Flask, headers: dict[str, str], modes: list[GenerationMode],
          examples: int = EXAMPLES) -> None:
    """Every operation of the description, in each of ``modes``, with ``headers``."""
    schema = _schema(app)
    for method, path in OPERATIONS:
        operation = schema[path][method]
        for mode in modes:

            @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
                      suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case: Any) -> None:
                case.call_and_validate(headers={"Host": "relais.test", **headers},
                                       checks=CHECKS)
                db.session.rollback()

            try:
                run()
            except Exception as error:
                error.add_note(f"operation: {method} {path}, {mode.value} data")
                raise


def test_the_description_is_the_one_the_app_serves(app: Flask) -> None:
    operations = {
        (result.ok().method.upper(), result.ok().path)
        for result in _schema(app).get_all_operations()
    }
    # Every operation is fuzzed below: a new one added to the description is fuzzed too.
    assert operations == set(OPERATIONS)


def test_with_the_dpi_token(fuzzed_app: Flask, api_token: str) -> None:
    _fuzz(fuzzed_app, {"Authorization": f"Bearer {api_token}"},
          [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])


def test_with_a_token_without_scopes(fuzzed_app: Flask) -> None:
    # A client holding none of the scopes: the scope check comes before anything reads the
    # request, so whatever is generated, each operation answers the described 403, audited.
    _, token = create_client("dpi-no-scope", CLI, [])
    db.session.commit()
    _fuzz(fuzzed_app, {"Authorization": f"Bearer {token}"}, [GenerationMode.POSITIVE],
          EXAMPLES_WITHOUT_TOKEN)
    denied = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "api.denied"))
    assert {e.details["endpoint"] for e in denied} == {
        f"api.{name}" for name in ("post_document", "get_document", "retract_document",
                                   "put_consent", "delete_consent", "patch_patient", "events",
                                   "doctors")}


def test_without_a_token(fuzzed_app: Flask) -> None:
    _fuzz(fuzzed_app, {}, [GenerationMode.POSITIVE], EXAMPLES_WITHOUT_TOKEN)


def test_429_past_the_budget_is_described(app: Flask) -> None:
    # The budget as configured (here 1 a minute): the second call without a token is refused
    # with 429, and that answer too matches the description (status, media type, body).
    app.config["RATELIMIT_API_UNAUTHENTICATED"] = "1 per minute"
    schema = _schema(app)
    for method, path in OPERATIONS:
        operation = schema[path][method]
        case = operation.Case(path_parameters={
            name: value for name, value in
            {"document_id": "DPI-1", "patient_id": "P-1", "gln": "7601000000019"}.items()
            if "{" + name + "}" in path
        })
        answer = case.call_and_validate(headers={"Host": "relais.test"}, checks=CHECKS)
        assert answer.status_code in (401, 429)
    assert answer.status_code == 429
