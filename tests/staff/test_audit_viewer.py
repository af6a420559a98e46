"""The desk's audit viewer (/staff/audit): who may reach it, every filter, keyset pages, bad
input, and the chain's state from ``audit.verified`` events (the CLI's and the button's).

Every test runs on SQLite and, with TEST_DATABASE_URL, on PostgreSQL.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event, func, select, text
from werkzeug.test import TestResponse

from app.audit import CLI, Actor, record
from app.extensions import db
from app.models import AuditEvent, StaffUser
from tests.support.factories import make_staff
from tests.support.pages import assert_no_inline_code, csrf_token
from tests.support.signin import sign_in_as
from tests.support.trail import events

DESK_ACTOR = "desk:desk-audit"


# --- helpers ---------------------------------------------------------------------------------


@pytest.fixture()
def desk(client: FlaskClient) -> StaffUser:
    user = make_staff("desk-audit", "desk", password=None, enrolled=False)
    sign_in_as(client, user)
    return user


def text_of(response: TestResponse) -> str:
    return response.get_data(as_text=True)


def at(monkeypatch: pytest.MonkeyPatch, when: datetime) -> None:
    """Record the next events at ``when`` (the chain stays valid: the hash covers it)."""
    monkeypatch.setattr("app.audit.trail.utcnow", lambda: when)


def seed() -> list[int]:
    """A small trail of varied events (committed); their ids, oldest first."""
    made = [
        record(Actor("api", "dpi"), "document.received", target="document:DPI-1",
               patient="P-1"),
        record(Actor("api", "dpi"), "consent.recorded", target="consent:P-2/7601000000019",
               patient="P-2"),
        record(Actor("doctor", "7601000000019"), "document.viewed", target="document:DPI-1",
               patient="P-1", details={"delivery": 1, "via": "viewer"}),
        record(Actor("staff", "accueil"), "consent.revoked", target="consent:P-1/7601000000019",
               patient="P-1", outcome="rejected", rule="minor"),
        record(Actor("api", "dpi"), "document.received", target="document:DPI-2",
               patient="P-2"),
    ]
    db.session.commit()
    return [e.id for e in made]


def pick(made: list[int], *positions: int) -> list[int]:
    """The ids of the seeded events at these positions (1-based, as in ``seed``)."""
    return [made[n - 1] for n in positions]


def ids(response: TestResponse) -> list[int]:
    """The event ids of the page's table, in order."""
    body = text_of(response)
    table = body.split("<tbody>", 1)[1].split("</tbody>", 1)[0] if "<tbody>" in body else ""
    return [int(n) for n in re.findall(r"<tr>\s*<td>(\d+)</td>", table)]


@contextmanager
def counting_queries() -> Iterator[list[str]]:
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(db.engine, "before_cursor_execute", count)


# --- attacks: who may reach the viewer ---------------------------------------------------------


def test_verify_without_csrf_token_is_refused(client: FlaskClient, desk: StaffUser) -> None:
    answer = client.post("/staff/audit/verify")
    assert answer.status_code == 400
    assert events("audit.verified") == []


def test_an_unknown_route_under_the_viewer_is_404(client: FlaskClient, desk: StaffUser) -> None:
    assert client.get("/staff/audit/events/12345").status_code == 404


# --- the page ----------------------------------------------------------------------------------


def test_the_page_lists_events_newest_first(client: FlaskClient, desk: StaffUser) -> None:
    made = seed()
    response = client.get("/staff/audit")
    assert response.status_code == 200
    html = text_of(response)
    assert_no_inline_code(html)
    assert html.count("<h1") == 1
    assert ids(response)[:5] == pick(made, 5, 4, 3, 2, 1)  # then the desk user's creation
    # Each row: actor, action, target, patient, outcome, rule, details (compact key=value)
    assert "doctor:7601000000019" in html
    assert "document.viewed" in html
    assert "delivery=1 via=viewer" in html
    assert "consent:P-1/7601000000019" in html
    assert "minor" in html
    assert "Refusé" in html
    assert "<caption" in html and 'scope="col"' in html
    # The actions present are offered
    assert '<option value="consent.revoked">' in html


def test_the_page_is_in_english_too(client: FlaskClient, desk: StaffUser) -> None:
    seed()
    html = text_of(client.get("/staff/audit", headers={"Accept-Language": "en"}))
    assert '<html lang="en">' in html
    assert "Verify now" in html
    assert "Export as CSV" in html
    assert "Rejected" in html


def test_times_are_shown_in_zurich(
    client: FlaskClient, desk: StaffUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    at(monkeypatch, datetime(2026, 7, 1, 10, 15, 30, tzinfo=UTC))
    record(CLI, "test.event")
    db.session.commit()
    html = text_of(client.get("/staff/audit"))
    assert "12:15:30" in html  # CEST is UTC+2
    assert "10:15:30" not in html


def test_filter_by_actor(client: FlaskClient, desk: StaffUser) -> None:
    made = seed()
    assert ids(client.get("/staff/audit?actor=api:dpi")) == pick(made, 5, 2, 1)
    assert ids(client.get("/staff/audit?actor=staff:accueil")) == pick(made, 4)
    # Exact: a prefix finds nothing
    assert ids(client.get("/staff/audit?actor=api")) == []
    assert ids(client.get("/staff/audit?actor=doctor:7601000000019")) == pick(made, 3)


def test_filter_by_patient(client: FlaskClient, desk: StaffUser) -> None:
    made = seed()
    assert ids(client.get("/staff/audit?patient=P-1")) == pick(made, 4, 3, 1)
    assert ids(client.get("/staff/audit?patient=P-2")) == pick(made, 5, 2)
    response = client.get("/staff/audit?patient=P-404")
    assert ids(response) == []
    assert "Aucun événement ne correspond." in text_of(response)


def test_filter_by_document(client: FlaskClient, desk: StaffUser) -> None:
    made = seed()
    assert ids(client.get("/staff/audit?document=DPI-1")) == pick(made, 3, 1)
    assert ids(client.get("/staff/audit?document=DPI-2")) == pick(made, 5)
    # The document's id, not a pattern: no partial match, no other kind of target
    assert ids(client.get("/staff/audit?document=DPI")) == []
    assert ids(client.get("/staff/audit?document=P-1/7601000000019")) == []


def test_filter_by_action(client: FlaskClient, desk: StaffUser) -> None:
    made = seed()
    assert ids(client.get("/staff/audit?action=document.received")) == pick(made, 5, 1)
    assert ids(client.get("/staff/audit?action=consent.revoked&patient=P-1")) == pick(made, 4)
    assert ids(client.get("/staff/audit?action=nothing.like.this")) == []


def test_filter_by_time_in_zurich(
    client: FlaskClient, desk: StaffUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 1: 31 Dec 2025 23:30 Zurich; 2: 1 Jan 2026 23:30 Zurich; 3: 2 Jan 2026 00:30 Zurich;
    # 4: 2 Jan 2026 10:00 Zurich
    made = []
    for when in (datetime(2025, 12, 31, 22, 30, tzinfo=UTC),
                 datetime(2026, 1, 1, 22, 30, tzinfo=UTC),
                 datetime(2026, 1, 1, 23, 30, tzinfo=UTC),
                 datetime(2026, 1, 2, 9, 0, tzinfo=UTC)):
        at(monkeypatch, when)
        made.append(record(CLI, "test.event").id)
    db.session.commit()

    def found(query: str) -> list[int]:
        return ids(client.get(f"/staff/audit?action=test.event&{query}"))

    assert found("from=2026-01-01&to=2026-01-01") == pick(made, 2)
    assert found("from=2026-01-02&to=2026-01-02") == pick(made, 4, 3)
    assert found("to=2026-01-01") == pick(made, 2, 1)
    # datetime-local, the end minute included
    assert found("from=2026-01-02T00:30&to=2026-01-02T10:00") == pick(made, 4, 3)
    assert found("from=2026-01-02T00:31&to=2026-01-02T23:00") == pick(made, 4)
    assert found("to=2026-01-02T00:29") == pick(made, 2, 1)
    assert found("from=2026-01-02 00:30:00&to=2026-01-02 00:30:00") == pick(made, 3)
    # A date in a date-and-time field keeps its meaning
    html = text_of(client.get("/staff/audit?from=2026-01-02&to=2026-01-03"))
    assert 'value="2026-01-02T00:00"' in html and 'value="2026-01-03T23:59"' in html


def test_filters_are_kept_in_the_export_links_and_the_pager(
    client: FlaskClient, desk: StaffUser
) -> None:
    made = [record(Actor("api", "dpi"), "document.received", target=f"document:D-{i}",
                   patient="P-7").id for i in range(55)]
    db.session.commit()
    html = text_of(client.get("/staff/audit?patient=P-7&action=document.received"))
    assert "/staff/audit/export.csv?patient=P-7&amp;action=document.received" in html
    assert "/staff/audit/export.json?patient=P-7&amp;action=document.received" in html
    assert f"before={made[5]}&amp;patient=P-7&amp;action=document.received" in html
    assert "100 000" in html or "100\u202f000" in html or "100\xa0000" in html


def test_keyset_pages_of_fifty_with_constant_queries(
    client: FlaskClient, desk: StaffUser
) -> None:
    made = [record(Actor("api", "dpi"), "test.event", target=f"thing:{i}").id
            for i in range(120)]
    db.session.commit()
    newest = made[::-1]
    client.get("/staff/audit?action=test.event")  # warm up: the session, the user
    with counting_queries() as first_queries:
        first = client.get("/staff/audit?action=test.event")
    assert ids(first) == newest[:50]
    assert f'href="/staff/audit?before={newest[49]}&amp;action=test.event"' in text_of(first)
    with counting_queries() as second_queries:
        second = client.get(f"/staff/audit?action=test.event&before={newest[49]}")
    assert ids(second) == newest[50:100]
    third = client.get(f"/staff/audit?action=test.event&before={newest[99]}")
    assert ids(third) == newest[100:]
    assert "before=" not in text_of(third).split('class="pager"', 1)[1]
    assert "Première page" in text_of(third)
    assert len(first_queries) == len(second_queries)
    # More events do not mean more queries
    for i in range(60):
        record(Actor("api", "dpi"), "test.event", target=f"more:{i}")
    db.session.commit()
    client.get("/staff/audit?action=test.event")
    with counting_queries() as later_queries:
        client.get("/staff/audit?action=test.event")
    assert len(later_queries) == len(first_queries)


# --- bad and hostile input ------------------------------------------------------------------


@pytest.mark.parametrize(("query", "field", "message"), [
    ("from=yesterday", "from", "Date non valable"),
    ("to=2026-13-45", "to", "Date non valable"),
    ("from=2026-02-30T10:00", "from", "Date non valable"),
    ("from=0001-01-01", "from", "Date non valable"),
    ("to=9999-12-31", "to", "Date non valable"),
    ("from=2026-03-02&to=2026-03-01", "to", "La fin doit venir après le début."),
    ("actor=" + "a" * 201, "actor", "Trop long."),
    ("patient=" + "P" * 65, "patient", "Trop long."),
    ("document=" + "D" * 201, "document", "Trop long."),
    ("action=" + "x" * 65, "action", "Trop long."),
    ("from=" + "2" * 33, "from", "Trop long."),
    ("actor=api%00dpi", "actor", "Caractères de contrôle non admis."),
    ("before=abc", "before", "Page non valable"),
    ("before=" + "9" * 20, "before", "Trop long."),
])
def test_bad_filters_give_a_clear_error(
    client: FlaskClient, desk: StaffUser, query: str, field: str, message: str
) -> None:
    seed()
    response = client.get(f"/staff/audit?{query}")
    assert response.status_code == 400
    html = text_of(response)
    assert message in html
    if field != "before":
        assert f'id="audit-{field}-error"' in html
        assert 'aria-invalid="true"' in html
    assert ids(response) == []
    # The exports refuse the same input, and nothing is recorded
    for export in ("export.csv", "export.json"):
        assert client.get(f"/staff/audit/{export}?{query}").status_code == 400
    assert events("audit.exported") == []


def test_markup_in_filters_and_events_is_escaped(client: FlaskClient, desk: StaffUser) -> None:
    record(Actor("staff", "<b>bold</b>"), "test.event", target="thing:<img src=x>",
           details={"note": "<script>alert(1)</script>"})
    db.session.commit()
    html = text_of(client.get("/staff/audit?document=%22%3E%3Cscript%3Ealert(2)%3C/script%3E"))
    assert "<script>alert(2)" not in html
    assert "&#34;&gt;&lt;script&gt;alert(2)" in html
    html = text_of(client.get("/staff/audit"))
    assert "<b>bold</b>" not in html and "&lt;b&gt;bold&lt;/b&gt;" in html
    assert "<img src=x>" not in html
    assert "<script>alert(1)" not in html
    assert_no_inline_code(html)


# --- the chain's state ------------------------------------------------------------------------


def test_the_page_says_when_the_chain_was_never_verified(
    client: FlaskClient, desk: StaffUser
) -> None:
    seed()
    html = text_of(client.get("/staff/audit"))
    assert "jamais été vérifiée" in html
    assert "Vérifier maintenant" in html


def test_the_button_verifies_and_records_the_result(
    client: FlaskClient, desk: StaffUser
) -> None:
    made = seed()
    token = csrf_token(client.get("/staff/audit"))
    answer = client.post("/staff/audit/verify", data={"csrf_token": token})
    assert answer.status_code == 303
    assert answer.headers["Location"] == "/staff/audit"
    [verified] = events("audit.verified")
    assert verified.actor == DESK_ACTOR
    assert verified.outcome == "success"
    assert verified.details == {"through": made[-1]}
    assert verified.target == "audit:trail"
    # The page shows it, and counts the events added since
    record(CLI, "test.event")
    record(CLI, "test.event")
    db.session.commit()
    html = text_of(client.get("/staff/audit"))
    assert f"intacte jusqu&#39;à l&#39;événement {made[-1]}" in html  # the flash
    assert "Chaîne intacte" in html
    assert DESK_ACTOR in html
    assert "2 événements" in html
    # The chain (with the verification in it) still holds
    client.post("/staff/audit/verify", data={"csrf_token": token})
    second = events("audit.verified")[-1]
    assert second.outcome == "success"
    assert second.details["through"] == made[-1] + 3


def test_the_button_records_a_broken_chain(client: FlaskClient, desk: StaffUser) -> None:
    made = seed()
    db.session.execute(text("UPDATE audit_events SET actor = 'staff:mallory' WHERE id = :id"),
                       {"id": made[2]})
    db.session.commit()
    token = csrf_token(client.get("/staff/audit"))
    client.post("/staff/audit/verify", data={"csrf_token": token})
    [verified] = events("audit.verified")
    assert verified.outcome == "failure"
    assert verified.details["broken_at"] == made[2]
    assert verified.details["through"] == made[2]
    assert "does not match its hash" in verified.details["problem"]
    html = text_of(client.get("/staff/audit"))
    assert "ROMPUE" in html
    assert f"Chaîne rompue à l'événement {made[2]}" in html


def test_the_page_shows_a_verification_by_the_cli(app: Flask, client: FlaskClient,
                                                  desk: StaffUser) -> None:
    seed()
    result = app.test_cli_runner().invoke(args=["audit", "verify"])
    assert result.exit_code == 0, result.output
    html = text_of(client.get("/staff/audit"))
    assert "Chaîne intacte" in html
    assert ">cli<" in html
    assert "aucun événement" in html
    [verified] = events("audit.verified")
    assert verified.actor == "cli"
    assert db.session.scalar(select(func.count()).select_from(AuditEvent)) == verified.id
