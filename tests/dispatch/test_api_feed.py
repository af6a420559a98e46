"""DPI API over HTTP: the events feed, the doctors directory, and racing replays."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from app.audit import CLI
from app.dispatch.clients import create_client
from app.extensions import db
from app.models import ApiClient, AuditEvent, Doctor, Document, HinIdentity
from app.models.base import utcnow
from tests.conftest import Api, consent_body, document_body, iso_ago
from tests.dispatch.api_support import (
    SPEC,
    CheckedApi,
    add_doctor,
    assert_rejected,
    consent,
    counts,
    gln,
)
from tests.openapi_check import assert_response_matches


@pytest.fixture()
def dpi(api: Api) -> CheckedApi:
    return CheckedApi(api)


SECRET_TITLE = "Titre-confidentiel-4711"


def some_activity(dpi: CheckedApi) -> dict[str, Any]:
    """Documents received, held, delivered, read back, retracted; consents; a death."""
    consent(dpi)
    body = document_body("DPI-1", title=SECRET_TITLE, author="Dr Secret-Author")
    assert dpi.post("/api/v1/documents", json=body).status_code == 201
    assert dpi.post("/api/v1/documents", json=body).status_code == 200
    held = document_body("DPI-2", title=SECRET_TITLE, sensitive=True, signed_at=iso_ago(hours=1))
    assert dpi.post("/api/v1/documents", json=held).status_code == 201
    assert dpi.get("/api/v1/documents/DPI-1").status_code == 200
    assert dpi.post("/api/v1/documents/DPI-1/retract", json={"reason": "erreur"}).status_code == 200
    assert dpi.post("/api/v1/documents", json={"title": 1}).status_code == 422
    assert dpi.patch("/api/v1/patients/P-0042", json={"deceased": True}).status_code == 200
    return body


def feed(dpi: CheckedApi, query: str = "") -> dict[str, Any]:
    response = dpi.get(f"/api/v1/events{query}")
    assert response.status_code == 200
    page: dict[str, Any] = response.get_json()
    return page


def test_feed_is_the_whole_trail_oldest_first(dpi: CheckedApi, active_doctor: Doctor) -> None:
    some_activity(dpi)
    page = feed(dpi, "?limit=1000")
    ids = [e["id"] for e in page["events"]]
    stored = list(db.session.scalars(select(AuditEvent.id).order_by(AuditEvent.id)))
    assert ids == stored and ids == sorted(ids)
    times = [e["time"] for e in page["events"]]
    assert times == sorted(times)
    actions = [e["action"] for e in page["events"]]
    for action in ("api_client.created", "consent.recorded", "document.received",
                   "delivery.decided", "document.replayed", "document.status_read",
                   "document.retracted", "api.rejected", "patient.deceased", "delivery.cancelled"):
        assert action in actions, action
    # each event chains to the one before it
    for before, after in zip(page["events"], page["events"][1:], strict=False):
        assert after["prev_hash"] == before["hash"]
    assert page["next"] == str(ids[-1])


def test_feed_pages_with_the_next_cursor_without_duplicates(
    dpi: CheckedApi, active_doctor: Doctor
) -> None:
    some_activity(dpi)
    everything = [e["id"] for e in feed(dpi, "?limit=1000")["events"]]
    seen: list[int] = []
    cursor = ""
    while True:
        page = feed(dpi, f"?limit=3{cursor}")
        assert len(page["events"]) <= 3
        if not page["events"]:
            assert page["next"] is None
            break
        seen += [e["id"] for e in page["events"]]
        cursor = f"&after={page['next']}"
    assert seen == everything
    assert len(set(seen)) == len(seen)
    # new events appear after the last cursor, and only them
    consent(dpi, doctor=gln(8))
    newer = feed(dpi, cursor.replace("&", "?"))["events"]
    assert newer and all(e["id"] > everything[-1] for e in newer)


def test_reading_the_feed_is_not_an_event(dpi: CheckedApi, active_doctor: Doctor) -> None:
    some_activity(dpi)
    before = db.session.scalar(select(func.count()).select_from(AuditEvent))
    for query in ("", "?limit=1", "?after=1&limit=2"):
        feed(dpi, query)
    db.session.expire_all()
    assert db.session.scalar(select(func.count()).select_from(AuditEvent)) == before


@pytest.mark.parametrize(("query", "field"), [
    ("?after=abc", "after"),
    ("?after=-1", "after"),
    ("?after=1.5", "after"),
    ("?after=", "after"),
    ("?limit=0", "limit"),
    ("?limit=1001", "limit"),
    ("?limit=ten", "limit"),
])
def test_bad_cursor_or_limit_is_422(dpi: CheckedApi, query: str, field: str) -> None:
    before = counts()
    assert_rejected(dpi.get(f"/api/v1/events{query}"), 422, before, field)


def test_no_event_carries_document_content(dpi: CheckedApi, active_doctor: Doctor) -> None:
    body = some_activity(dpi)
    text = json.dumps(feed(dpi, "?limit=1000")["events"], ensure_ascii=False)
    assert body["content"] not in text
    assert body["content"][:40] not in text
    assert SECRET_TITLE not in text
    assert "Secret-Author" not in text
    assert "JVBERi0" not in text  # base64 of "%PDF-"


# --- doctors directory ----------------------------------------------------------------------


@pytest.fixture()
def directory(app: Flask) -> dict[str, str]:
    """Four doctors: HIN cardiologist, locked SMS-mode GP, a pending one, a deactivated one."""
    hin = add_doctor(1, family_name="Dupont", given_name="Marie", locality="Carouge",
                     notification_mode="immediate")
    hin.specialties = ["cardiologie"]
    hin.identities.append(HinIdentity(provider="https://idp.hin.ch", subject="marie.dupont"))
    sms = add_doctor(2, family_name="Favre", given_name="Luc", locality="Genève",
                     login="lfavre", sign_in_locked=True, notification_mode="digest")
    sms.specialties = ["medecine_interne_generale", "cardiologie"]
    pending = add_doctor(3, state="pending", family_name="Martin", given_name="Dupontel")
    gone = add_doctor(4, state="deactivated", family_name="Zbinden", given_name="Eva")
    db.session.commit()
    return {"hin": hin.gln, "sms": sms.gln, "pending": pending.gln, "gone": gone.gln}


def search(dpi: CheckedApi, query: str) -> list[dict[str, Any]]:
    response = dpi.get(f"/api/v1/doctors{query}")
    assert response.status_code == 200
    doctors: list[dict[str, Any]] = response.get_json()["doctors"]
    return doctors


@pytest.mark.parametrize(("query", "expected"), [
    ("", ["hin", "sms", "pending", "gone"]),
    ("?q=dupont", ["hin", "pending"]),  # family name, and given name
    ("?q=FAVRE", ["sms"]),
    ("?q=luc", ["sms"]),
    ("?q=carouge", ["hin"]),
    (f"?q={gln(2)}", ["sms"]),
    (f"?q={gln(2)[:10]}", ["hin", "sms", "pending", "gone"]),
    ("?q=nobody", []),
    ("?q=%25", []),  # a literal %, not a wildcard
    ("?specialty=cardiologie", ["hin", "sms"]),
    ("?specialty=medecine_interne_generale", ["sms"]),
    ("?specialty=cardio", []),  # a code, not a prefix
    ("?q=favre&specialty=cardiologie", ["sms"]),
    ("?q=dupont&specialty=cardiologie", ["hin"]),
])
def test_directory_search_by_name_gln_and_specialty(
    dpi: CheckedApi, directory: dict[str, str], query: str, expected: list[str]
) -> None:
    found = [d["gln"] for d in search(dpi, query)]
    assert sorted(found) == sorted(directory[name] for name in expected)


def test_directory_entries_say_who_can_receive_and_how(
    dpi: CheckedApi, directory: dict[str, str]
) -> None:
    entries = {d["gln"]: d for d in search(dpi, "")}
    hin, sms = entries[directory["hin"]], entries[directory["sms"]]
    pending, gone = entries[directory["pending"]], entries[directory["gone"]]
    assert (hin["active"], hin["sign_in_mode"], hin["notifications"]) == (True, "hin", True)
    assert (sms["active"], sms["sign_in_mode"], sms["notifications"]) == (True, "sms", True)
    assert (pending["active"], pending["state"], pending["sign_in_mode"]) == (
        False, "pending", "none")
    assert (gone["active"], gone["state"], gone["notifications"]) == (False, "deactivated", False)
    assert hin["specialties"] == ["cardiologie"]
    assert sms["specialties"] == sorted(["medecine_interne_generale", "cardiologie"])
    assert (hin["family_name"], hin["given_name"], hin["locality"]) == (
        "Dupont", "Marie", "Carouge")


@pytest.mark.parametrize(("query", "field"), [
    ("?q=" + "x" * 101, "q"),
    ("?specialty=" + "x" * 65, "specialty"),
    ("?q=Du%00pont", "q"),  # PostgreSQL cannot even compare a NUL
    ("?specialty=cardio%00", "specialty"),
    ("?q=%1b", "q"),
    ("?limit=0", "limit"),
    ("?limit=abc", "limit"),
])
def test_directory_bad_query_is_422(dpi: CheckedApi, query: str, field: str) -> None:
    before = counts()
    assert_rejected(dpi.get(f"/api/v1/doctors{query}"), 422, before, field)


def test_openapi_document_is_served(client: Any) -> None:
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    assert response.get_json() == SPEC


# --- racing requests (PostgreSQL) -----------------------------------------------------------


def race(app: Flask, method: str, path: str, bodies: list[Any], tokens: list[str]) -> list[Any]:
    """Send each body at the same moment, from its own thread, client and app context.

    The answers come back in the order of the bodies."""
    barrier = threading.Barrier(len(bodies))
    answers: list[Any] = [None] * len(bodies)
    errors: list[BaseException] = []

    def send(index: int, body: Any, token: str) -> None:
        try:
            with app.app_context():
                client = app.test_client()
                barrier.wait(timeout=10)
                answers[index] = client.open(path, method=method, json=body,
                                             headers={"Authorization": f"Bearer {token}"})
                db.session.remove()
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [
        threading.Thread(target=send, args=(index, body, token))
        for index, (body, token) in enumerate(zip(bodies, tokens, strict=True))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors
    for response in answers:
        assert_response_matches(SPEC, method, path, response.status_code,
                                response.get_json(silent=True), response.content_type)
    return answers


@pytest.fixture()
def two_tokens(api_token: str, db_dialect: str) -> list[str]:
    """Two DPI nodes, each with its own token, so that nothing per client serialises them."""
    if db_dialect != "postgresql":
        # Not a missing service: the same test runs on PostgreSQL (always under CI); only this
        # database's variant is skipped, because the case cannot arise or be raced on it.
        pytest.skip("SQLite serialises writers: the race needs PostgreSQL")
    _, other_token = create_client("dpi-test-2", CLI)
    db.session.commit()
    return [api_token, other_token]


def one_client_twice(api_token: str) -> list[str]:
    """Two DPI nodes sharing one client's token. Its last use is recent, so that no update of
    the client's row (once a minute) serialises the two requests before they race."""
    stored = db.session.scalars(select(ApiClient).where(ApiClient.name == "dpi-test")).one()
    stored.last_used_at = utcnow()
    db.session.commit()
    return [api_token, api_token]


@pytest.mark.parametrize(("clients", "second", "statuses"), [
    ("one", {}, [200, 201]),
    ("one", {"title": "Autre titre"}, [201, 409]),
    # Another client never gets the stored answer: the id is taken, whatever the body.
    ("two", {}, [201, 409]),
])
def test_two_posts_of_one_document_at_once_store_it_once(
    app: Flask, api_token: str, two_tokens: list[str], active_doctor: Doctor,
    clients: str, second: dict[str, Any], statuses: list[int],
) -> None:
    # Given two DPI nodes sending the same document_id at the same moment
    tokens = one_client_twice(api_token) if clients == "one" else two_tokens
    # One body built once: document_body() takes its signed_at from the clock.
    body = document_body("DPI-RACE")
    bodies = [body, {**body, **second}]
    answers = race(app, "POST", "/api/v1/documents", bodies, tokens)
    # Then one stores it; the other gets its answer (same client, same body) or a conflict
    assert sorted(r.status_code for r in answers) == statuses
    if statuses == [200, 201]:
        assert answers[0].get_json() == answers[1].get_json()
    db.session.expire_all()
    assert db.session.scalar(select(func.count()).select_from(Document)) == 1
    assert counts()["deliveries"] == 1
    winner = next(b for b, r in zip(bodies, answers, strict=True) if r.status_code == 201)
    assert db.session.scalars(select(Document.title)).one() == winner["title"]


def test_two_identical_consents_at_once_store_one_consent(
    app: Flask, two_tokens: list[str]
) -> None:
    # Given a patient and a doctor Relais does not know yet
    path = f"/api/v1/patients/P-NEW/consents/{gln(9)}"
    # When two DPI nodes record the same consent at once
    answers = race(app, "PUT", path, [consent_body(), consent_body()], two_tokens)
    # Then one creates it and the other rewrites it: one patient, one doctor, one consent
    assert sorted(r.status_code for r in answers) == [200, 201]
    assert {k: v for k, v in counts().items() if k in ("patients", "doctors", "consents")} == {
        "patients": 1, "doctors": 1, "consents": 1}
