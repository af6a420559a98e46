"""Doctor accounts at the desk: enrolment for the SMS sign-in mode (login, password, SMS code),
and what the desk changes afterwards (password reset, mobile number, deactivation).

Services check, flush and audit with the acting user; the caller (a desk view, the CLI) commits.
A temporary password, a one-time code or a full phone number is never audited: only who did
what to which doctor, with masked numbers.

Refusals are :class:`EnrolmentError`s carrying a stable ``code``: ``str(error)`` is English (the
CLI prints it) and the desk views show their own translated text for each code.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, PhoneNumberType
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.audit import Actor, record
from app.auth.passwords import hash_password, temporary_password
from app.auth.session import end_every_session, target_of
from app.auth.sms import mask_phone
from app.email_address import is_email_address
from app.extensions import db
from app.gln import is_valid_gln
from app.models import Doctor, StaffUser
from app.models.base import utcnow
from app.phone import is_e164
from app.staff.notices import CHANGED, tell_doctor
from app.states import DoctorState
from app.text import has_control

#: Where a number typed without its country code is taken to be from.
DEFAULT_REGION: Final = "CH"

#: The identity documents the desk accepts, checked in person (never scanned nor stored whole).
ID_DOCUMENTS: Final = ("passport", "identity_card", "residence_permit", "swiss_driving_licence")

#: What a person types for a phone number: digits, "+", spaces and the usual separators.
_PHONE_TEXT = re.compile(r"[0-9+()./\- ]{4,32}")
_ID_LAST4 = re.compile(r"[A-Z0-9]{4}")
_MOBILE_TYPES = (PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE)

INVALID_GLN: Final = "invalid_gln"
NAMES_REQUIRED: Final = "names_required"
NAMES_INVALID: Final = "names_invalid"
INVALID_EMAIL: Final = "invalid_email"
INVALID_MOBILE: Final = "invalid_mobile"
NOT_A_MOBILE: Final = "not_a_mobile"
INVALID_ID_DOCUMENT: Final = "invalid_id_document"
INVALID_ID_LAST4: Final = "invalid_id_last4"
HAS_LOGIN: Final = "has_login"
DEACTIVATED: Final = "deactivated"
NO_LOGIN: Final = "no_login"

MESSAGES: Final[dict[str, str]] = {
    INVALID_GLN: "the GLN is not valid (13 digits with a GS1 check digit)",
    NAMES_REQUIRED: "family and given names are required",
    NAMES_INVALID: "names are at most 200 characters, without control characters",
    INVALID_EMAIL: "the email address is not valid",
    INVALID_MOBILE: "the mobile number is not a valid phone number "
    "(e.g. +41791234567, or 079 123 45 67 for Switzerland)",
    NOT_A_MOBILE: "the number is not a mobile phone number: SMS codes need a mobile",
    INVALID_ID_DOCUMENT: f"the identity document must be one of: {', '.join(ID_DOCUMENTS)}",
    INVALID_ID_LAST4: "the last characters of the identity document number are 4 letters "
    "or digits",
    HAS_LOGIN: "this doctor already has a login",
    DEACTIVATED: "this doctor is deactivated; reactivate the account first",
    NO_LOGIN: "this doctor has no login (SMS sign-in mode); enrol the doctor first",
}


class EnrolmentError(ValueError):
    """A refusal; ``code`` is one of the keys of :data:`MESSAGES`."""

    def __init__(self, code: str) -> None:
        super().__init__(MESSAGES[code])
        self.code = code


@dataclass(frozen=True)
class IdDocument:
    """The identity document the desk saw: its kind and, optionally, its number's last 4."""

    kind: str
    last4: str | None = None

    def audit_details(self) -> dict[str, str]:
        details = {"id_document": self.kind}
        if self.last4:
            details["id_number_last4"] = self.last4
        return details


@dataclass(frozen=True)
class Enrolled:
    doctor: Doctor
    login: str
    temporary_password: str


# --- checking what the desk typed ----------------------------------------------------------


def check_gln(value: str) -> str:
    gln = value.strip()
    if not is_valid_gln(gln):
        raise EnrolmentError(INVALID_GLN)
    return gln


def check_name(value: str) -> str:
    name = value.strip()
    if not name:
        raise EnrolmentError(NAMES_REQUIRED)
    if len(name) > 200 or has_control(name):
        raise EnrolmentError(NAMES_INVALID)
    return name


def check_email(value: str) -> str:
    email = value.strip()
    if not is_email_address(email):
        raise EnrolmentError(INVALID_EMAIL)
    return email


def normalise_mobile(value: str, region: str = DEFAULT_REGION) -> str:
    """The number in E.164 form, if it is a valid mobile (or "fixed line or mobile") number.

    ``079 123 45 67``, ``0041 79 123 45 67`` and ``+41 79 123 45 67`` all give ``+41791234567``;
    a landline, a number too short or text that is not a number is refused.
    """
    text = value.replace("\u00a0", " ").strip()
    if not _PHONE_TEXT.fullmatch(text):
        raise EnrolmentError(INVALID_MOBILE)
    try:
        number = phonenumbers.parse(text, region)
    except NumberParseException:
        raise EnrolmentError(INVALID_MOBILE) from None
    if not phonenumbers.is_valid_number(number):
        raise EnrolmentError(INVALID_MOBILE)
    if phonenumbers.number_type(number) not in _MOBILE_TYPES:
        raise EnrolmentError(NOT_A_MOBILE)
    e164 = phonenumbers.format_number(number, PhoneNumberFormat.E164)
    if not is_e164(e164):  # what the Doctor model (and Twilio) take
        raise EnrolmentError(INVALID_MOBILE)
    return e164


def check_id_document(kind: str, last4: str | None = None) -> IdDocument:
    if kind not in ID_DOCUMENTS:
        raise EnrolmentError(INVALID_ID_DOCUMENT)
    tail = (last4 or "").strip().upper()
    if tail and not _ID_LAST4.fullmatch(tail):
        raise EnrolmentError(INVALID_ID_LAST4)
    return IdDocument(kind, tail or None)


def doctor_for_enrolment(gln: str) -> Doctor | None:
    """The doctor already known under ``gln`` (pending, or a HIN doctor), None for a new one.

    Raises when the GLN cannot be enrolled: it has a login already, or it is deactivated.
    Checked before a code is sent to a phone, and again when the doctor is created.
    """
    doctor: Doctor | None = db.session.scalar(select(Doctor).where(Doctor.gln == gln))
    if doctor is not None and doctor.login is not None:
        raise EnrolmentError(HAS_LOGIN)
    if doctor is not None and doctor.state == DoctorState.DEACTIVATED.value:
        raise EnrolmentError(DEACTIVATED)
    return doctor


# --- enrolment -------------------------------------------------------------------------------


def _login_base(given: str, family: str) -> str:
    text = unicodedata.normalize("NFKD", f"{given[:1]}{family}").encode("ascii", "ignore").decode()
    base = re.sub(r"[^a-z0-9]", "", text.lower())[:20]
    return base or "doctor"


def _free_login(base: str) -> str:
    """``base``, or ``base2``, ``base3`` ...: the first that no doctor and no staff account has.

    Doctors and staff sign in on the same page, so one login must name one person only.
    """
    taken = set(db.session.scalars(select(Doctor.login).where(Doctor.login.like(f"{base}%"))))
    taken.update(
        db.session.scalars(select(StaffUser.login).where(StaffUser.login.like(f"{base}%")))
    )
    if base not in taken:
        return base
    n = 2
    while f"{base}{n}" in taken:
        n += 1
    return f"{base}{n}"


#: How many times a login taken by a concurrent enrolment is chosen again before giving up.
LOGIN_CLAIMS = 5


def _claim_login(doctor: Doctor, base: str) -> str:
    """Give ``doctor`` the first free login from ``base``, even when another desk enrols someone
    with the same base at the same moment: the unique index decides, and the loser (rolled back
    to a savepoint, nothing else undone) takes the next free one."""
    for attempt in range(LOGIN_CLAIMS):
        login = _free_login(base)
        try:
            with db.session.begin_nested():
                doctor.login = login
                db.session.flush()
            return login
        except IntegrityError:
            if attempt == LOGIN_CLAIMS - 1:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def enrol_sms_doctor(
    gln: str,
    family_name: str,
    given_name: str,
    email: str,
    mobile: str,
    actor: Actor,
    *,
    id_document: IdDocument | None = None,
    details: Mapping[str, Any] | None = None,
) -> Enrolled:
    """Create (or complete a pending or HIN) doctor, active, with a login and a temporary password.

    The caller has verified the phone: the desk with a code sent to it and an identity document
    (``id_document``), or the system the account is migrated from (the CLI). ``mobile`` may be
    typed as people do (``079 123 45 67``); it is stored in E.164 form. ``details`` are added
    to the audit event (the approval that allowed it).

    A doctor who can already receive letters keeps her names and email: only empty ones are
    filled in (as the HIN sign-in does). Her email is where she is told of changes, and an
    enrolment must not be a way to move it; she changes it herself in Mon profil, with a
    confirmation link. She is told of the enrolment at that address.
    """
    gln = check_gln(gln)
    family, given = check_name(family_name), check_name(given_name)
    email = check_email(email)
    mobile = normalise_mobile(mobile)
    doctor = doctor_for_enrolment(gln)
    was_active = doctor is not None and doctor.can_receive
    if doctor is None:
        doctor = Doctor(gln=gln)
        db.session.add(doctor)
    now = utcnow()
    password = temporary_password()
    told = doctor.email
    if was_active:
        family, given = doctor.family_name or family, doctor.given_name or given
        email = doctor.email or email
    doctor.family_name, doctor.given_name = family, given
    doctor.email, doctor.mobile = email, mobile
    doctor.password_hash = hash_password(password)
    doctor.must_change_password = True
    doctor.failed_sign_ins = 0
    doctor.sign_in_locked = False
    doctor.sign_in_locked_at = None
    doctor.state = DoctorState.ACTIVE.value
    doctor.activated_at = doctor.activated_at or now
    doctor.deactivated_at = None
    db.session.flush()
    login = _claim_login(doctor, _login_base(given, family))
    # The temporary password is never audited: only who was enrolled, how, and under which login.
    audit: dict[str, Any] = {"mode": "sms", "login": login, "mobile": mask_phone(mobile),
                             **(details or {})}
    if id_document is not None:
        audit.update(id_document.audit_details(), phone_verified="desk_code")
    else:
        audit["phone_verified"] = "elsewhere"
    audit["was_active"] = was_active
    record(actor, "doctor.enrolled", target=target_of(doctor), details=audit)
    if was_active:
        tell_doctor(doctor, CHANGED, "enrolment", address=told)
    return Enrolled(doctor, login, password)


# --- later desk actions --------------------------------------------------------------------


def reset_password(doctor: Doctor, actor: Actor, *,
                   details: Mapping[str, Any] | None = None) -> str:
    """A new temporary password (returned, to be shown once), to be changed at first sign-in.

    Every session of the doctor ends, and the failure count and any lockout go: the new
    password was handed over by the desk. A doctor who can receive letters is told by email.
    """
    if doctor.login is None:
        raise EnrolmentError(NO_LOGIN)
    if doctor.state == DoctorState.DEACTIVATED.value:
        raise EnrolmentError(DEACTIVATED)
    password = temporary_password()
    was_locked = doctor.sign_in_locked_at is not None
    doctor.password_hash = hash_password(password)
    doctor.must_change_password = True
    doctor.failed_sign_ins = 0
    doctor.sign_in_locked = False
    doctor.sign_in_locked_at = None
    db.session.flush()
    end_every_session(doctor)
    record(actor, "doctor.password_reset", target=target_of(doctor),
           details={"login": doctor.login, "sessions_ended": True, "lock_lifted": was_locked,
                    **(details or {})})
    if doctor.can_receive:
        tell_doctor(doctor, CHANGED, "password_reset", address=doctor.email)
    return password


def change_mobile(doctor: Doctor, mobile: str, actor: Actor, *,
                  details: Mapping[str, Any] | None = None) -> None:
    """Store a new mobile whose possession the caller verified; every session ends (the usual
    reason is a lost or stolen phone, which was the second factor). A doctor who can receive
    letters is told by email."""
    if doctor.state == DoctorState.DEACTIVATED.value:
        raise EnrolmentError(DEACTIVATED)
    mobile = normalise_mobile(mobile)
    old = doctor.mobile
    doctor.mobile = mobile
    db.session.flush()
    end_every_session(doctor)
    record(actor, "doctor.mobile_changed", target=target_of(doctor),
           details={"old": mask_phone(old) if old else None, "new": mask_phone(mobile),
                    "phone_verified": "desk_code", "sessions_ended": True, **(details or {})})
    if doctor.can_receive:
        tell_doctor(doctor, CHANGED, "mobile_change", address=doctor.email)


def deactivate_doctor(doctor: Doctor, actor: Actor) -> bool:
    """The doctor can no longer sign in nor receive letters (dispatch rule ``recipient_inactive``;
    letters still held are cancelled when they come due). False when already deactivated."""
    if doctor.state == DoctorState.DEACTIVATED.value:
        return False
    previous = doctor.state
    doctor.state = DoctorState.DEACTIVATED.value
    doctor.deactivated_at = utcnow()
    db.session.flush()
    end_every_session(doctor)
    record(actor, "doctor.deactivated", target=target_of(doctor),
           details={"previous_state": previous, "sessions_ended": True})
    return True


def reactivate_doctor(doctor: Doctor, actor: Actor) -> bool:
    """Undo a deactivation: active again if the account had been activated, else pending.
    False when the doctor is not deactivated."""
    if doctor.state != DoctorState.DEACTIVATED.value:
        return False
    state = DoctorState.ACTIVE if doctor.activated_at is not None else DoctorState.PENDING
    doctor.state = state.value
    doctor.deactivated_at = None
    db.session.flush()
    record(actor, "doctor.reactivated", target=target_of(doctor), details={"state": state.value})
    return True
