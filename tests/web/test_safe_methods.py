"""A GET never changes state when another site makes the browser send it.

The session cookie is ``SameSite=Lax``: a link on another site, followed by a signed-in doctor or
staff member, arrives with the cookie. If such a GET could write, another site could mark a
letter read for the DPI (``first_read_at``), or put ``patient.viewed`` events under a staff
member's name. So every page behind the gate is walked here, with real records behind each id,
as a request from another site (``Sec-Fetch-Site: cross-site``, a foreign ``Referer``, or
neither header): the database, audit trail included, must be exactly as before.

Then the same pages reached from our own pages (``Sec-Fetch-Site: same-origin``) do record what
they must: the first reading for the DPI, and each access to a patient's data.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select
from werkzeug.routing import Rule

from app.audit import CLI
from app.auth.session import access_of
from app.extensions import db
from app.models import AuditEvent, Delivery, Doctor, Notification, Patient, StaffUser
from app.staff.accounts import create_staff
from tests.conftest import Api, consent_body, document_body
from tests.support.signin import sign_in_as
from tests.support.walk import changes_between, database_state

GLN = "7601000000019"
PATIENT = "P-0042"

#: How another site's request looks: the browser says so (Sec-Fetch-Site), or an older browser
#: sends only the other site's address, or nothing at all (a link opened from a mail program).
FOREIGN = {
    "cross-site": {"Sec-Fetch-Site": "cross-site"},
    "same-site": {"Sec-Fetch-Site": "same-site"},
    "typed or bookmarked": {"Sec-Fetch-Site": "none"},
    "foreign referer": {"Referer": "https://evil.example/page"},
    "no header": {},
}
OURS = {"Sec-Fetch-Site": "same-origin"}


@pytest.fixture()
def world(app: Flask, api: Api, active_doctor: Doctor) -> Iterator[dict[str, Any]]:
    # Given a consent, a delivered letter, a desk account and a staff account
    assert api.put(f"/api/v1/patients/{PATIENT}/consents/{GLN}",
                   json=consent_body()).status_code == 201
    assert api.post("/api/v1/documents", json=document_body()).status_code == 201
    desk, _, _ = create_staff("desk-safe", "desk", CLI)
    staff, _, _ = create_staff("staff-safe", "staff", CLI)
    desk.must_change_password = staff.must_change_password = False
    db.session.commit()
    # Clients that send only the headers each test gives (no Sec-Fetch-Site of their own).
    clients = {role: app.test_client(from_our_pages=False)
               for role in ("doctor", "desk", "staff")}
    sign_in_as(clients["doctor"], active_doctor)
    sign_in_as(clients["desk"], db.session.get(StaffUser, desk.id))
    sign_in_as(clients["staff"], db.session.get(StaffUser, staff.id))
    delivery = db.session.scalar(select(Delivery))
    patient = db.session.scalar(select(Patient))
    assert delivery is not None and patient is not None
    values = {"delivery_id": delivery.id, "patient_id": patient.id, "dpi_id": PATIENT,
              "doctor_id": active_doctor.id, "user_id": staff.id, "client_id": 1,
              "notification_id": db.session.scalar(select(func.min(Notification.id))) or 1,
              "approval_id": 1, "token": "x" * 40}
    yield {"clients": clients, "values": values, "delivery": delivery.id}


def _gated_gets(app: Flask, values: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(role, endpoint, path) of every GET behind the gate, with real records for its ids."""
    adapter = app.url_map.bind("relais.test")
    found = []
    rule: Rule
    for rule in app.url_map.iter_rules():
        access = access_of(app, rule.endpoint)
        if not isinstance(access, frozenset) or "GET" not in (rule.methods or set()):
            continue
        role = "doctor" if "doctor" in access else "desk" if "desk" in access else "staff"
        path = adapter.build(rule.endpoint, {name: values[name] for name in rule.arguments})
        found.append((role, rule.endpoint, path))
    return found


def test_the_walk_covers_the_pages_that_record_something(app: Flask,
                                                         world: dict[str, Any]) -> None:
    endpoints = {endpoint for _, endpoint, _ in _gated_gets(app, world["values"])}
    assert {"documents.content", "documents.viewer", "staff_patients.show",
            "audit_viewer.export_csv", "audit_viewer.export_fhir"} <= endpoints
    assert len(endpoints) >= 25


@pytest.mark.parametrize("origin", list(FOREIGN))
def test_no_get_from_another_site_changes_anything(
    app: Flask, world: dict[str, Any], origin: str
) -> None:
    before = database_state()
    answered = {}
    for role, _endpoint, path in _gated_gets(app, world["values"]):
        # When another site sends the signed-in browser to the page (with its query forms too)
        for query in ("", "?download=1", "?q=muster", "?q=muster&dpi_id=P-0042"):
            response = world["clients"][role].get(path + query, headers=FOREIGN[origin])
            answered[path + query] = response.status_code
            assert response.status_code < 500, (path + query, response.status_code)
            db.session.rollback()
    # Then nothing was written: no reading for the DPI, no event under anyone's name
    changes = changes_between(before, database_state())
    assert changes == {}, "\n".join(f"{t}: {rows}" for t, rows in changes.items())
    assert answered  # the walk reached the pages


def test_opening_a_letter_from_another_site_leads_to_the_viewer(
    app: Flask, world: dict[str, Any]
) -> None:
    doctor = world["clients"]["doctor"]
    path = f"/documents/{world['delivery']}/content?download=1"
    for headers in FOREIGN.values():
        response = doctor.get(path, headers=headers)
        # The letter is not served to the other site's link: the doctor is shown the viewer,
        # from which a download is one of our own requests.
        assert response.status_code == 303
        assert response.headers["Location"].endswith(f"/documents/{world['delivery']}")
        assert response.headers.get("Content-Disposition") is None


def test_opening_a_letter_from_our_viewer_records_the_reading(
    app: Flask, world: dict[str, Any]
) -> None:
    doctor = world["clients"]["doctor"]
    delivery_id = world["delivery"]
    # From the viewer (pdf.js fetches the content: same-origin)
    response = doctor.get(f"/documents/{delivery_id}/content", headers=OURS)
    assert response.status_code == 200 and response.data.startswith(b"%PDF-")
    delivery = db.session.get(Delivery, delivery_id)
    assert delivery is not None and delivery.first_read_at is not None
    # An older browser without Sec-Fetch-Site, sending our own page as its referer
    response = doctor.get(f"/documents/{delivery_id}/content?download=1",
                          headers={"Referer": f"http://relais.test/documents/{delivery_id}"})
    assert response.status_code == 200
    actions = db.session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)).all()
    assert actions[-2:] == ["document.viewed", "document.downloaded"]


def test_a_referer_of_our_host_on_another_scheme_or_port_is_foreign(
    app: Flask, world: dict[str, Any]
) -> None:
    doctor = world["clients"]["doctor"]
    for referer in ("https://relais.test/documents", "http://relais.test:8080/documents",
                    "http://relais.test.evil.example/documents", "http://evil@relais.test/x",
                    "not a url"):
        response = doctor.get(f"/documents/{world['delivery']}/content",
                              headers={"Referer": referer})
        assert response.status_code == 303, referer
    delivery = db.session.get(Delivery, world["delivery"])
    assert delivery is not None and delivery.first_read_at is None


def test_a_patient_page_from_another_site_asks_before_it_records(
    app: Flask, world: dict[str, Any]
) -> None:
    staff = world["clients"]["staff"]
    path = f"/staff/patients/{PATIENT}"
    before = database_state()
    # When a link on another site opens a patient's page
    page = staff.get(path, headers=FOREIGN["cross-site"])
    # Then the page asks to confirm, shows no patient data, and nothing is recorded
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "Muster" not in html and "Anna" not in html
    assert f'href="{path}"' in html
    assert database_state() == before
    # When the staff member confirms (a link of our own page)
    page = staff.get(path, headers=OURS)
    # Then the page is shown and the access recorded under their name
    assert "Muster" in page.get_data(as_text=True)
    viewed = db.session.scalars(select(AuditEvent).where(
        AuditEvent.action == "patient.viewed")).all()
    assert [(e.actor, e.target) for e in viewed] == [("staff:staff-safe", f"patient:{PATIENT}")]
