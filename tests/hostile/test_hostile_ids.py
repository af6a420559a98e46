"""Hostile identifiers in every route that takes one: path traversal, SQL metacharacters, NUL,
overlong and non-UTF-8 bytes, lone surrogates, numbers too large for the database.

Each route of the URL map with a parameter is called, as the role that may use it, with each
hostile value in each of its parameters. The answer must be a refusal (400, 404, 405, 410 or
422; application/problem+json under /api/), never a 500 and never a file's content, and
nothing may change in the database but the audit trail (which records API rejections on
purpose). Runs on SQLite and PostgreSQL: PostgreSQL refuses NUL in text and integers beyond
64 bits, the classic 500s.
"""

from __future__ import annotations

import itertools
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from app.extensions import db
from tests.hostile.conftest import GLN, PATIENT, counts, snapshot

#: As they appear in the request line (percent-encoded where a client would encode them).
HOSTILE = {
    "traversal": "../../etc/passwd",
    "traversal-encoded": "..%2F..%2F..%2Fetc%2Fpasswd",
    "traversal-dots-encoded": "%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "traversal-backslash": "..%5C..%5Cwindows%5Cwin.ini",
    "sql-quote": "1'%20OR%20'1'='1",
    "sql-statement": "1;DROP%20TABLE%20documents",
    "sql-comment": "1--",
    "nul": "%00",
    "nul-inside": "DPI-1%00.pdf",
    "overlong": "A" * 5000,
    "overlong-utf8-dot": "%C0%AE%C0%AE%C0%AF",
    "lone-surrogate": "%ED%A0%80",
    "invalid-bytes": "%FF%FE",
    "huge-number": "9" * 40,
    "int32-overflow": "2147483648",
    "int64-overflow": "9223372036854775808",
    "negative": "-1",
    "markup": "%3Cscript%3Ealert(1)%3C%2Fscript%3E",
}

REFUSALS = {400, 404, 405, 410, 422}

#: The one page that answers 200 to any token: following an email-change link shows a button
#: (a GET never confirms, so a mail scanner cannot use the link up); the token is not looked up.
SHOWS_ANY = {("GET", "/profile/email/confirm/<token>")}


#: A plausible value for each parameter that is not the one under attack.
PLAIN = {"document_id": "DPI-2026-000123", "patient_id": PATIENT, "gln": GLN,
         "dpi_id": PATIENT, "token": "x" * 20, "filename": "app.css"}


def _role(rule: str) -> str:
    if rule.startswith("/api/"):
        return "api"
    if rule.startswith("/staff/"):
        return "desk"  # the desk may do everything staff do
    if rule.startswith("/static/"):
        return "anonymous"
    return "doctor"


def _routes(app: Flask) -> list[tuple[str, str, list[str]]]:
    found = []
    for rule in app.url_map.iter_rules():
        if not rule.arguments:
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            found.append((method, rule.rule, sorted(rule.arguments)))
    return found


def _path(rule: str, attacked: str, value: str, arguments: list[str]) -> str:
    path = rule
    for name in arguments:
        for marker in (f"<{name}>", f"<int:{name}>", f"<path:{name}>"):
            path = path.replace(marker, value if name == attacked else PLAIN.get(name, "1"))
    return path


def test_every_route_with_a_parameter_is_attacked(app: Flask) -> None:
    # The walk below takes its routes from the URL map: a new route is attacked too. This
    # guards the walk itself: every kind of parameter is known to it.
    kinds = {name for _, _, names in _routes(app) for name in names}
    assert kinds <= set(PLAIN) | {"delivery_id", "patient_id", "doctor_id", "notification_id",
                                  "user_id", "client_id", "approval_id"}
    assert len(_routes(app)) >= 30


def test_hostile_ids_are_refused_everywhere(app: Flask, clients: dict[str, Any]) -> None:
    before, state = counts(), snapshot()
    failures = []
    for (method, rule, arguments), value in itertools.product(_routes(app), HOSTILE.values()):
        role = _role(rule)
        client: FlaskClient = clients[role]
        headers = clients["api_headers"] if role == "api" else {}
        for attacked in arguments:
            path = _path(rule, attacked, value, arguments)
            kwargs: dict[str, Any] = {"headers": headers}
            if method in ("POST", "PUT", "PATCH"):
                kwargs["json" if role == "api" else "data"] = {}
            # When a hostile id is refused
            response = client.open(path, method=method, **kwargs)
            body = response.get_data()
            # Then it is a refusal, never an error or a file's content
            allowed = REFUSALS | ({200} if (method, rule) in SHOWS_ANY else set())
            if response.status_code not in allowed:
                failures.append(f"{method} {path[:80]} -> {response.status_code}")
            if b"root:" in body or b"[fonts]" in body or b"/bin/" in body:
                failures.append(f"{method} {path[:80]} served a file's content")
            if b"<script>alert(1)" in body:
                failures.append(f"{method} {path[:80]} echoed markup unescaped")
            if role == "api" and response.mimetype != "application/problem+json":
                failures.append(f"{method} {path[:80]} -> {response.mimetype}")
            db.session.rollback()
    assert failures == []
    # and nothing changed in the database.
    assert counts() == before
    assert snapshot() == state


#: Query arguments that hold a number or an id (cursors, filters, limits), by the role that
#: may use the page.
NUMBER_ARGUMENTS = [
    ("doctor", "/documents?patient="), ("doctor", "/documents?after="),
    ("doctor", "/patients?after="), ("desk", f"/staff/patients/{PATIENT}?shown="),
    ("desk", "/staff/worklist?after="), ("desk", "/staff/audit?before="),
    ("desk", "/staff/audit/export.csv?before="), ("desk", "/staff/desk/notifications?after="),
    ("desk", "/staff/patients?dpi_id="), ("desk", "/staff/doctors?for="),
    ("api", "/api/v1/events?after="), ("api", "/api/v1/events?limit="),
    ("api", "/api/v1/doctors?limit="), ("api", "/api/v1/doctors?q="),
]

#: Digits int() refuses though str.isdigit() takes them, numbers past 32 and 64 bits, NUL,
#: bytes that are no UTF-8.
HOSTILE_NUMBERS = ["%C2%B2", "%D9%A1%D9%A2", "1" * 25, "9" * 40, "2147483648", "%00", "%FF%FE",
                   "-1", "1e3", "0x10"]


def test_hostile_numbers_in_query_arguments_are_refused_or_ignored(
    app: Flask, clients: dict[str, Any]
) -> None:
    before, state = counts(), snapshot()
    failures = []
    for (role, prefix), value in itertools.product(NUMBER_ARGUMENTS, HOSTILE_NUMBERS):
        headers = clients["api_headers"] if role == "api" else {}
        response = clients[role].get(prefix + value, headers=headers)
        # A page may ignore an argument it cannot use (200) or refuse it (400/404/422).
        if response.status_code not in REFUSALS | {200}:
            failures.append(f"{prefix}{value} -> {response.status_code}")
        db.session.rollback()
    for value in ["²", "١٢", "1" * 25, "9" * 40, "9223372036854775808", "-1", ""]:
        # The ZIP takes delivery ids from a form.
        response = clients["doctor"].post("/documents/zip", data={"ids": [value]})
        if response.status_code not in REFUSALS | {413}:
            failures.append(f"zip {value!r} -> {response.status_code}")
        db.session.rollback()
    assert failures == []
    assert counts() == before
    assert snapshot() == state
