"""The route walk's parts: every route behind the gate, with a path built for each, and a user
of each role to walk them as (tests/web/test_access.py, test_staff_isolation.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from flask import Flask
from werkzeug.routing import IntegerConverter, Rule

from app.auth.session import access_of
from tests.support.factories import make_doctor, make_staff

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
    """(endpoint, method, path, roles) for every route behind the gate."""
    adapter = app.url_map.bind("relais.test")
    for rule in app.url_map.iter_rules():
        access = access_of(app, rule.endpoint)
        if not isinstance(access, frozenset):
            continue
        values = {name: _sample(rule, name) for name in rule.arguments}
        path = adapter.build(rule.endpoint, values)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            yield rule.endpoint, method, path, access


def user_with_role(role: str) -> Any:
    """A user of ``role`` to give ``sign_in_as``: Dr Claire Muller, or a hospital account."""
    if role == "doctor":
        return make_doctor(login="cmuller", must_change_password=False, activated_at=None)
    return make_staff(f"{role}-access", role, password=None, enrolled=False)
