"""The route walk's parts: every route behind the gate, with a path built for each, and a user
of each role to walk them as (tests/web/test_access.py, test_staff_isolation.py), and the
database as a whole, to see that a request changed nothing (test_safe_methods.py too)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from flask import Flask
from sqlalchemy import select
from werkzeug.routing import IntegerConverter, Rule

from app.auth.session import access_of
from app.extensions import db
from tests.support.factories import make_doctor, make_staff

#: Endpoints anyone may reach without signing in or a token. A route that calls itself public
#: and is not on this list fails ``test_every_route_is_public_on_purpose_or_closed``
#: (tests/web/test_pages.py) and the walk of tests/web/test_access.py, which takes every route
#: but these and the token-protected API for a closed one: add it here only on purpose.
PUBLIC = frozenset({
    "web.index", "web.set_language", "web.healthz", "web.readyz", "static", "api.openapi",
    # The sign-in steps: each checks for itself that its earlier steps were passed.
    "auth.login", "auth.code", "auth.resend_code", "auth.totp", "auth.totp_enrol",
    # HIN: the ACS and single logout check SAML signatures and the request this browser started.
    "hin.login", "hin.acs", "hin.metadata", "hin.sls",
    # Help for a doctor who cannot sign in, and the privacy notice.
    "help.index", "help.privacy",
})

#: A value for each URL converter: no such record, so a route that passes the gate answers 404
#: (or its own validation error) rather than 403.
SAMPLES: dict[str, Any] = {"int": 2_000_000_000, "default": "no-such-thing", "path": "no/such",
                           "uuid": "00000000-0000-0000-0000-000000000000"}


def _sample(rule: Rule, name: str) -> Any:
    if isinstance(rule._converters[name], IntegerConverter):  # the app's <int:> and <bigint:>
        return SAMPLES["int"]
    converter = type(rule._converters[name]).__name__.lower()
    for key, value in SAMPLES.items():
        if key in converter:
            return value
    return SAMPLES["default"]


def gated_calls(app: Flask) -> Iterator[tuple[str, str, str, frozenset[str]]]:
    """(endpoint, method, path, roles) for every route behind the gate: every route but the
    ``PUBLIC`` ones and the DPI API's (bearer tokens). The roles are those the route declares;
    a route that declares none, or calls itself public without being on the list, gets no
    role at all, so that the walk finds it open."""
    adapter = app.url_map.bind("relais.test")
    for rule in app.url_map.iter_rules():
        access = access_of(app, rule.endpoint)
        if rule.endpoint in PUBLIC or access == "token":
            continue
        if not isinstance(access, frozenset):
            access = frozenset()
        values = {name: _sample(rule, name) for name in rule.arguments}
        path = adapter.build(rule.endpoint, values)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            yield rule.endpoint, method, path, access


def user_with_role(role: str) -> Any:
    """A user of ``role`` to give ``sign_in_as``: Dr Claire Muller, or a hospital account."""
    if role == "doctor":
        return make_doctor(login="cmuller", must_change_password=False, activated_at=None)
    return make_staff(f"{role}-access", role, password=None, enrolled=False)


def database_state() -> dict[str, Any]:
    """Every row of every table, the audit trail included."""
    db.session.expire_all()
    state: dict[str, Any] = {}
    for table in db.metadata.sorted_tables:
        rows = db.session.execute(select(table)).all()
        state[table.name] = sorted(tuple(str(v) for v in row) for row in rows)
    return state


def changes_between(before: dict[str, Any], after: dict[str, Any]) -> dict[str, list[Any]]:
    """The rows each table gained or lost, for a readable failure."""
    changed = {}
    for name in before:
        gained = sorted(set(after[name]) - set(before[name]))
        lost = sorted(set(before[name]) - set(after[name]))
        if gained or lost:
            changed[name] = [("+", row[:5]) for row in gained] + [("-", row[:5]) for row in lost]
    return changed
