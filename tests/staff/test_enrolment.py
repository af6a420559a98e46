"""Enrolment when two desks race for the same login.

Two desks enrolling "Claire Muller" and "Céline Muller" at the same moment both find ``cmuller``
free; the unique index lets one of them have it. The other must take the next free login, not
answer 500 and lose the desk's work.
"""

from __future__ import annotations

import pytest
from flask import Flask
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.audit import CLI, verify
from app.extensions import db
from app.models import AuditEvent, Doctor
from app.staff import enrolment
from app.staff.enrolment import enrol_sms_doctor


def test_a_login_taken_meanwhile_by_another_desk_gives_the_next_one(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = enrol_sms_doctor("7601000000019", "Muller", "Claire", "claire@example.ch",
                             "+41791112233", CLI)
    db.session.commit()
    assert first.login == "cmuller"

    # The other desk read the logins before the first enrolment committed: it saw cmuller free.
    chosen = iter(["cmuller"])
    real = enrolment._free_login
    monkeypatch.setattr(enrolment, "_free_login", lambda base: next(chosen, None) or real(base))

    second = enrol_sms_doctor("7601000000026", "Muller", "Céline", "celine@example.ch",
                              "+41791112234", CLI)
    db.session.commit()

    assert second.login == "cmuller2"
    logins = db.session.scalars(select(Doctor.login).order_by(Doctor.id)).all()
    assert logins == ["cmuller", "cmuller2"]
    # One enrolment event each, under the login each really has; the chain is whole.
    events = db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == "doctor.enrolled").order_by(AuditEvent.id)
    ).all()
    assert [e.details["login"] for e in events] == ["cmuller", "cmuller2"]
    assert verify() is None


def test_a_login_that_stays_taken_gives_up_after_a_few_tries(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    enrol_sms_doctor("7601000000019", "Muller", "Claire", "claire@example.ch", "+41791112233",
                     CLI)
    db.session.commit()
    monkeypatch.setattr(enrolment, "_free_login", lambda base: "cmuller")
    with pytest.raises(IntegrityError):
        enrol_sms_doctor("7601000000026", "Muller", "Céline", "celine@example.ch",
                         "+41791112234", CLI)
