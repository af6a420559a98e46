"""Roles enforced on every route: a walk over ``app.url_map`` as each kind of visitor.

Anonymous visitors are sent to sign in (GET) or refused (POST); a signed-in user whose role a
route does not name gets 403; a route's own roles pass the gate. A refused request changes
nothing: no row, no audit event, no SMS code. Public routes and the DPI API (bearer tokens,
tested in tests/dispatch/) are left out.

This walk is the one place where who may reach what is tested: one case per route and method,
for each kind of visitor, so a failure names the route. The cases are read off the app's own
URL map when the tests are collected, so a new route is covered as it comes.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.auth.session import ROLES
from tests.conftest import make_app
from tests.support.pages import csrf_token
from tests.support.signin import sign_in_as
from tests.support.walk import changes_between, database_state, gated_calls, user_with_role

Call = tuple[str, str, str, frozenset[str]]

#: They end the session the walk relies on; what they do is tested in tests/auth/.
SIGN_OUT = ("auth.logout", "auth.logout_everywhere")

#: Every route behind the gate, with each of its methods: read off an app like the tests' own
#: (``test_the_walk_sees_every_route_behind_the_gate`` checks that it is the same).
CALLS: list[Call] = list(gated_calls(make_app("sqlite://")))


def _as_role(wanted: bool) -> list[Any]:
    """(role, call) for each role and each route that names it (``wanted``) or does not."""
    return [pytest.param(role, call, id=f"{role}-{call[1]}-{call[2]}")
            for role in ROLES for call in CALLS
            if call[0] not in SIGN_OUT and (role in call[3]) == wanted]


def _refused_without_a_change(client: FlaskClient, call: Call, expected: int) -> Any:
    """Send ``call`` from ``client``: it must answer ``expected`` and change nothing."""
    endpoint, method, path, _ = call
    token = csrf_token(client.get("/help"))  # a page every visitor sees, with a form
    before = database_state()
    response = client.open(path, method=method, data={"csrf_token": token})
    assert response.status_code == expected, (endpoint, method, path)
    assert changes_between(before, database_state()) == {}, (endpoint, method, path)
    return response


def test_the_walk_sees_every_route_behind_the_gate(app: Flask) -> None:
    assert list(gated_calls(app)) == CALLS
    # Not a vacuous walk: the sign-out routes at least, and each area's pages.
    endpoints = {endpoint for endpoint, *_ in CALLS}
    assert set(SIGN_OUT) <= endpoints
    for prefix in ("/auth/", "/documents", "/patients", "/profile", "/staff/desk",
                   "/staff/audit", "/staff/doctors", "/staff/patients", "/staff/worklist"):
        assert any(path.startswith(prefix) for _, _, path, _ in CALLS), prefix


@pytest.mark.parametrize("call", [pytest.param(call, id=f"{call[1]}-{call[2]}")
                                  for call in CALLS])
def test_anonymous_visitors_are_sent_to_sign_in(client: FlaskClient, call: Call) -> None:
    endpoint, method, path, _ = call
    if method == "GET":
        response = _refused_without_a_change(client, call, 303)
        assert response.headers["Location"].startswith("/auth/login"), (endpoint, path)
    else:
        _refused_without_a_change(client, call, 401)


@pytest.mark.parametrize(("role", "call"), _as_role(wanted=False))
def test_another_role_is_refused(client: FlaskClient, role: str, call: Call) -> None:
    sign_in_as(client, user_with_role(role))
    _refused_without_a_change(client, call, 403)


@pytest.mark.parametrize(("role", "call"), _as_role(wanted=True))
def test_a_routes_own_roles_pass_the_gate(client: FlaskClient, role: str, call: Call) -> None:
    endpoint, method, path, _ = call
    sign_in_as(client, user_with_role(role))
    token = csrf_token(client.get("/help"))
    response = client.open(path, method=method, data={"csrf_token": token})
    assert response.status_code not in (401, 403), (role, endpoint, method, path)
    if response.status_code in (302, 303):
        assert not response.headers["Location"].startswith("/auth/login"), (role, endpoint, path)
