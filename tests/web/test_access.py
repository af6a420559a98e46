"""Roles enforced on every route: a walk over ``app.url_map`` as each kind of visitor.

Anonymous visitors are sent to sign in (GET) or refused (POST); a signed-in user whose role a
route does not name gets 403; a route's own roles pass the gate. Public routes and the DPI API
(bearer tokens, tested in tests/dispatch/) are left out. New routes are covered as they come.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.routing import IntegerConverter, Rule

from app.audit import CLI
from app.auth.session import ROLES, access_of
from app.extensions import db
from app.models import Doctor
from app.staff.accounts import create_staff
from tests.support.signin import sign_in_as
from tests.web.test_pages import csrf_token

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


def _user(role: str) -> Any:
    if role == "doctor":
        doctor = Doctor(gln="7601000000019", family_name="Muller", given_name="Claire",
                        state="active", login="cmuller", must_change_password=False)
        db.session.add(doctor)
        db.session.commit()
        return doctor
    user, _, _ = create_staff(f"{role}-access", role, CLI)
    user.must_change_password = False
    db.session.commit()
    return user


@pytest.fixture()
def calls(app: Flask) -> list[tuple[str, str, str, frozenset[str]]]:
    found = list(gated_calls(app))
    # The sign-out routes at least; the workspaces add theirs.
    assert {"auth.logout", "auth.logout_everywhere"} <= {endpoint for endpoint, *_ in found}
    return found


def test_anonymous_visitors_are_sent_to_sign_in(
    client: FlaskClient, calls: list[tuple[str, str, str, frozenset[str]]]
) -> None:
    token = csrf_token(client.get("/"))
    for endpoint, method, path, _ in calls:
        response = client.open(path, method=method, data={"csrf_token": token})
        if method == "GET":
            assert response.status_code == 303, (endpoint, path)
            assert response.headers["Location"].startswith("/auth/login"), (endpoint, path)
        else:
            assert response.status_code == 401, (endpoint, method, path)


@pytest.mark.parametrize("role", ROLES)
def test_each_role_reaches_only_its_routes(
    app: Flask, client: FlaskClient, calls: list[tuple[str, str, str, frozenset[str]]],
    role: str,
) -> None:
    user = _user(role)
    reached = refused = 0
    for endpoint, method, path, roles in calls:
        if endpoint in ("auth.logout", "auth.logout_everywhere"):
            continue  # they end the session the walk relies on; tested in tests/auth/
        sign_in_as(client, user)
        token = csrf_token(client.get("/help"))  # a page every visitor sees, with a form
        response = client.open(path, method=method, data={"csrf_token": token})
        if role in roles:
            reached += 1
            assert response.status_code not in (401, 403), (role, endpoint, method, path)
            if response.status_code in (302, 303):
                assert not response.headers["Location"].startswith("/auth/login"), (
                    role, endpoint, path)
        else:
            refused += 1
            assert response.status_code == 403, (role, endpoint, method, path)
    assert reached + refused == len(calls) - 2
