"""The staff worklist (/staff/worklist): who may reach it, what it lists, and the handling
actions as forms. Attack tests first, then the stories. The operations themselves are tested in
tests/dispatch/test_handling.py.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, update
from werkzeug.test import TestResponse

from app.audit import Actor, verify
from app.extensions import db
from app.inbox.document_actions import report_not_my_patient
from app.models import Delivery, Doctor, Document, StaffUser
from tests.conftest import Api, consent_body, document_body
from tests.dispatch.api_support import add_doctor, gln
from tests.support.factories import make_staff
from tests.support.pages import assert_no_inline_code, csrf_token
from tests.support.queries import counted_queries
from tests.support.signin import sign_in_as
from tests.support.trail import events

GLN = "7601000000019"  # the active_doctor fixture
OTHER = gln(7)
PATIENT = "P-0042"

#: Every worklist route (1 is a delivery id). Who may reach them: tests/web/test_access.py.
ROUTES = [
    ("GET", "/staff/worklist"),
    ("GET", "/staff/worklist/1"),
    ("POST", "/staff/worklist/1/post"),
    ("POST", "/staff/worklist/1/no-action"),
    ("POST", "/staff/worklist/1/redirect"),
    ("POST", "/staff/worklist/1/recheck"),
]
POST_ROUTES = [path for method, path in ROUTES if method == "POST"]


# --- fixtures and helpers --------------------------------------------------------------------


@pytest.fixture()
def staff(client: FlaskClient) -> StaffUser:
    user = make_staff("staff-test", "staff", password=None, enrolled=False)
    sign_in_as(client, user)
    return user


def send(api: Api, document_id: str, recipients: list[str] | None = None,
         **changes: Any) -> int:
    """Post a letter through the DPI API; the delivery id of its first recipient."""
    body = document_body(document_id, recipients=recipients or [GLN], **changes)
    response = api.post("/api/v1/documents", json=body)
    assert response.status_code == 201, response.get_json()
    return delivery(document_id, (recipients or [GLN])[0]).id


def consent(api: Api, doctor: str = GLN, **changes: Any) -> None:
    response = api.put(f"/api/v1/patients/{PATIENT}/consents/{doctor}",
                       json=consent_body(**changes))
    assert response.status_code in (200, 201), response.get_json()


def delivery(document_id: str, recipient: str = GLN) -> Delivery:
    db.session.expire_all()
    found = db.session.scalar(
        select(Delivery).join(Document).where(Document.document_id == document_id,
                                              Delivery.recipient_gln == recipient))
    assert found is not None
    return found


def text(response: TestResponse) -> str:
    return response.get_data(as_text=True)


def token(client: FlaskClient, path: str = "/staff/worklist") -> str:
    return csrf_token(client.get(path, follow_redirects=True))


def post(client: FlaskClient, path: str, data: dict[str, str] | None = None) -> TestResponse:
    return client.post(path, data={"csrf_token": token(client), **(data or {})})


def listed(html: str) -> list[str]:
    """The delivery ids linked from the list, in order."""
    return re.findall(r'href="/staff/worklist/(\d+)"', html)


def report(delivery_id: int) -> None:
    found = db.session.get(Delivery, delivery_id)
    assert found is not None
    report_not_my_patient(found, Actor("doctor", GLN))
    db.session.commit()




# --- attacks: who may reach the worklist ------------------------------------------------------


@pytest.mark.parametrize("path", POST_ROUTES)
def test_a_post_without_csrf_token_is_refused(
    client: FlaskClient, api: Api, active_doctor: Doctor, staff: StaffUser, path: str
) -> None:
    delivery_id = send(api, "DPI-W-1")
    answer = client.post(path.replace("/1/", f"/{delivery_id}/"),
                         data={"note": "sans jeton", "gln": OTHER})
    assert answer.status_code == 400
    assert delivery("DPI-W-1").handled_at is None
    assert events("delivery.handled") == events("delivery.rechecked") == []


def test_unknown_or_not_listed_deliveries_are_404(
    client: FlaskClient, api: Api, active_doctor: Doctor, staff: StaffUser
) -> None:
    consent(api)
    delivered = send(api, "DPI-W-2")  # delivered, not reported: not the worklist's business
    for method, path in ROUTES[1:]:
        for delivery_id in (2_000_000_000, delivered):
            answer = client.open(path.replace("/1", f"/{delivery_id}"), method=method,
                                 data={"csrf_token": token(client), "note": "x"})
            assert answer.status_code == 404, (method, path, delivery_id)
    assert delivery("DPI-W-2").handled_at is None


def test_bad_filters_are_400(client: FlaskClient, staff: StaffUser) -> None:
    for query in ("kind=delivered", "state=all", "from=yesterday", "to=2026-13-01",
                  "after=!!!", "after=bm90LWEtY3Vyc29y"):
        assert client.get(f"/staff/worklist?{query}").status_code == 400, query


def test_markup_in_titles_and_names_is_escaped(
    client: FlaskClient, api: Api, active_doctor: Doctor, staff: StaffUser
) -> None:
    patient = {"id": PATIENT, "family_name": "<b>Muster</b>", "given_name": "<i>Anna",
               "birth_date": "1961-04-02", "deceased": False}
    delivery_id = send(api, "DPI-W-3", title="<script>alert(1)</script>", patient=patient,
                       service="<svg onload=x>")
    for path in ("/staff/worklist", f"/staff/worklist/{delivery_id}"):
        html = text(client.get(path))
        assert "<script>alert" not in html and "<b>Muster" not in html
        assert "<svg" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        assert "&lt;b&gt;Muster&lt;/b&gt;" in html


def test_overlong_or_missing_note_is_refused_and_nothing_stored(
    client: FlaskClient, api: Api, active_doctor: Doctor, staff: StaffUser
) -> None:
    delivery_id = send(api, "DPI-W-4")
    for note in ("", "  ", "n" * 501):
        answer = post(client, f"/staff/worklist/{delivery_id}/no-action", {"note": note})
        assert answer.status_code == 422
        assert 'aria-invalid="true"' in text(answer)
        assert delivery("DPI-W-4").handled_at is None
    assert "500 caractères au plus" in text(answer)
    assert events("delivery.handled") == []


# --- the list ----------------------------------------------------------------------------------


def test_the_list_shows_what_needs_a_person(
    client: FlaskClient, api: Api, active_doctor: Doctor, staff: StaffUser
) -> None:
    blocked = send(api, "DPI-W-10", title="Bloquée")  # no consent
    consent(api)
    delivered = send(api, "DPI-W-11", title="Remise")
    reported = send(api, "DPI-W-12", title="Signalée", service="neurologie")
    report(reported)
    held = send(api, "DPI-W-13", title="Retenue", sensitive=True)
    consent(api, electronic_sending=False)  # revoked: the held letter is cancelled
    assert delivery("DPI-W-13").status == "cancelled"

    html = text(client.get("/staff/worklist"))
    assert listed(html) == [str(held), str(reported), str(blocked)]  # newest first
    assert str(delivered) not in listed(html)
    # Each row: title, type, service, patient (name, birth date, DPI id), doctor, status, rule.
    assert "Lettre de sortie" in html and "cardiologie" in html
    assert "Muster Anna" in html and "02.04.1961" in html and PATIENT in html
    assert "Muller Claire" in html and GLN in html
    assert "Bloqué" in html and "Pas de consentement à l" in html
    assert "Annulé" in html
    assert '<th scope="col">' in html and "<caption>" in html
    assert_no_inline_code(html)

    def ids(query: str) -> list[str]:
        return listed(text(client.get(f"/staff/worklist?{query}")))

    assert ids("kind=blocked") == [str(blocked)]
    assert ids("kind=cancelled") == [str(held)]
    assert ids("kind=reported") == [str(reported)]
    assert ids("service=neurologie") == [str(reported)]
    today = datetime.now(UTC).date()
    assert len(ids(f"from={today - timedelta(days=1)}&to={today + timedelta(days=1)}")) == 3
    assert ids(f"to={today - timedelta(days=2)}") == []
    assert ids(f"from={today + timedelta(days=2)}") == []
    assert ids("state=handled") == []


def test_received_dates_are_filtered_in_zurich(
    client: FlaskClient, api: Api, active_doctor: Doctor, staff: StaffUser
) -> None:
    late = send(api, "DPI-W-20")
    # Received at 23:30 UTC on 14 January: already 15 January in Geneva.
    document = delivery("DPI-W-20").document
    document.received_at = datetime(2026, 1, 14, 23, 30, tzinfo=UTC)
    db.session.commit()
    assert listed(text(client.get("/staff/worklist?from=2026-01-15&to=2026-01-15"))) == [
        str(late)]
    assert listed(text(client.get("/staff/worklist?to=2026-01-14"))) == []


def test_pages_by_keyset_and_constant_queries(
    app: Flask, client: FlaskClient, api: Api, active_doctor: Doctor, staff: StaffUser
) -> None:
    send(api, "DPI-W-30-0")
    client.get("/staff/worklist")
    db.session.remove()
    with counted_queries() as one:
        client.get("/staff/worklist")
    for n in range(1, 30):
        send(api, f"DPI-W-30-{n}", patient={"id": f"P-9{n:03d}", "family_name": f"Nom{n}",
                                            "given_name": "X", "birth_date": "1970-01-01",
                                            "deceased": False})
    db.session.remove()
    with counted_queries() as many:
        html = text(client.get("/staff/worklist"))
    assert len(listed(html)) == 25
    assert len(many) == len(one), (len(one), len(many))

    match = re.search(r'href="/staff/worklist\?after=([^"&]+)"', html)
    assert match is not None
    second = listed(text(client.get(f"/staff/worklist?after={match.group(1)}")))
    assert len(second) == 5
    assert not set(second) & set(listed(html))


def test_english(client: FlaskClient, api: Api, active_doctor: Doctor, staff: StaffUser) -> None:
    delivery_id = send(api, "DPI-W-40")
    html = text(client.get("/staff/worklist", headers={"Accept-Language": "en"}))
    assert "Blocked" in html and "consent" in html
    html = text(client.get(f"/staff/worklist/{delivery_id}", headers={"Accept-Language": "en"}))
    assert "Sent by post" in html


# --- the actions -------------------------------------------------------------------------------


def test_posted_leaves_the_open_list_and_shows_in_the_handled_one(
    client: FlaskClient, api: Api, active_doctor: Doctor, staff: StaffUser
) -> None:
    delivery_id = send(api, "DPI-W-50")
    page = text(client.get(f"/staff/worklist/{delivery_id}"))
    assert "Envoyé par la poste" in page and "Réexaminer" in page
    assert_no_inline_code(page)

    answer = post(client, f"/staff/worklist/{delivery_id}/post")
    assert answer.status_code == 303
    assert answer.headers["Location"].endswith("/staff/worklist")
    assert "envoyé par la poste" in text(client.get("/staff/worklist"))
    assert listed(text(client.get("/staff/worklist"))) == []

    handled = text(client.get("/staff/worklist?state=handled"))
    assert listed(handled) == [str(delivery_id)]
    assert "Envoyé par la poste" in handled and "par staff-test" in handled
    (handled_event,) = events("delivery.handled")
    assert handled_event.actor == "staff:staff-test"

    # Twice: a clear message, no second event.
    answer = post(client, f"/staff/worklist/{delivery_id}/post")
    assert answer.status_code == 303
    page = text(client.get(answer.headers["Location"]))
    assert "déjà été traitée" in page
    assert "Traité par" in page and "staff-test" in page
    assert len(events("delivery.handled")) == 1
    assert verify() is None


def test_the_desk_may_handle_too(
    client: FlaskClient, api: Api, active_doctor: Doctor
) -> None:
    sign_in_as(client, make_staff("desk-test", "desk", password=None, enrolled=False))
    delivery_id = send(api, "DPI-W-55")
    answer = post(client, f"/staff/worklist/{delivery_id}/no-action",
                  {"note": "Le patient viendra chercher la lettre."})
    assert answer.status_code == 303
    handled = delivery("DPI-W-55")
    assert (handled.handling, handled.handled_by) == ("no_action", "desk-test")
    assert handled.handling_note == "Le patient viendra chercher la lettre."
    assert events("delivery.handled")[0].actor == "desk:desk-test"


def test_a_hostile_note_is_stored_as_typed_and_shown_escaped(
    client: FlaskClient, api: Api, active_doctor: Doctor, staff: StaffUser
) -> None:
    delivery_id = send(api, "DPI-W-56")
    note = '<img src=x onerror="alert(1)">'
    post(client, f"/staff/worklist/{delivery_id}/no-action", {"note": note})
    assert delivery("DPI-W-56").handling_note == note
    page = text(client.get(f"/staff/worklist/{delivery_id}"))
    assert "<img src=x" not in page and "&lt;img src=x" in page
    assert f"/staff/worklist/{delivery_id}/post" not in page  # handled: no more actions


def test_not_my_patient_sent_to_the_right_doctor(
    client: FlaskClient, api: Api, active_doctor: Doctor, staff: StaffUser
) -> None:
    other = add_doctor(OTHER, family_name="Rochat", given_name="Luc")
    consent(api)
    consent(api, OTHER)
    delivery_id = send(api, "DPI-W-60")
    report(delivery_id)

    page = text(client.get(f"/staff/worklist/{delivery_id}"))
    assert f'<option value="{OTHER}">Rochat Luc (GLN {OTHER})</option>' in page
    assert "Réexaminer" not in page  # delivered: nothing to re-examine

    answer = post(client, f"/staff/worklist/{delivery_id}/redirect", {"gln": OTHER})
    assert answer.status_code == 303
    new = delivery("DPI-W-60", OTHER)
    assert (new.status, new.doctor_id) == ("delivered", other.id)
    assert delivery("DPI-W-60").handling == "other_doctor"
    assert len(events("delivery.redirected")) == 1
    assert "Envoyé au bon médecin" in text(client.get("/staff/worklist?state=handled"))


def test_redirect_to_a_doctor_who_has_it_says_so(
    client: FlaskClient, api: Api, active_doctor: Doctor, staff: StaffUser
) -> None:
    add_doctor(OTHER, family_name="Rochat", given_name="Luc")
    consent(api, OTHER)
    delivery_id = send(api, "DPI-W-70", recipients=[GLN, OTHER])  # blocked for GLN
    page = text(client.get(f"/staff/worklist/{delivery_id}"))
    assert "a déjà ce document" in page
    answer = post(client, f"/staff/worklist/{delivery_id}/redirect", {"gln": OTHER})
    assert answer.status_code == 303
    assert "a déjà une remise de ce document" in text(client.get(answer.headers["Location"]))
    assert delivery("DPI-W-70").handled_at is None
    # A doctor without consent, posted by hand: refused the same way, nothing stored.
    answer = post(client, f"/staff/worklist/{delivery_id}/redirect", {"gln": gln(98)})
    assert "qui a son consentement" in text(
        client.get(answer.headers["Location"]))
    assert events("delivery.redirected") == []
    assert db.session.scalar(select(func.count()).select_from(Delivery)) == 2


def test_recheck_after_the_consent_is_recorded(
    client: FlaskClient, api: Api, active_doctor: Doctor, staff: StaffUser
) -> None:
    delivery_id = send(api, "DPI-W-80")
    answer = post(client, f"/staff/worklist/{delivery_id}/recheck")
    assert answer.status_code == 303
    assert "refusent toujours" in text(client.get(answer.headers["Location"]))
    assert events("delivery.rechecked") == []

    consent(api)
    answer = post(client, f"/staff/worklist/{delivery_id}/recheck")
    assert answer.status_code == 303
    assert "Remise réexaminée : Remis." in text(client.get("/staff/worklist?state=handled"))
    assert delivery("DPI-W-80").status == "delivered"
    (rechecked,) = events("delivery.rechecked")
    assert rechecked.rule == "ok"


def test_retracted_reported_letter_offers_only_no_action(
    client: FlaskClient, api: Api, active_doctor: Doctor, staff: StaffUser
) -> None:
    consent(api)
    delivery_id = send(api, "DPI-W-90")
    report(delivery_id)
    db.session.execute(update(Document).where(Document.document_id == "DPI-W-90")
                       .values(retracted_at=datetime.now(UTC)))
    db.session.commit()
    page = text(client.get(f"/staff/worklist/{delivery_id}"))
    assert "Retiré par l" in page and "hôpital le" in page
    assert f"/staff/worklist/{delivery_id}/post" not in page
    assert f"/staff/worklist/{delivery_id}/no-action" in page
    answer = post(client, f"/staff/worklist/{delivery_id}/post")
    assert "plus envoyé" in text(client.get(answer.headers["Location"]))
    assert events("delivery.handled") == []
