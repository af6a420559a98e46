"""API client scopes (INTERFACES.md, "API client scopes"): every call needs its scope, and a
client reaches only the documents it posted unless it holds ``documents:admin``.

A call outside the client's scopes answers 403 and is audited; another client's document is
404, exactly as an unknown id, and nothing changes. Attack tests first, then the stories.
Every test runs on SQLite and, with TEST_DATABASE_URL, on PostgreSQL.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from app.audit import CLI, Actor
from app.dispatch.clients import create_client
from app.dispatch.consent import record_consent
from app.dispatch.ingest import ingest
from app.dispatch.validation import parse_consent, parse_document
from app.extensions import db
from app.models import ApiClient, Consent, Delivery, Doctor, Document, Patient
from tests.conftest import PDF, Api, audit_text, consent_body, document_body
from tests.dispatch.api_support import GLN, PATIENT, CheckedApi, consent, counts, events
from tests.support.signin import sign_in_as

#: The scopes of INTERFACES.md, exactly.
ALL_SCOPES = frozenset({
    "documents:write", "documents:read", "documents:admin", "consents:write",
    "patients:write", "doctors:read", "events:read",
})
DEFAULT_SCOPES = ALL_SCOPES - {"documents:admin"}
OWN = "DPI-OWN"


@dataclass(frozen=True)
class Call:
    """One call of the API, the scopes that allow it (any one of them) and its success."""

    endpoint: str
    method: str
    path: str
    scopes: tuple[str, ...]
    success: int
    body: Any = None
    kwargs: dict[str, Any] = field(default_factory=dict)


#: Every route of the API and the scopes it needs (the table of INTERFACES.md).
CALLS = [
    Call("api.post_document", "POST", "/api/v1/documents", ("documents:write",), 201,
         document_body("DPI-NEW")),
    Call("api.get_document", "GET", f"/api/v1/documents/{OWN}",
         ("documents:read", "documents:admin"), 200),
    Call("api.retract_document", "POST", f"/api/v1/documents/{OWN}/retract",
         ("documents:write", "documents:admin"), 200, {"reason": "wrong patient"}),
    Call("api.put_consent", "PUT", f"/api/v1/patients/{PATIENT}/consents/{GLN}",
         ("consents:write",), 200, consent_body()),
    Call("api.delete_consent", "DELETE", f"/api/v1/patients/{PATIENT}/consents/{GLN}",
         ("consents:write",), 204),
    Call("api.patch_patient", "PATCH", f"/api/v1/patients/{PATIENT}", ("patients:write",), 200,
         {"deceased": True}),
    Call("api.events", "GET", "/api/v1/events", ("events:read",), 200),
    Call("api.doctors", "GET", "/api/v1/doctors", ("doctors:read",), 200),
]
CALL_IDS = [f"{c.method} {c.endpoint}" for c in CALLS]


def new_client(client: FlaskClient, name: str, scopes: set[str] | frozenset[str] | None
               ) -> tuple[int, CheckedApi]:
    """An API client with these scopes (None: the default set), speaking HTTP."""
    api_client, token = create_client(name, CLI, None if scopes is None else sorted(scopes))
    db.session.commit()
    return api_client.id, CheckedApi(Api(client, token))


def post_own_document(api_client_id: int, document_id: str = OWN) -> None:
    """A letter to Dr Muller that this client posted, stored without going through HTTP."""
    data = parse_document(document_body(document_id), 20 * 1024 * 1024)
    ingest(data, Actor("api", "setup"), db.session.get_one(ApiClient, api_client_id))
    db.session.commit()


def world(api_client_id: int) -> None:
    """What every call of the table needs to succeed: an own letter, a patient, a consent."""
    record_consent(PATIENT, GLN, parse_consent(consent_body()), Actor("api", "setup"))
    db.session.commit()
    post_own_document(api_client_id)


def state() -> dict[str, Any]:
    """Everything a refused call must leave as it was."""
    db.session.expire_all()
    document = db.session.scalars(select(Document).where(Document.document_id == OWN)).one()
    patient = db.session.scalars(select(Patient).where(Patient.dpi_id == PATIENT)).one()
    consent = db.session.scalars(select(Consent)).one()
    return {
        **counts(),
        "retracted_at": document.retracted_at,
        "content": document.content is not None,
        "statuses": [d.status for d in document.deliveries],
        "deceased_at": patient.deceased_at,
        "consent": (consent.electronic_sending, consent.revoked_at, consent.recorded_at),
    }


def call(api: CheckedApi, c: Call) -> Any:
    kwargs = dict(c.kwargs)
    if c.body is not None:
        kwargs["json"] = c.body
    return api.request(c.method, c.path, **kwargs)


# --- attacks: a call outside the client's scopes -------------------------------------------------


@pytest.mark.parametrize("c", CALLS, ids=CALL_IDS)
def test_a_call_outside_the_clients_scopes_is_refused_and_audited(
    client: FlaskClient, active_doctor: Doctor, c: Call
) -> None:
    # Given a client holding every scope but the ones this call needs, and its own letter
    client_id, api = new_client(client, "dpi-narrow", ALL_SCOPES - set(c.scopes))
    world(client_id)
    before, first_new = state(), len(events()) + 1

    # When it makes the call
    response = call(api, c)

    # Then it is refused with 403 (the spec's problem), naming the scope it lacks
    assert response.status_code == 403, response.get_data(as_text=True)
    assert response.content_type.startswith("application/problem+json")
    problem = response.get_json()
    assert problem["status"] == 403 and c.scopes[0] in problem["detail"]
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer") and 'error="insufficient_scope"' in challenge
    assert f'scope="{c.scopes[0]}"' in challenge
    # And nothing changed
    assert state() == before
    # And the refusal is the one new event: the client, what it tried, the scope it lacks
    (denied,) = events()[first_new - 1:]
    assert denied.action == "api.denied" and denied.outcome == "rejected"
    assert denied.actor == "api:dpi-narrow"
    assert denied.details == {"status": 403, "method": c.method, "endpoint": c.endpoint,
                              "missing_scope": c.scopes[0]}
    # ... and nothing of the request: no target, no patient, no content
    assert denied.target is None and denied.patient is None
    assert document_body()["content"] not in audit_text()


@pytest.mark.parametrize(("c", "scope"), [(c, s) for c in CALLS for s in c.scopes],
                         ids=[f"{i} with {s}" for c, i in zip(CALLS, CALL_IDS, strict=True)
                              for s in c.scopes])
def test_the_scope_alone_allows_the_call(
    client: FlaskClient, active_doctor: Doctor, c: Call, scope: str
) -> None:
    # Given a client holding only this scope, and its own letter
    client_id, api = new_client(client, "dpi-one-scope", {scope})
    world(client_id)
    # When it makes the call, then it succeeds
    response = call(api, c)
    assert response.status_code == c.success, response.get_data(as_text=True)
    assert events("api.denied") == []


def test_a_client_without_any_scope_can_do_nothing(
    client: FlaskClient, active_doctor: Doctor
) -> None:
    client_id, api = new_client(client, "dpi-nothing", set())
    world(client_id)
    before = state()
    for c in CALLS:
        assert call(api, c).status_code == 403, c
    assert state() == before
    assert len(events("api.denied")) == len(CALLS)


def test_the_table_covers_every_route_of_the_api(app: Flask) -> None:
    from app.dispatch.api import REQUIRED_SCOPES

    routes = {
        (rule.endpoint, method)
        for rule in app.url_map.iter_rules() if rule.endpoint.startswith("api.")
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}
    }
    assert routes - {("api.openapi", "GET")} == {(c.endpoint, c.method) for c in CALLS}
    # The code declares, for each view, exactly the scopes of the table
    assert {c.endpoint: c.scopes for c in CALLS} == REQUIRED_SCOPES
    assert {s for c in CALLS for s in c.scopes} == ALL_SCOPES


def test_a_view_cannot_be_declared_without_a_scope() -> None:
    from app.dispatch.api import api_call

    with pytest.raises(TypeError):
        api_call()


# --- attacks: another client's documents ---------------------------------------------------------


@pytest.fixture()
def two_clients(client: FlaskClient, active_doctor: Doctor) -> tuple[CheckedApi, CheckedApi]:
    """Clients A and B of the DPI, each with the default set of scopes; Anna Muster consented
    to Dr Muller."""
    _, a = new_client(client, "dpi-a", None)
    _, b = new_client(client, "dpi-b", None)
    consent(a)
    return a, b


def opened_by_the_doctor(client: FlaskClient, doctor: Doctor, document_id: str) -> int:
    """The status of Dr Muller's content route for her delivery of this letter."""
    delivery = db.session.scalars(
        select(Delivery).join(Document).where(Document.document_id == document_id)
    ).one()
    sign_in_as(client, doctor)
    response = client.get(f"/documents/{delivery.id}/content")
    if response.status_code == 200:
        assert response.get_data() == PDF
    return response.status_code


def test_another_clients_document_is_404_like_an_unknown_id(
    client: FlaskClient, active_doctor: Doctor, two_clients: tuple[CheckedApi, CheckedApi]
) -> None:
    a, b = two_clients
    # Given a letter that client A posted and delivered to Dr Muller
    assert a.post("/api/v1/documents", json=document_body("DPI-A")).status_code == 201
    before = counts()

    # When client B asks for its status, then for an id that does not exist
    theirs = b.get("/api/v1/documents/DPI-A")
    unknown = b.get("/api/v1/documents/DPI-NOPE")

    # Then both answers are the same 404: B learns nothing, not even that DPI-A exists
    assert theirs.status_code == unknown.status_code == 404
    assert theirs.get_json() == unknown.get_json()
    assert theirs.headers.get("WWW-Authenticate") == unknown.headers.get("WWW-Authenticate")
    assert "Muster" not in theirs.get_data(as_text=True)
    # And the attempt is in the trail as B's, like any refused call, and read nothing
    assert counts() == before
    assert events("document.status_read") == []
    assert [(e.actor, e.details["status"]) for e in events("api.rejected")] == [
        ("api:dpi-b", 404), ("api:dpi-b", 404)]
    # While A still reads its own letter
    assert a.get("/api/v1/documents/DPI-A").status_code == 200


def test_another_client_cannot_retract_a_document(
    client: FlaskClient, active_doctor: Doctor, two_clients: tuple[CheckedApi, CheckedApi]
) -> None:
    a, b = two_clients
    # Given a letter that client A posted and delivered to Dr Muller
    assert a.post("/api/v1/documents", json=document_body("DPI-A")).status_code == 201
    before = counts()

    # When client B retracts it
    response = b.post("/api/v1/documents/DPI-A/retract", json={"reason": "mine now"})
    unknown = b.post("/api/v1/documents/DPI-NOPE/retract", json={"reason": "mine now"})

    # Then it is the 404 of an unknown id, and nothing changed
    assert response.status_code == unknown.status_code == 404
    assert response.get_json() == unknown.get_json()
    assert counts() == before
    assert events("document.retracted") == []
    status = a.get("/api/v1/documents/DPI-A").get_json()
    assert status["retracted_at"] is None
    assert {d["status"] for d in status["deliveries"]} == {"delivered"}
    # And the letter still opens for the doctor
    assert opened_by_the_doctor(client, active_doctor, "DPI-A") == 200
    # And the attempt is B's in the trail, naming the letter it aimed at
    rejected = events("api.rejected")[0]
    assert (rejected.actor, rejected.target, rejected.details["status"]) == (
        "api:dpi-b", "document:DPI-A", 404)


@pytest.mark.parametrize("changes", [{}, {"title": "Autre titre"}],
                         ids=["the same body", "another body"])
def test_another_client_cannot_read_a_letter_back_by_posting_its_id(
    client: FlaskClient, active_doctor: Doctor, two_clients: tuple[CheckedApi, CheckedApi],
    changes: dict[str, Any],
) -> None:
    a, b = two_clients
    # Given a letter that client A posted (one body: document_body() takes the clock's time)
    body = document_body("DPI-A")
    first = a.post("/api/v1/documents", json=body)
    assert first.status_code == 201
    before = counts()

    # When client B posts a document with the same id (a replay would give A's answer)
    response = b.post("/api/v1/documents", json={**body, **changes})

    # Then the id is taken (ids are one namespace): 409, whatever the body, without A's answer
    assert response.status_code == 409
    assert "deliveries" not in response.get_json()
    assert GLN not in response.get_data(as_text=True)
    # ... the same answer for the same body as for another one: no oracle on A's letter
    other = b.post("/api/v1/documents", json={**body, "author": "Dr Devine"})
    assert other.get_json() == response.get_json()
    assert counts() == before
    assert events("document.replayed") == []
    # And A's own replay still answers the first answer
    again = a.post("/api/v1/documents", json=body)
    assert (again.status_code, again.get_json()) == (200, first.get_json())


def test_documents_admin_reaches_every_clients_documents(
    client: FlaskClient, active_doctor: Doctor, two_clients: tuple[CheckedApi, CheckedApi]
) -> None:
    a, _ = two_clients
    _, admin = new_client(client, "dpi-admin", DEFAULT_SCOPES | {"documents:admin"})
    # Given a letter that client A posted
    body = document_body("DPI-A")
    first = a.post("/api/v1/documents", json=body)
    assert first.status_code == 201
    # Then the admin client reads it, and its replay of A's request is the first answer
    assert admin.get("/api/v1/documents/DPI-A").status_code == 200
    again = admin.post("/api/v1/documents", json=body)
    assert (again.status_code, again.get_json()) == (200, first.get_json())
    # And it retracts it: the doctor can no longer open it
    retracted = admin.post("/api/v1/documents/DPI-A/retract", json={"reason": "wrong patient"})
    assert retracted.status_code == 200
    assert retracted.get_json()["retracted_at"] is not None
    (event,) = events("document.retracted")
    assert event.actor == "api:dpi-admin"
    assert opened_by_the_doctor(client, active_doctor, "DPI-A") == 410


def test_a_letter_posted_without_a_client_is_only_for_documents_admin(
    client: FlaskClient, active_doctor: Doctor
) -> None:
    # Given a letter stored by Relais itself (the demo data, a migration), owned by no client
    ingest(parse_document(document_body("DPI-SYSTEM"), 20 * 1024 * 1024),
                   Actor("cli"))
    db.session.commit()
    _, plain = new_client(client, "dpi-plain", None)
    _, admin = new_client(client, "dpi-admin", {"documents:admin"})
    # Then no ordinary client reaches it, the admin does
    assert plain.get("/api/v1/documents/DPI-SYSTEM").status_code == 404
    assert admin.get("/api/v1/documents/DPI-SYSTEM").status_code == 200


def test_the_refusals_never_carry_the_letter(
    client: FlaskClient, active_doctor: Doctor, two_clients: tuple[CheckedApi, CheckedApi]
) -> None:
    a, b = two_clients
    body = document_body("DPI-A", title="Titre-confidentiel-4711")
    assert a.post("/api/v1/documents", json=body).status_code == 201
    _, reader = new_client(client, "dpi-reader", {"documents:read"})
    # A client without documents:write posting, B probing: none of it reaches the trail
    assert reader.post("/api/v1/documents", json=document_body("DPI-R")).status_code == 403
    assert b.post("/api/v1/documents/DPI-A/retract", json={"reason": "x"}).status_code == 404
    refusals = [e for e in events() if e.action in ("api.denied", "api.rejected")]
    assert len(refusals) == 2
    shown = json.dumps([[e.target, e.patient, e.details] for e in refusals])
    assert body["content"] not in shown and "Titre-confidentiel" not in shown
    assert "Muster" not in shown
