"""DPI API over HTTP: consents, deaths and the release of held letters (INTERFACES.md)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from app.audit import SYSTEM
from app.dispatch.release import release_due
from app.extensions import db
from app.models import Consent, Doctor
from app.models.base import utcnow
from tests.conftest import Api, consent_body, document_body, iso_ago
from tests.dispatch.api_support import (
    GLN,
    PATIENT,
    CheckedApi,
    add_doctor,
    assert_rejected,
    birth_date,
    consent,
    counts,
    delivery_of,
    events,
    gln,
)

CONSENT = f"/api/v1/patients/{PATIENT}/consents/{GLN}"


@pytest.fixture()
def dpi(api: Api) -> CheckedApi:
    return CheckedApi(api)


def post_held(dpi: CheckedApi, document_id: str, **changes: Any) -> None:
    body = document_body(document_id, sensitive=True, signed_at=iso_ago(hours=1), **changes)
    response = dpi.post("/api/v1/documents", json=body)
    assert response.status_code == 201
    assert {d["status"] for d in response.get_json()["deliveries"]} == {"held"}


def status_of(dpi: CheckedApi, document_id: str, recipient: str = GLN) -> tuple[str, str]:
    response = dpi.get(f"/api/v1/documents/{document_id}")
    assert response.status_code == 200
    delivery = delivery_of(response.get_json(), recipient)
    return delivery["status"], delivery["rule"]


# --- consents -------------------------------------------------------------------------------


def test_consent_is_created_then_overwritten_by_the_latest_write(
    dpi: CheckedApi, active_doctor: Doctor
) -> None:
    first = dpi.put(CONSENT, json=consent_body())
    assert first.status_code == 201
    body = first.get_json()
    assert (body["patient_id"], body["gln"], body["electronic_sending"]) == (PATIENT, GLN, True)
    assert body["revoked_at"] is None and body["doctor_state"] == "active"
    second = dpi.put(CONSENT, json=consent_body(
        given_by="representative", representative_name="Paul Muster", recorded_by="desk"))
    assert second.status_code == 200
    latest = second.get_json()
    assert (latest["given_by"], latest["representative_name"], latest["recorded_by"]) == (
        "representative", "Paul Muster", "desk")
    assert db.session.scalars(select(Consent)).all().__len__() == 1
    assert [e.action for e in events() if e.action.startswith("consent.")] == [
        "consent.recorded", "consent.recorded"]


def test_consent_for_an_unknown_gln_creates_a_pending_doctor(dpi: CheckedApi) -> None:
    unknown = gln(77)
    response = dpi.put(f"/api/v1/patients/{PATIENT}/consents/{unknown}", json=consent_body())
    assert response.status_code == 201
    assert response.get_json()["doctor_state"] == "pending"
    doctor = db.session.scalars(select(Doctor).where(Doctor.gln == unknown)).one()
    assert doctor.state == "pending" and not doctor.can_receive
    # and a pending doctor cannot receive yet
    body = document_body("DPI-1", recipients=[unknown])
    answer = dpi.post("/api/v1/documents", json=body).get_json()
    assert delivery_of(answer, unknown)["rule"] == "recipient_inactive"


def minor(years: int, days: int = 0, **changes: Any) -> dict[str, Any]:
    patient = {"family_name": "Muster", "given_name": "Lea", "birth_date": birth_date(years, days)}
    return consent_body(patient=patient, **changes)


REPRESENTATIVE = {"given_by": "representative", "representative_name": "Marc Muster"}

# (body, expected status, the field a 422 names)
MINORS: list[tuple[dict[str, Any], int, str | None]] = [
    (minor(11, 364), 422, "given_by"),
    (minor(11, 364, **REPRESENTATIVE), 201, None),
    (minor(12), 422, "given_by"),
    (minor(14), 422, "given_by"),
    (minor(14, **REPRESENTATIVE), 422, "minor_agreement"),
    (minor(14, **REPRESENTATIVE, minor_agreement=False), 422, "minor_agreement"),
    (minor(14, **REPRESENTATIVE, minor_agreement=True), 201, None),
    (minor(15, 364, **REPRESENTATIVE, minor_agreement=True), 201, None),
    (minor(16), 201, None),
    (minor(16, **REPRESENTATIVE), 201, None),
    (minor(40, **REPRESENTATIVE), 201, None),
    (minor(40, given_by="representative"), 422, "representative_name"),
    (minor(40, given_by="representative", representative_name=" "), 422, "representative_name"),
    (minor(5, given_by="representative"), 422, "representative_name"),
    (minor(0, -1), 422, "patient.birth_date"),  # born tomorrow
]


@pytest.mark.parametrize(("body", "status", "field"), MINORS)
def test_who_may_consent_follows_the_minors_rule(
    dpi: CheckedApi, active_doctor: Doctor, body: dict[str, Any], status: int, field: str | None
) -> None:
    before = counts()
    response = dpi.put(CONSENT, json=body)
    if status == 201:
        assert response.status_code == 201, response.get_json()
    else:
        assert_rejected(response, status, before, field)


@pytest.mark.parametrize(("changes", "field"), [
    ({"electronic_sending": "yes"}, "electronic_sending"),
    ({"designation": "family_doctor"}, "designation"),
    ({"given_by": "neighbour"}, "given_by"),
    ({"recorded_by": ""}, "recorded_by"),
    ({"minor_agreement": "true"}, "minor_agreement"),
    ({"patient": {"family_name": "Muster", "given_name": "Anna"}}, "patient.birth_date"),
    ({"note": "x"}, "note"),
])
def test_bad_consent_fields_are_422(
    dpi: CheckedApi, active_doctor: Doctor, changes: dict[str, Any], field: str
) -> None:
    before = counts()
    assert_rejected(dpi.put(CONSENT, json=consent_body(**changes)), 422, before, field)


@pytest.mark.parametrize("path", [
    f"/api/v1/patients/{PATIENT}/consents/7601000000018",
    f"/api/v1/patients/P%2042/consents/{GLN}",
    f"/api/v1/patients/{'P' * 65}/consents/{GLN}",  # patient ids are at most 64 characters
])
def test_bad_path_is_422(dpi: CheckedApi, path: str) -> None:
    before = counts()
    response = dpi.put(path, json=consent_body())
    assert response.status_code == 422
    assert counts() == before


def test_consent_malformed_json_is_400(dpi: CheckedApi) -> None:
    before = counts()
    response = dpi.put(CONSENT, data=b"{", content_type="application/json")
    assert_rejected(response, 400, before)


def test_electronic_sending_false_revokes_and_cancels_held_letters(
    dpi: CheckedApi, active_doctor: Doctor
) -> None:
    # Given a sensitive letter held for Dr Muller
    consent(dpi)
    post_held(dpi, "DPI-1")
    # When the DPI records that the patient refuses electronic sending
    response = dpi.put(CONSENT, json=consent_body(electronic_sending=False))
    # Then it is a revocation, and the held letter is cancelled for lack of consent
    assert response.status_code == 200
    assert response.get_json()["revoked_at"] is not None
    assert status_of(dpi, "DPI-1") == ("cancelled", "no_consent")
    assert events("consent.revoked")


def test_delete_consent_cancels_only_that_doctors_held_letters(
    dpi: CheckedApi, active_doctor: Doctor
) -> None:
    # Given one letter delivered and two held, one of them for another doctor
    other = add_doctor(2).gln
    consent(dpi)
    consent(dpi, doctor=other)
    consent(dpi, patient="P-0043")
    assert dpi.post("/api/v1/documents", json=document_body("DPI-SENT")).status_code == 201
    post_held(dpi, "DPI-HELD", recipients=[GLN, other])
    other_patient = {**document_body()["patient"], "id": "P-0043"}
    post_held(dpi, "DPI-OTHER-PATIENT", patient=other_patient)
    # When the consent for Dr Muller and this patient is deleted
    response = dpi.delete(CONSENT)
    # Then only what was held for that doctor and patient is cancelled
    assert response.status_code == 204 and response.get_data() == b""
    assert status_of(dpi, "DPI-HELD") == ("cancelled", "no_consent")
    assert status_of(dpi, "DPI-HELD", other) == ("held", "sensitive_delay")
    assert status_of(dpi, "DPI-OTHER-PATIENT") == ("held", "sensitive_delay")
    assert status_of(dpi, "DPI-SENT") == ("delivered", "ok")
    revoked = db.session.scalars(select(Consent).where(Consent.revoked_at.is_not(None))).all()
    assert len(revoked) == 1
    # And new letters to that doctor are blocked
    answer = dpi.post("/api/v1/documents", json=document_body("DPI-NEW")).get_json()
    assert delivery_of(answer)["rule"] == "no_consent"


@pytest.mark.parametrize("path", [
    CONSENT,  # no such patient
    f"/api/v1/patients/{PATIENT}/consents/{gln(5)}",  # no such doctor
    f"/api/v1/patients/{PATIENT}/consents/7601000000018",  # no GLN can have this check digit
    f"/api/v1/patients/P%2042/consents/{GLN}",  # nor a patient this id
])
def test_delete_unknown_consent_is_404(
    dpi: CheckedApi, active_doctor: Doctor, path: str
) -> None:
    consent(dpi, patient="P-0099")
    if path != CONSENT:
        consent(dpi)
    before = counts()
    response = dpi.delete(path)
    assert_rejected(response, 404, before)


# --- deaths ---------------------------------------------------------------------------------


def test_patch_deceased_cancels_held_letters_and_blocks_later_ones(
    dpi: CheckedApi, active_doctor: Doctor
) -> None:
    # Given a letter held for the patient
    consent(dpi)
    post_held(dpi, "DPI-1")
    # When the DPI records the death
    response = dpi.patch(f"/api/v1/patients/{PATIENT}", json={"deceased": True})
    # Then the held letter is cancelled, and later letters are blocked
    assert response.status_code == 200
    body = response.get_json()
    assert body["deceased"] is True and body["deceased_at"] is not None
    assert status_of(dpi, "DPI-1") == ("cancelled", "patient_deceased")
    answer = dpi.post("/api/v1/documents", json=document_body("DPI-2")).get_json()
    assert delivery_of(answer)["rule"] == "patient_deceased"
    # And recording it again is harmless
    again = dpi.patch(f"/api/v1/patients/{PATIENT}", json={"deceased": True})
    assert again.status_code == 200 and again.get_json()["deceased_at"] == body["deceased_at"]
    assert len(events("patient.deceased")) == 1


@pytest.mark.parametrize("body", [{"deceased": False}, {}, {"deceased": "true"},
                                  {"deceased": True, "name": "x"}])
def test_patch_cannot_undo_a_death_nor_take_other_fields(
    dpi: CheckedApi, active_doctor: Doctor, body: dict[str, Any]
) -> None:
    consent(dpi)
    before = counts()
    response = dpi.patch(f"/api/v1/patients/{PATIENT}", json=body)
    assert_rejected(response, 422, before, "deceased" if "name" not in body else "name")


@pytest.mark.parametrize("patient_id", ["P-NOPE", "P" * 65])
def test_patch_unknown_patient_is_404(dpi: CheckedApi, patient_id: str) -> None:
    before = counts()
    response = dpi.patch(f"/api/v1/patients/{patient_id}", json={"deceased": True})
    if len(patient_id) <= 64:
        assert_rejected(response, 404, before)
    else:
        assert_rejected(response, 422, before, "patient_id")


def test_a_64_character_patient_id_is_fine(dpi: CheckedApi, active_doctor: Doctor) -> None:
    patient_id = "P" * 64
    assert consent(dpi, patient=patient_id).status_code == 201
    response = dpi.patch(f"/api/v1/patients/{patient_id}", json={"deceased": True})
    assert response.status_code == 200 and response.get_json()["patient_id"] == patient_id


# --- release --------------------------------------------------------------------------------


def release(days: float) -> tuple[int, int]:
    result = release_due(SYSTEM, now=utcnow() + timedelta(days=days))
    db.session.commit()
    return result


def test_held_letter_is_delivered_when_its_time_comes(
    dpi: CheckedApi, active_doctor: Doctor
) -> None:
    consent(dpi)
    post_held(dpi, "DPI-OUT")
    post_held(dpi, "DPI-IN", encounter="inpatient")
    assert release(0.5) == (0, 0)
    assert release(1.01) == (1, 0)  # the inpatient letter, after 24 hours
    assert status_of(dpi, "DPI-IN") == ("delivered", "ok")
    assert status_of(dpi, "DPI-OUT") == ("held", "sensitive_delay")
    assert release(7.01) == (1, 0)
    assert status_of(dpi, "DPI-OUT") == ("delivered", "ok")
    delivered = dpi.get("/api/v1/documents/DPI-OUT").get_json()["deliveries"][0]
    assert delivered["delivered_at"] is not None
    assert release(30) == (0, 0)  # released once only
    assert len(events("delivery.released")) == 2


@pytest.mark.parametrize(("change", "rule"), [
    ("revoked", "no_consent"),
    ("deactivated", "recipient_inactive"),
    ("died", "patient_deceased"),
])
def test_held_letter_is_checked_again_at_release(
    dpi: CheckedApi, active_doctor: Doctor, change: str, rule: str
) -> None:
    # Given a held letter
    consent(dpi)
    post_held(dpi, "DPI-1")
    # When something changes before its release (bypassing the cancellation the API does)
    if change == "revoked":
        db.session.scalars(select(Consent)).one().revoked_at = utcnow()
    elif change == "deactivated":
        doctor = db.session.get(Doctor, active_doctor.id)
        assert doctor is not None
        doctor.state, doctor.deactivated_at = "deactivated", utcnow()
    else:
        from app.models import Patient

        db.session.scalars(select(Patient)).one().deceased_at = utcnow()
    db.session.commit()
    # Then at release time it is cancelled with the failing rule, not delivered
    assert release(8) == (0, 1)
    assert status_of(dpi, "DPI-1") == ("cancelled", rule)
    assert [e.rule for e in events("delivery.cancelled")] == [rule]
