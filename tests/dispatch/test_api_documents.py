"""DPI API over HTTP: POST/GET documents and retraction (INTERFACES.md, DPI API v1)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from app.audit import SYSTEM
from app.dispatch.documents import mark_first_read, read_content
from app.dispatch.facts import NotFound
from app.extensions import db
from app.models import Doctor, Document
from app.models.base import utcnow
from tests.conftest import Api, consent_body, document_body, iso_ago
from tests.dispatch.api_support import (
    GLN,
    PATIENT,
    CheckedApi,
    add_doctor,
    assert_rejected,
    consent,
    counts,
    delivery_of,
    events,
    gln,
    parse,
)


@pytest.fixture()
def dpi(api: Api) -> CheckedApi:
    return CheckedApi(api)


def post(dpi: CheckedApi, document_id: str = "DPI-1", **changes: Any) -> Any:
    return dpi.post("/api/v1/documents", json=document_body(document_id, **changes))


def get(dpi: CheckedApi, document_id: str = "DPI-1") -> dict[str, Any]:
    response = dpi.get(f"/api/v1/documents/{document_id}")
    assert response.status_code == 200
    body: dict[str, Any] = response.get_json()
    return body


def deceased_patient() -> dict[str, Any]:
    return {**document_body()["patient"], "deceased": True}


# --- the rules, one by one --------------------------------------------------------------------

# (setup of the recipient, body changes, expected status, expected rule)
RULE_CASES: list[tuple[str, dict[str, Any], str, str]] = [
    ("consented", {}, "delivered", "ok"),
    ("locked", {}, "delivered", "ok"),  # a sign-in lockout never stops letters
    ("none", {}, "blocked", "recipient_unknown"),
    ("pending", {}, "blocked", "recipient_inactive"),
    ("deactivated", {}, "blocked", "recipient_inactive"),
    ("consented", {"patient": "deceased"}, "blocked", "patient_deceased"),
    ("no_consent", {}, "blocked", "no_consent"),
    ("revoked", {}, "blocked", "no_consent"),
    ("not_sending", {}, "blocked", "no_consent"),
    ("consented", {"third_party_data": True}, "blocked", "third_party_data"),
    ("consented", {"category": "follow_up_note"}, "blocked", "excluded_category"),
    ("consented", {"service": "pedopsychiatrie"}, "blocked", "excluded_service"),
    ("consented", {"sensitive": True, "signed_at": "8 days ago"}, "delivered", "ok"),
    # the first rule that applies decides, in the contract's order
    ("pending", {"patient": "deceased", "third_party_data": True}, "blocked", "recipient_inactive"),
    ("consented", {"patient": "deceased", "third_party_data": True}, "blocked", "patient_deceased"),
    ("no_consent", {"third_party_data": True, "category": "follow_up_note"}, "blocked",
     "no_consent"),
    ("consented", {"third_party_data": True, "category": "follow_up_note",
                   "service": "pedopsychiatrie"}, "blocked", "third_party_data"),
    ("consented", {"category": "follow_up_note", "service": "pedopsychiatrie", "sensitive": True},
     "blocked", "excluded_category"),
    ("consented", {"service": "pedopsychiatrie", "sensitive": True}, "blocked",
     "excluded_service"),
    ("consented", {"sensitive": True, "encounter": "inpatient", "signed_at": "25 hours ago"},
     "delivered", "ok"),
]


def prepare(dpi: CheckedApi, setup: str) -> None:
    if setup == "none":
        return
    state = {"pending": "pending", "deactivated": "deactivated"}.get(setup, "active")
    add_doctor(GLN, state=state, sign_in_locked=setup == "locked")
    if setup in ("no_consent",):
        return
    consent(dpi, electronic_sending=setup != "not_sending")
    if setup == "revoked":
        assert dpi.delete(f"/api/v1/patients/{PATIENT}/consents/{GLN}").status_code == 204


def resolve(changes: dict[str, Any]) -> dict[str, Any]:
    out = dict(changes)
    if out.get("patient") == "deceased":
        out["patient"] = deceased_patient()
    if out.get("signed_at") == "8 days ago":
        out["signed_at"] = iso_ago(days=8)
    if out.get("signed_at") == "25 hours ago":
        out["signed_at"] = iso_ago(hours=25)
    return out


@pytest.mark.parametrize(("setup", "changes", "status", "rule"), RULE_CASES)
def test_each_rule_decides_the_delivery(
    dpi: CheckedApi, setup: str, changes: dict[str, Any], status: str, rule: str
) -> None:
    prepare(dpi, setup)
    response = post(dpi, **resolve(changes))
    assert response.status_code == 201
    answer = delivery_of(response.get_json())
    assert (answer["status"], answer["rule"], answer["release_at"]) == (status, rule, None)
    assert answer["reason"]
    stored = delivery_of(get(dpi))
    assert (stored["status"], stored["rule"]) == (status, rule)
    assert (stored["delivered_at"] is not None) == (status == "delivered")
    decided = [e for e in events("delivery.decided") if e.target == "document:DPI-1"]
    assert [e.rule for e in decided] == [rule]


@pytest.mark.parametrize(("encounter", "delay"), [
    ("outpatient", timedelta(days=7)),
    ("inpatient", timedelta(hours=24)),
])
def test_sensitive_document_is_held_until_signature_plus_delay(
    dpi: CheckedApi, active_doctor: Doctor, encounter: str, delay: timedelta
) -> None:
    consent(dpi)
    signed_at = iso_ago(hours=1)
    response = post(dpi, sensitive=True, encounter=encounter, signed_at=signed_at)
    assert response.status_code == 201
    answer = delivery_of(response.get_json())
    assert (answer["status"], answer["rule"]) == ("held", "sensitive_delay")
    assert parse(answer["release_at"]) == parse(signed_at) + delay  # type: ignore[operator]
    stored = delivery_of(get(dpi))
    assert stored["status"] == "held"
    assert parse(stored["release_at"]) == parse(signed_at) + delay  # type: ignore[operator]
    assert stored["delivered_at"] is None


def test_deceased_flag_in_a_document_cancels_what_is_held_for_the_patient(
    dpi: CheckedApi, active_doctor: Doctor
) -> None:
    # Given a sensitive letter held for the patient's doctor
    consent(dpi)
    assert post(dpi, "DPI-HELD", sensitive=True, signed_at=iso_ago(hours=1)).status_code == 201
    # When the DPI sends another document saying the patient has died
    response = post(dpi, "DPI-AFTER", patient=deceased_patient())
    # Then the new one is blocked and the held one is cancelled, both for the death
    assert delivery_of(response.get_json())["rule"] == "patient_deceased"
    held = delivery_of(get(dpi, "DPI-HELD"))
    assert (held["status"], held["rule"]) == ("cancelled", "patient_deceased")
    assert held["cancelled_at"] is not None
    assert [e.target for e in events("patient.deceased")] == [f"patient:{PATIENT}"]


def test_omitted_recipients_go_to_the_consented_treating_doctors(
    dpi: CheckedApi, active_doctor: Doctor
) -> None:
    other = add_doctor(2).gln
    revoked = add_doctor(3).gln
    consent(dpi)
    consent(dpi, doctor=other)
    consent(dpi, doctor=revoked, electronic_sending=False)
    add_doctor(4)  # active, but never designated
    body = document_body("DPI-1")
    del body["recipients"]
    response = dpi.post("/api/v1/documents", json=body)
    assert response.status_code == 201
    answers = response.get_json()["deliveries"]
    assert sorted(d["recipient"] for d in answers) == sorted([GLN, other])
    assert {d["status"] for d in answers} == {"delivered"}


def test_omitted_recipients_and_none_consented_is_refused_storing_nothing(
    dpi: CheckedApi, active_doctor: Doctor
) -> None:
    before = counts()
    body = document_body("DPI-1")
    del body["recipients"]
    response = dpi.post("/api/v1/documents", json=body)
    assert response.status_code == 422
    assert [e["field"] for e in response.get_json()["errors"]] == ["recipients"]
    assert counts() == before
    assert events("api.rejected")[-1].outcome == "rejected"
    # Once the patient designates a doctor, the same request is taken (nothing was kept of it)
    consent(dpi)
    again = dpi.post("/api/v1/documents", json=body)
    assert again.status_code == 201
    assert [d["recipient"] for d in again.get_json()["deliveries"]] == [GLN]


def test_markup_in_text_is_stored_as_sent(dpi: CheckedApi, active_doctor: Doctor) -> None:
    title = '<script>alert("x")</script> & <b>Lettre</b>'
    assert post(dpi, title=title, author="Dr <i>B</i>").status_code == 201
    stored = get(dpi)
    assert (stored["title"], stored["author"]) == (title, "Dr <i>B</i>")


# --- idempotency --------------------------------------------------------------------------------


def test_same_body_again_answers_the_first_answer_and_stores_nothing_more(
    dpi: CheckedApi, active_doctor: Doctor
) -> None:
    consent(dpi)
    # One body, built once: document_body() signs it an hour before the clock, to the second.
    body = document_body("DPI-1")
    first = dpi.post("/api/v1/documents", json=body)
    assert first.status_code == 201
    before = counts()
    variants = [
        json.dumps(body),
        json.dumps(dict(reversed(list(body.items()))), indent=2),
        json.dumps(body, separators=(",", ":"), sort_keys=True) + "\n  ",
    ]
    for raw in variants:
        again = dpi.post("/api/v1/documents", data=raw, content_type="application/json")
        assert again.status_code == 200
        assert again.get_json() == first.get_json()
    assert counts() == before
    assert len(events("document.received")) == 1
    assert len(events("document.replayed")) == len(variants)


@pytest.mark.parametrize("change", [
    {"title": "Autre titre"},
    {"recipients": [GLN, "7601000000026"]},
    {"patient": {"id": PATIENT, "family_name": "Muster", "given_name": "Anna",
                 "birth_date": "1961-04-02"}},
])
def test_same_document_id_with_another_body_is_a_conflict(
    dpi: CheckedApi, active_doctor: Doctor, change: dict[str, Any]
) -> None:
    assert post(dpi).status_code == 201
    before = counts()
    response = post(dpi, **change)
    assert response.status_code == 409
    assert response.content_type.startswith("application/problem+json")
    assert counts() == before
    assert get(dpi)["title"] == "Lettre de sortie"


# --- GET ----------------------------------------------------------------------------------------


def test_get_answers_metadata_and_deliveries_never_content(
    dpi: CheckedApi, active_doctor: Doctor
) -> None:
    consent(dpi)
    unknown = gln(900)
    body = document_body("DPI-1", recipients=[GLN, unknown])
    assert dpi.post("/api/v1/documents", json=body).status_code == 201
    stored = get(dpi)
    assert "content" not in stored
    assert body["content"] not in json.dumps(stored)
    for key in ("type", "title", "service", "author", "encounter", "category", "sensitive",
                "third_party_data", "content_type"):
        assert stored[key] == body[key], key
    assert stored["patient_id"] == PATIENT
    assert parse(stored["signed_at"]) == parse(body["signed_at"])
    assert stored["size"] > 0 and len(stored["sha256"]) == 64
    delivered, blocked = delivery_of(stored, GLN), delivery_of(stored, unknown)
    assert delivered["status"] == "delivered" and delivered["delivered_at"] is not None
    assert delivered["decided_at"] is not None and delivered["first_read_at"] is None
    assert (blocked["status"], blocked["rule"]) == ("blocked", "recipient_unknown")
    assert blocked["delivered_at"] is None and blocked["decided_at"] is not None


@pytest.mark.parametrize("document_id", ["DPI-NOPE", "DPI%201", "-DPI", "D" * 129, "DPI%00"])
def test_get_unknown_or_impossible_document_is_404(dpi: CheckedApi, document_id: str) -> None:
    before = counts()
    response = dpi.get(f"/api/v1/documents/{document_id}")
    assert_rejected(response, 404, before)


# --- retract ------------------------------------------------------------------------------------


def test_retract_withdraws_every_delivery_and_destroys_the_content(
    dpi: CheckedApi, active_doctor: Doctor
) -> None:
    # Given a letter delivered to one doctor and held for another
    other = add_doctor(2).gln
    consent(dpi)
    consent(dpi, doctor=other)
    assert post(dpi, recipients=[GLN, other], sensitive=True,
                signed_at=iso_ago(hours=1)).status_code == 201
    assert post(dpi, "DPI-KEEP").status_code == 201
    # When the hospital retracts it
    response = dpi.post("/api/v1/documents/DPI-1/retract", json={"reason": "wrong patient"})
    # Then every delivery is retracted, and its content is gone for everyone
    assert response.status_code == 200
    body = response.get_json()
    assert body["retraction_reason"] == "wrong patient" and body["retracted_at"] is not None
    assert {d["status"] for d in body["deliveries"]} == {"retracted"}
    assert all(d["retracted_at"] is not None for d in body["deliveries"])
    assert get(dpi)["deliveries"] == body["deliveries"]
    db.session.expire_all()
    document = db.session.query(Document).filter_by(document_id="DPI-1").one()
    with pytest.raises(NotFound):
        read_content(document)
    kept = db.session.query(Document).filter_by(document_id="DPI-KEEP").one()
    assert read_content(kept).startswith(b"%PDF-")
    # And retracting again changes nothing
    again = dpi.post("/api/v1/documents/DPI-1/retract", json={"reason": "again"})
    assert again.status_code == 200
    assert again.get_json() == body
    assert len(events("document.retracted")) == 1


def test_retract_unknown_document_is_404(dpi: CheckedApi) -> None:
    before = counts()
    response = dpi.post("/api/v1/documents/DPI-NOPE/retract", json={"reason": "x"})
    assert response.status_code == 404
    assert counts() == before


@pytest.mark.parametrize("body", [{}, {"reason": ""}, {"reason": 3}, {"reason": "x", "y": 1}])
def test_retract_needs_a_reason(dpi: CheckedApi, active_doctor: Doctor, body: Any) -> None:
    assert post(dpi).status_code == 201
    response = dpi.post("/api/v1/documents/DPI-1/retract", json=body)
    assert response.status_code == 422
    assert get(dpi)["retracted_at"] is None


def test_get_shows_when_the_doctor_read_or_reported_the_letter(
    dpi: CheckedApi, active_doctor: Doctor
) -> None:
    consent(dpi)
    assert post(dpi).status_code == 201
    assert post(dpi, "DPI-2").status_code == 201
    # When the doctor opens the first letter and reports the second as not their patient
    document = db.session.query(Document).filter_by(document_id="DPI-1").one()
    mark_first_read(document, GLN, SYSTEM)
    misdirected = db.session.query(Document).filter_by(document_id="DPI-2").one()
    misdirected.deliveries[0].reported_not_my_patient_at = utcnow()
    db.session.commit()
    # Then the DPI sees both, with their times
    read = delivery_of(get(dpi))
    assert read["status"] == "read" and read["first_read_at"] is not None
    assert read["delivered_at"] is not None
    reported = delivery_of(get(dpi, "DPI-2"))
    assert reported["reported_not_my_patient_at"] is not None
    assert delivery_of(get(dpi, "DPI-2"))["first_read_at"] is None


def test_a_later_document_cannot_undo_a_death(dpi: CheckedApi, active_doctor: Doctor) -> None:
    consent(dpi)
    assert post(dpi, "DPI-1", patient=deceased_patient()).status_code == 201
    response = post(dpi, "DPI-2")  # "deceased": false
    assert delivery_of(response.get_json())["rule"] == "patient_deceased"


def test_consent_given_again_after_revocation_lets_letters_through(
    dpi: CheckedApi, active_doctor: Doctor
) -> None:
    consent(dpi)
    assert dpi.delete(f"/api/v1/patients/{PATIENT}/consents/{GLN}").status_code == 204
    assert delivery_of(post(dpi, "DPI-1").get_json())["rule"] == "no_consent"
    again = consent(dpi)
    assert again.status_code == 200 and again.get_json()["revoked_at"] is None
    assert delivery_of(post(dpi, "DPI-2").get_json())["rule"] == "ok"


def test_times_read_the_same_in_the_first_answer_and_later(
    api: Api, active_doctor: Doctor
) -> None:
    # A held letter's release time, computed from a +01:00 signature, is given in UTC both in
    # the answer to the POST and when the DPI reads the document back.
    api.put(f"/api/v1/patients/P-0042/consents/{active_doctor.gln}", json=consent_body())
    posted = api.post("/api/v1/documents", json=document_body(sensitive=True,
                      signed_at="2099-11-20T16:05:00+01:00"))
    assert posted.status_code == 201, posted.get_json()
    first = posted.get_json()["deliveries"][0]["release_at"]
    later = api.get("/api/v1/documents/DPI-2026-000123").get_json()["deliveries"][0]["release_at"]
    assert first == later == "2099-11-27T15:05:00+00:00"
