"""Handling the deliveries on the staff worklist: by post, to the right doctor, re-examined, or
no action with a note. Each is recorded on the delivery once and audited once, in the caller's
transaction.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from app.audit import Actor, verify
from app.dispatch import handling
from app.dispatch.handling import HandlingRefused
from app.extensions import db
from app.inbox.document_actions import report_not_my_patient
from app.models import Delivery, Doctor, Document, Notification
from tests.conftest import Api, consent_body, document_body
from tests.dispatch.api_support import add_doctor, gln
from tests.support.trail import events

GLN = "7601000000019"  # the active_doctor fixture
OTHER = gln(7)
PATIENT = "P-0042"
STAFF = Actor("staff", "staff-test")


def send(api: Api, document_id: str, recipients: list[str] | None = None,
         **changes: Any) -> dict[str, Any]:
    body = document_body(document_id, recipients=recipients or [GLN], **changes)
    response = api.post("/api/v1/documents", json=body)
    assert response.status_code == 201, response.get_json()
    answer: dict[str, Any] = response.get_json()
    return answer


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


def refusal(call: Any, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(HandlingRefused) as raised:
        call(*args, **kwargs)
    db.session.rollback()
    return raised.value.code


@pytest.fixture()
def other_doctor(app: Flask) -> Doctor:
    return add_doctor(OTHER, family_name="Rochat", given_name="Luc", email="luc@example.ch",
                      notification_mode="immediate")


# --- what is on the worklist ------------------------------------------------------------------


def test_blocked_cancelled_and_reported_deliveries_need_a_person(
    api: Api, active_doctor: Doctor
) -> None:
    send(api, "DPI-H-1")  # no consent: blocked
    consent(api)
    send(api, "DPI-H-2")  # delivered
    assert handling.on_worklist(delivery("DPI-H-1"))
    delivered = delivery("DPI-H-2")
    assert delivered.status == "delivered"
    assert not handling.on_worklist(delivered)
    report_not_my_patient(delivered, Actor("doctor", GLN))
    db.session.commit()
    assert handling.on_worklist(delivery("DPI-H-2"))


# --- by post, no action -------------------------------------------------------------------------


def test_posting_records_who_when_and_how_once(api: Api, active_doctor: Doctor) -> None:
    send(api, "DPI-H-10")
    blocked = delivery("DPI-H-10")
    assert (blocked.status, blocked.rule) == ("blocked", "no_consent")

    handling.mark_handled(blocked, handling.HANDLED_BY_POST, STAFF)
    db.session.commit()

    handled = delivery("DPI-H-10")
    assert handled.handled_at is not None
    assert (handled.handled_by, handled.handling, handled.status) == ("staff-test", "post",
                                                                      "blocked")
    (event,) = events("delivery.handled")
    assert (event.actor, event.target, event.patient) == ("staff:staff-test",
                                                          "document:DPI-H-10", PATIENT)
    assert event.details == {"delivery": handled.id, "recipient": GLN, "handling": "post"}

    # Twice: refused, nothing changes, no second event.
    assert refusal(handling.mark_handled, delivery("DPI-H-10"), handling.HANDLED_NO_ACTION,
                   STAFF, "encore") == handling.ALREADY_HANDLED
    assert delivery("DPI-H-10").handling == "post"
    assert len(events("delivery.handled")) == 1
    assert verify() is None


def test_a_stale_copy_cannot_handle_twice(api: Api, active_doctor: Doctor) -> None:
    """Two people on the same page: the compare-and-set lets only the first one through."""
    send(api, "DPI-H-11")
    stale = delivery("DPI-H-11")
    db.session.execute(
        Delivery.__table__.update().where(Delivery.id == stale.id)
        .values(handled_at=func.now(), handled_by="someone", handling="post"))
    # ``stale`` still reads handled_at as None in this session.
    assert stale.handled_at is None
    assert refusal(handling.mark_handled, stale, handling.HANDLED_BY_POST,
                   STAFF) == handling.ALREADY_HANDLED
    assert events("delivery.handled") == []


def test_no_action_needs_a_short_note(api: Api, active_doctor: Doctor) -> None:
    send(api, "DPI-H-20")
    for note, code in (("", handling.NOTE_REQUIRED), ("   ", handling.NOTE_REQUIRED),
                       ("x" * 501, handling.NOTE_TOO_LONG)):
        assert refusal(handling.mark_handled, delivery("DPI-H-20"), handling.HANDLED_NO_ACTION,
                       STAFF, note) == code
    assert delivery("DPI-H-20").handled_at is None
    assert events("delivery.handled") == []

    note = "Patient <b>suivi</b> à l'hôpital — " + "é" * 400
    handling.mark_handled(delivery("DPI-H-20"), handling.HANDLED_NO_ACTION, STAFF, note)
    db.session.commit()
    handled = delivery("DPI-H-20")
    assert (handled.handling, handled.handling_note) == ("no_action", note.strip())
    (event,) = events("delivery.handled")
    assert "suivi" not in str(event.details)  # the note stays on the row, not in the trail


def test_only_worklist_deliveries_are_handled(api: Api, active_doctor: Doctor) -> None:
    consent(api)
    send(api, "DPI-H-30")
    assert delivery("DPI-H-30").status == "delivered"
    assert refusal(handling.mark_handled, delivery("DPI-H-30"), handling.HANDLED_BY_POST,
                   STAFF) == handling.NOT_ON_WORKLIST
    assert refusal(handling.recheck, delivery("DPI-H-30"), STAFF) == handling.NOT_ON_WORKLIST


# --- to the right doctor ------------------------------------------------------------------------


def test_redirect_creates_a_delivery_decided_by_the_policy(
    api: Api, active_doctor: Doctor, other_doctor: Doctor
) -> None:
    consent(api)
    consent(api, OTHER)
    send(api, "DPI-H-40")
    wrong = delivery("DPI-H-40")
    report_not_my_patient(wrong, Actor("doctor", GLN))
    db.session.commit()
    assert [d.gln for d in handling.redirect_candidates(delivery("DPI-H-40"))] == [OTHER]

    new = handling.redirect_delivery(delivery("DPI-H-40"), OTHER, STAFF)
    db.session.commit()

    assert (new.recipient_gln, new.status, new.rule, new.doctor_id) == (
        OTHER, "delivered", "ok", other_doctor.id)
    original = delivery("DPI-H-40")
    assert (original.handling, original.handled_by) == ("other_doctor", "staff-test")
    # The other doctor is notified, as at ingest.
    assert db.session.scalar(select(func.count()).select_from(Notification).where(
        Notification.doctor_id == other_doctor.id)) == 1
    (redirected,) = events("delivery.redirected")
    assert redirected.details == {"delivery": original.id, "recipient": GLN, "to": OTHER,
                                  "new_delivery": new.id}
    decided = events("delivery.decided")[-1]
    assert (decided.actor, decided.target, decided.patient, decided.rule) == (
        "staff:staff-test", "document:DPI-H-40", PATIENT, "ok")
    assert decided.details == {"recipient": OTHER, "status": "delivered", "release_at": None}
    assert verify() is None


def test_redirect_applies_the_publication_rules(
    api: Api, active_doctor: Doctor, other_doctor: Doctor
) -> None:
    consent(api, OTHER)
    send(api, "DPI-H-41", sensitive=True)  # no consent for GLN: blocked
    new = handling.redirect_delivery(delivery("DPI-H-41"), OTHER, STAFF)
    db.session.commit()
    assert (new.status, new.rule) == ("held", "sensitive_delay")
    assert new.release_at is not None


def test_redirect_only_to_a_consented_doctor_without_the_letter(
    api: Api, active_doctor: Doctor, other_doctor: Doctor
) -> None:
    send(api, "DPI-H-50")  # blocked for GLN
    # No consent for OTHER: refused; nor to the recipient itself, nor to a stranger.
    for target in (OTHER, GLN, gln(99), ""):
        assert refusal(handling.redirect_delivery, delivery("DPI-H-50"), target,
                       STAFF) == handling.NOT_CONSENTED
    # A revoked consent does not count.
    consent(api, OTHER)
    consent(api, OTHER, electronic_sending=False)
    assert refusal(handling.redirect_delivery, delivery("DPI-H-50"), OTHER,
                   STAFF) == handling.NOT_CONSENTED

    # OTHER already has this document: refused with its own reason.
    consent(api, OTHER)
    send(api, "DPI-H-51", recipients=[GLN, OTHER])
    assert delivery("DPI-H-51", OTHER).status == "delivered"
    assert refusal(handling.redirect_delivery, delivery("DPI-H-51"), OTHER,
                   STAFF) == handling.ALREADY_RECEIVED
    assert delivery("DPI-H-51").handled_at is None
    assert events("delivery.redirected") == []


def test_a_retracted_letter_is_never_sent_again(
    api: Api, active_doctor: Doctor, other_doctor: Doctor
) -> None:
    consent(api)
    consent(api, OTHER)
    send(api, "DPI-H-60")
    report_not_my_patient(delivery("DPI-H-60"), Actor("doctor", GLN))
    db.session.commit()
    assert api.post("/api/v1/documents/DPI-H-60/retract",
                    json={"reason": "Erreur"}).status_code == 200
    reported = delivery("DPI-H-60")
    assert reported.status == "retracted"
    assert handling.on_worklist(reported)  # reported, whatever the status
    assert refusal(handling.redirect_delivery, reported, OTHER,
                   STAFF) == handling.DOCUMENT_RETRACTED
    assert refusal(handling.mark_handled, delivery("DPI-H-60"), handling.HANDLED_BY_POST,
                   STAFF) == handling.DOCUMENT_RETRACTED
    handling.mark_handled(delivery("DPI-H-60"), handling.HANDLED_NO_ACTION, STAFF, "Retiré")
    db.session.commit()
    assert delivery("DPI-H-60").handling == "no_action"
    assert db.session.scalar(select(func.count()).select_from(Delivery)) == 1


# --- re-examined ------------------------------------------------------------------------------


def test_recheck_after_the_missing_consent_delivers(api: Api, active_doctor: Doctor) -> None:
    active_doctor.email, active_doctor.notification_mode = "c@example.ch", "immediate"
    db.session.commit()
    send(api, "DPI-H-70")
    # Still no consent: nothing changes, nothing audited.
    assert refusal(handling.recheck, delivery("DPI-H-70"), STAFF) == handling.STILL_BLOCKED
    assert delivery("DPI-H-70").status == "blocked"
    assert events("delivery.rechecked") == []

    consent(api)
    decision = handling.recheck(delivery("DPI-H-70"), STAFF)
    db.session.commit()

    assert decision.status.value == "delivered"
    rechecked = delivery("DPI-H-70")
    assert (rechecked.status, rechecked.rule, rechecked.handling) == ("delivered", "ok",
                                                                      "rechecked")
    assert rechecked.delivered_at is not None
    assert rechecked.doctor_id == active_doctor.id
    (event,) = events("delivery.rechecked")
    assert (event.rule, event.patient) == ("ok", PATIENT)
    assert event.details == {"delivery": rechecked.id, "recipient": GLN,
                             "previous_status": "blocked", "status": "delivered",
                             "release_at": None}
    assert db.session.scalar(select(func.count()).select_from(Notification)) == 1
    # Handled: a second recheck is refused.
    assert refusal(handling.recheck, delivery("DPI-H-70"), STAFF) in (
        handling.NOT_ON_WORKLIST, handling.ALREADY_HANDLED)


def test_recheck_of_a_cancelled_delivery(api: Api, active_doctor: Doctor) -> None:
    consent(api)
    send(api, "DPI-H-80", sensitive=True)
    assert delivery("DPI-H-80").status == "held"
    consent(api, electronic_sending=False)  # revoked: held becomes cancelled
    cancelled = delivery("DPI-H-80")
    assert (cancelled.status, cancelled.rule) == ("cancelled", "no_consent")
    assert refusal(handling.recheck, cancelled, STAFF) == handling.STILL_BLOCKED

    consent(api)
    decision = handling.recheck(delivery("DPI-H-80"), STAFF)
    db.session.commit()
    assert decision.status.value == "held"
    held = delivery("DPI-H-80")
    assert (held.status, held.rule, held.cancelled_at) == ("held", "sensitive_delay", None)
    assert held.release_at is not None


def test_recheck_loses_to_a_concurrent_change(api: Api, active_doctor: Doctor) -> None:
    send(api, "DPI-H-90")
    consent(api)
    stale = delivery("DPI-H-90")
    # Someone changed the status meanwhile (another recheck, another worker).
    db.session.execute(Delivery.__table__.update().where(Delivery.id == stale.id)
                       .values(status="cancelled"))
    assert refusal(handling.recheck, stale, STAFF) == handling.ALREADY_HANDLED
    assert events("delivery.rechecked") == []
