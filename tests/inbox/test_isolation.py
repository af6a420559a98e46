"""Every doctor route that takes an id answers 404 to another doctor: a walk over app.url_map.

The per-page tests (test_documents, test_patients) go deeper; this one makes sure that a route
added later, on any blueprint, cannot forget the rule.
"""

from __future__ import annotations

from flask import Flask
from sqlalchemy import select
from werkzeug.routing import IntegerConverter

from app.auth.session import access_of
from app.extensions import db
from app.models import Delivery, Doctor
from tests.support.inbox import (
    OTHER_GLN,
    Inbox,
    inbox_fixture,  # noqa: F401
    other_doctor_fixture,  # noqa: F401
)
from tests.support.pages import csrf_token
from tests.support.signin import sign_in_as


def doctor_id_routes(app: Flask) -> list[tuple[str, str, str]]:
    """(endpoint, method, rule) of every route a doctor may reach that takes an argument."""
    found = []
    for rule in app.url_map.iter_rules():
        access = access_of(app, rule.endpoint)
        # Ids are integers; the email confirmation's <token> is tested in test_profile.py.
        takes_id = any(isinstance(c, IntegerConverter) for c in rule._converters.values())
        if isinstance(access, frozenset) and "doctor" in access and takes_id:
            for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
                found.append((rule.endpoint, method, rule.rule))
    return found


def test_another_doctor_gets_404_on_every_route_with_an_id(
    app: Flask, inbox: Inbox, other_doctor: Doctor
) -> None:
    # Dr Muller's letter (and so her patient): the ids the other doctor tries.
    delivery_id = inbox.send(document_id="DPI-2026-000900")
    delivery = db.session.get(Delivery, delivery_id)
    assert delivery is not None
    ids = {"delivery_id": delivery_id, "patient_id": delivery.document.patient_id}
    assert inbox.client.get(f"/documents/{delivery_id}").status_code == 200  # hers: visible

    routes = doctor_id_routes(app)
    assert {endpoint for endpoint, _, _ in routes} >= {"documents.viewer", "patients.show"}
    other = app.test_client()
    sign_in_as(other, db.session.scalar(select(Doctor).where(Doctor.gln == OTHER_GLN)))
    token = csrf_token(other.get("/help"))
    adapter = app.url_map.bind("relais.test")
    for endpoint, method, rule in routes:
        arguments = next(r.arguments for r in app.url_map.iter_rules() if r.rule == rule)
        unknown = set(arguments) - ids.keys()
        assert not unknown, f"{rule}: add an id of Dr Muller's for {unknown} to this test"
        url = adapter.build(endpoint, {name: ids[name] for name in arguments})
        response = other.open(url, method=method, data={"csrf_token": token})
        assert response.status_code == 404, (endpoint, method, url, response.status_code)
