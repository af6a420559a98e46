"""Roles enforced on every route: a walk over ``app.url_map`` as each kind of visitor.

Anonymous visitors are sent to sign in (GET) or refused (POST); a signed-in user whose role a
route does not name gets 403; a route's own roles pass the gate. Public routes and the DPI API
(bearer tokens, tested in tests/dispatch/) are left out. New routes are covered as they come.
"""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.auth.session import ROLES
from tests.support.pages import csrf_token
from tests.support.signin import sign_in_as
from tests.support.walk import gated_calls, user_with_role


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
    user = user_with_role(role)
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
