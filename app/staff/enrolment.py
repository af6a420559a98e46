"""Desk enrolment of a doctor for the SMS sign-in mode (login, password, SMS code)."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from sqlalchemy import select

from app.audit import Actor, record
from app.auth.passwords import hash_password, temporary_password
from app.dispatch.policy import DoctorState
from app.extensions import db
from app.gln import is_valid_gln
from app.models import Doctor
from app.models.base import utcnow
from app.phone import is_e164

_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]+\.[^@\s]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class EnrolmentError(ValueError):
    pass


@dataclass(frozen=True)
class Enrolled:
    doctor: Doctor
    login: str
    temporary_password: str


def _login_base(given: str, family: str) -> str:
    text = unicodedata.normalize("NFKD", f"{given[:1]}{family}").encode("ascii", "ignore").decode()
    base = re.sub(r"[^a-z0-9]", "", text.lower())[:20]
    return base or "doctor"


def _free_login(base: str) -> str:
    taken = set(db.session.scalars(select(Doctor.login).where(Doctor.login.like(f"{base}%"))))
    if base not in taken:
        return base
    n = 2
    while f"{base}{n}" in taken:
        n += 1
    return f"{base}{n}"


def enrol_sms_doctor(
    gln: str, family_name: str, given_name: str, email: str, mobile: str, actor: Actor
) -> Enrolled:
    """Create (or complete a pending) doctor, active, with a login and a temporary password.

    The caller has verified the phone (in person at the desk, or in the system migrated from).
    """
    if not is_valid_gln(gln):
        raise EnrolmentError("the GLN is not valid (13 digits with a GS1 check digit)")
    if not family_name.strip() or not given_name.strip():
        raise EnrolmentError("family and given names are required")
    if any(len(name) > 200 or _CONTROL.search(name) for name in (family_name, given_name)):
        raise EnrolmentError("names are at most 200 characters, without control characters")
    if len(email) > 320 or _CONTROL.search(email) or not _EMAIL.fullmatch(email):
        raise EnrolmentError("the email address is not valid")
    if not is_e164(mobile):
        raise EnrolmentError("the mobile number must be in E.164 form, e.g. +41791234567")
    doctor = db.session.scalar(select(Doctor).where(Doctor.gln == gln))
    if doctor is not None and doctor.login is not None:
        raise EnrolmentError("this doctor already has a login")
    if doctor is not None and doctor.state == DoctorState.DEACTIVATED.value:
        raise EnrolmentError("this doctor is deactivated; reactivate the account first")
    if doctor is None:
        doctor = Doctor(gln=gln)
        db.session.add(doctor)
    now = utcnow()
    login = _free_login(_login_base(given_name, family_name))
    password = temporary_password()
    doctor.family_name, doctor.given_name = family_name.strip(), given_name.strip()
    doctor.email, doctor.mobile = email, mobile
    doctor.login = login
    doctor.password_hash = hash_password(password)
    doctor.must_change_password = True
    doctor.state = DoctorState.ACTIVE.value
    doctor.activated_at = doctor.activated_at or now
    db.session.flush()
    # The temporary password is never audited: only who was enrolled, how, and under which login.
    record(
        actor, "doctor.enrolled", target=f"doctor:{gln}", details={"mode": "sms", "login": login}
    )
    return Enrolled(doctor, login, password)
