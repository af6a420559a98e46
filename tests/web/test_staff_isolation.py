"""The hospital side's two walls, over every route under /staff: a doctor reaches none of them,
hospital staff reach the staff pages but none of the desk's.

tests/web/test_access.py checks that each route answers as its declaration says; this test checks
the declarations themselves against the layout of the URLs, so that a new desk page declared for
staff by mistake, or a staff page opened to doctors, fails here.
"""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.auth.session import access_of
from tests.support.pages import csrf_token
from tests.support.signin import sign_in_as
from tests.support.walk import gated_calls, user_with_role

#: Pages for the desk only: its enrolment and accounts work, the audit trail.
DESK_ONLY = ("/staff/desk", "/staff/audit")
#: Pages every hospital role uses (the desk does what staff do).
STAFF = ("/staff/doctors", "/staff/patients", "/staff/worklist")


def _under(path: str, prefixes: tuple[str, ...]) -> bool:
    return any(path == prefix or path.startswith(prefix + "/") or path.startswith(prefix + ".")
               for prefix in prefixes)


def _staff_calls(app: Flask) -> list[tuple[str, str, str, frozenset[str]]]:
    calls = [call for call in gated_calls(app) if call[2].startswith("/staff")]
    paths = {path for _, _, path, _ in calls}
    # Not a vacuous walk: each area has its pages.
    for prefix in DESK_ONLY + STAFF:
        assert any(_under(path, (prefix,)) for path in paths), prefix
    return calls


def test_every_staff_route_is_declared_for_its_area(app: Flask) -> None:
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/staff"):
            continue
        access = access_of(app, rule.endpoint)
        assert isinstance(access, frozenset), rule.rule  # never public, never undeclared
        if _under(rule.rule, DESK_ONLY):
            assert access == {"desk"}, rule.rule
        else:
            assert _under(rule.rule, STAFF), f"{rule.rule}: add it to DESK_ONLY or STAFF"
            assert access == {"staff", "desk"}, rule.rule


@pytest.mark.parametrize("role", ["doctor", "staff", "desk"])
def test_each_role_meets_the_walls(app: Flask, client: FlaskClient, role: str) -> None:
    user = user_with_role(role)
    for endpoint, method, path, _ in _staff_calls(app):
        sign_in_as(client, user)
        token = csrf_token(client.get("/help"))
        response = client.open(path, method=method, data={"csrf_token": token})
        refused = role == "doctor" or (role == "staff" and _under(path, DESK_ONLY))
        if refused:
            assert response.status_code == 403, (role, endpoint, method, path)
        else:
            assert response.status_code not in (401, 403), (role, endpoint, method, path)
