"""THE visibility rule (``Delivery.visible_to``) is one hybrid: the same answer on a loaded
delivery (notify's arrival emails) as in SQL (the inbox's lists, the digest's count)."""

from __future__ import annotations

import pytest
from flask import Flask
from sqlalchemy import select

from app.extensions import db
from app.models import Delivery
from app.models.base import utcnow
from app.states import Status

DOCTOR = 7


def delivery(status: Status, *, doctor_id: int | None = DOCTOR, reported: bool = False) -> Delivery:
    return Delivery(status=status.value, doctor_id=doctor_id,
                    reported_not_my_patient_at=utcnow() if reported else None)


@pytest.mark.parametrize(("status", "seen"), [
    (Status.DELIVERED, True), (Status.READ, True), (Status.HELD, False),
    (Status.BLOCKED, False), (Status.CANCELLED, False), (Status.RETRACTED, False),
])
def test_a_doctor_sees_her_delivered_and_read_letters_only(status: Status, seen: bool) -> None:
    assert delivery(status).visible_to(DOCTOR) is seen


def test_a_letter_reported_pas_mon_patient_leaves_her_lists() -> None:
    assert delivery(Status.DELIVERED, reported=True).visible_to(DOCTOR) is False
    assert delivery(Status.READ, reported=True).visible_to(DOCTOR) is False


def test_another_doctors_letter_or_none_is_never_visible() -> None:
    assert delivery(Status.DELIVERED).visible_to(DOCTOR + 1) is False
    assert delivery(Status.DELIVERED, doctor_id=None).visible_to(None) is False


def test_the_sql_form_says_the_same(app: Flask) -> None:
    expression = Delivery.visible_to(DOCTOR)
    sql = str(select(Delivery.id).where(expression).compile(db.engine))
    assert "deliveries.status IN" in sql
    assert "reported_not_my_patient_at IS NULL" in sql
    assert "deliveries.doctor_id =" in sql
