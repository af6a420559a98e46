"""Four eyes on the accounts that can already receive letters.

Enrolling a doctor who can already receive letters (HIN-linked, or enrolled before and reactivated)
or to whom a patient's letters are already directed (a pending doctor named in a consent with
electronic sending), resetting the password of one, or giving one a new mobile number would hand
whoever does it a way into her letters. So at the desk these changes are *requests*: one desk
person asks (after the phone check, for an enrolment or a new mobile), a second desk person
approves or refuses, once, within 30 minutes; only then is the change made. Both are audited, and
the doctor is told by email at her address before the change, when the request is made and again
when it is applied (app/staff/notices.py). Whoever approves a change that hands out a temporary
password receives it, to print and hand over in person (app/staff/desk_approvals.py says why).

Who may decide: another desk person, active, signed in with password and authenticator; never
the one who asked (checked, and again in the compare-and-set), never hospital staff (deciding
means judging an identity check and an account, the desk's work; and staff accounts are many),
never a doctor (the gate refuses them the desk's pages). A decision is a compare-and-set on
``decided_at IS NULL`` and ``expires_at`` still ahead: two approvers racing, one wins, the
change is applied once. The first enrolment of a new doctor, or of a pending one no patient
has named yet (who would receive nothing), stays a one-person act, with the phone check and the
identity document.

Services flush and audit with the acting person; the views commit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import or_, select, update
from sqlalchemy.orm import joinedload

from app.audit import record
from app.auth.session import actor_for, target_of
from app.auth.sms import mask_phone
from app.extensions import db
from app.models import Consent, DeskApproval, Doctor, StaffUser
from app.models.base import utcnow
from app.staff import duties
from app.staff.enrolment import (
    DEACTIVATED,
    NO_LOGIN,
    EnrolmentError,
    IdDocument,
    change_mobile,
    doctor_for_enrolment,
    enrol_sms_doctor,
    reset_password,
)
from app.staff.notices import REQUESTED, tell_doctor
from app.states import DoctorState

ENROLMENT: Final = "enrolment"
PASSWORD_RESET: Final = "password_reset"  # noqa: S105 - a kind of request
MOBILE_CHANGE: Final = "mobile_change"

#: How long a request waits for its second person. The doctor is at the desk, or has just
#: called it: a request nobody approved by then is started again.
APPROVAL_LIFETIME: Final = timedelta(minutes=30)

#: Why a request cannot be made or decided (the views word each one).
OWN_REQUEST: Final = "own_request"
EXPIRED: Final = "expired"
ALREADY_DECIDED: Final = "already_decided"
NOT_DESK: Final = "not_desk"
ALREADY_WAITING: Final = "already_waiting"
NOT_REQUESTER: Final = "not_requester"


class ApprovalRefused(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclass(frozen=True)
class Applied:
    approval: DeskApproval
    #: (login, temporary password) when the change made one, to show once to the approver.
    credentials: tuple[str, str] | None


def needs_approval(doctor: Doctor | None) -> bool:
    """Whether a change to this doctor's sign-in waits for a second desk person: she can
    already receive letters, or letters are already directed to her (a pending doctor whom a
    patient named, with electronic sending: her enrolment would open those letters)."""
    if doctor is None:
        return False
    if doctor.can_receive:
        return True
    if doctor.state != DoctorState.PENDING.value:
        return False
    named = db.session.scalar(
        select(Consent.id).where(Consent.doctor_id == doctor.id,
                                 Consent.electronic_sending.is_(True),
                                 Consent.revoked_at.is_(None)).limit(1)
    )
    return named is not None


def _check_desk(person: StaffUser) -> None:
    if person.role != "desk" or not person.active:
        raise ApprovalRefused(NOT_DESK)


def _check_possible(doctor: Doctor, kind: str) -> None:
    """The refusals the change itself would give, before anyone is asked to approve it."""
    if kind == ENROLMENT:
        doctor_for_enrolment(doctor.gln)
    elif doctor.state == DoctorState.DEACTIVATED.value:
        raise EnrolmentError(DEACTIVATED)
    elif kind == PASSWORD_RESET and doctor.login is None:
        raise EnrolmentError(NO_LOGIN)


def open_request(doctor: Doctor, kind: str, now: datetime | None = None) -> DeskApproval | None:
    now = now or utcnow()
    found: DeskApproval | None = db.session.scalar(
        select(DeskApproval).where(
            DeskApproval.doctor_id == doctor.id, DeskApproval.kind == kind,
            DeskApproval.decided_at.is_(None), DeskApproval.expires_at > now,
        ).order_by(DeskApproval.id.desc()).limit(1)
    )
    return found


def _summary(change: Mapping[str, Any]) -> dict[str, Any]:
    """What the audit keeps of a change: the masked number and the identity document."""
    summary: dict[str, Any] = {}
    if change.get("mobile"):
        summary["mobile"] = mask_phone(str(change["mobile"]))
    if change.get("id_document"):
        summary["id_document"] = change["id_document"]
    if change.get("id_last4"):
        summary["id_number_last4"] = change["id_last4"]
    return summary


def request_change(doctor: Doctor, kind: str, change: Mapping[str, Any],
                   requester: StaffUser, *, now: datetime | None = None) -> DeskApproval:
    """Park a change to an active doctor's sign-in until a second desk person approves it.

    Raises :class:`EnrolmentError` when the change could not be made anyway,
    :class:`duties.DutyConflict` when the requester directed letters to this doctor, and
    :class:`ApprovalRefused` (``already_waiting``) when the same change already waits.
    """
    now = now or utcnow()
    _check_desk(requester)
    _check_possible(doctor, kind)
    duties.claim(doctor, requester, duties.ACCOUNT, f"desk.{kind}_requested")
    if open_request(doctor, kind, now) is not None:
        raise ApprovalRefused(ALREADY_WAITING)
    approval = DeskApproval(
        kind=kind, doctor=doctor, requested_by_id=requester.id, requested_at=now,
        expires_at=now + APPROVAL_LIFETIME, change=dict(change), told_address=doctor.email,
    )
    db.session.add(approval)
    db.session.flush()
    record(actor_for(requester), "desk.approval_requested", target=target_of(doctor),
           details={"approval": approval.id, "kind": kind, "doctor_told": bool(doctor.email),
                    "expires_at": approval.expires_at.isoformat(), **_summary(change)})
    tell_doctor(doctor, REQUESTED, kind, address=doctor.email, reference=str(approval.id))
    return approval


def get_approval(approval_id: int) -> DeskApproval | None:
    found: DeskApproval | None = db.session.scalar(
        select(DeskApproval).options(joinedload(DeskApproval.doctor))
        .where(DeskApproval.id == approval_id)
        .execution_options(populate_existing=True)
    )
    return found


def _check_decidable(approval: DeskApproval, person: StaffUser, now: datetime) -> None:
    _check_desk(person)
    if approval.requested_by_id == person.id:
        raise ApprovalRefused(OWN_REQUEST)
    if approval.decided_at is not None:
        raise ApprovalRefused(ALREADY_DECIDED)
    if now >= approval.expires_at:
        raise ApprovalRefused(EXPIRED)


def _decide(approval: DeskApproval, person: StaffUser, decision: str, now: datetime,
            *, by_requester: bool = False) -> None:
    """The compare-and-set: only an undecided, unexpired request, and never by its requester
    (unless withdrawn by them), moves; whoever comes second learns why it did not."""
    who = (DeskApproval.requested_by_id == person.id if by_requester
           else DeskApproval.requested_by_id != person.id)
    result = db.session.execute(
        update(DeskApproval)
        .where(DeskApproval.id == approval.id, DeskApproval.decided_at.is_(None),
               DeskApproval.expires_at > now, who)
        .values(decided_at=now, decided_by_id=person.id, decision=decision)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        fresh = get_approval(approval.id)
        if fresh is not None and fresh.decided_at is None and now >= fresh.expires_at:
            raise ApprovalRefused(EXPIRED)
        raise ApprovalRefused(ALREADY_DECIDED)
    db.session.refresh(approval)


def _audit_decision(approval: DeskApproval, person: StaffUser) -> None:
    requester = db.session.get(StaffUser, approval.requested_by_id)
    record(actor_for(person), "desk.approval_decided", target=target_of(approval.doctor),
           details={"approval": approval.id, "kind": approval.kind,
                    "decision": approval.decision,
                    "requested_by": requester.login if requester else None})


def approve(approval: DeskApproval, approver: StaffUser, *,
            now: datetime | None = None) -> Applied:
    """Approve and apply, in the caller's transaction. Raises :class:`ApprovalRefused`,
    :class:`duties.DutyConflict` (the approver directed letters to this doctor) or
    :class:`EnrolmentError` (the change can no longer be made: the caller rolls back)."""
    now = now or utcnow()
    _check_decidable(approval, approver, now)
    doctor = approval.doctor
    duties.check(doctor, approver, duties.ACCOUNT, "desk.approval_decided")
    _decide(approval, approver, "approved", now)
    duties.claim(doctor, approver, duties.ACCOUNT, "desk.approval_decided")
    _audit_decision(approval, approver)
    requester = db.session.get(StaffUser, approval.requested_by_id)
    details = {"approval": approval.id,
               "requested_by": requester.login if requester else None,
               "approved_by": approver.login}
    actor = actor_for(approver)
    change = approval.change or {}
    if approval.kind == ENROLMENT:
        document = (IdDocument(str(change["id_document"]), change.get("id_last4") or None)
                    if change.get("id_document") else None)
        enrolled = enrol_sms_doctor(
            doctor.gln, str(change.get("family_name", "")), str(change.get("given_name", "")),
            str(change.get("email", "")), str(change.get("mobile", "")), actor,
            id_document=document, details=details,
        )
        return Applied(approval, (enrolled.login, enrolled.temporary_password))
    if approval.kind == PASSWORD_RESET:
        password = reset_password(doctor, actor, details=details)
        assert doctor.login is not None  # noqa: S101 - reset_password refuses a doctor without
        return Applied(approval, (doctor.login, password))
    change_mobile(doctor, str(change.get("mobile", "")), actor, details=details)
    return Applied(approval, None)


def refuse(approval: DeskApproval, person: StaffUser, *, now: datetime | None = None) -> None:
    """A second desk person says no: nothing is changed."""
    now = now or utcnow()
    _check_decidable(approval, person, now)
    _decide(approval, person, "refused", now)
    _audit_decision(approval, person)


def withdraw(approval: DeskApproval, person: StaffUser, *, now: datetime | None = None) -> None:
    """The person who asked takes the request back (a typing error, the doctor left)."""
    now = now or utcnow()
    _check_desk(person)
    if approval.requested_by_id != person.id:
        raise ApprovalRefused(NOT_REQUESTER)
    if approval.decided_at is not None:
        raise ApprovalRefused(ALREADY_DECIDED)
    _decide(approval, person, "withdrawn", now, by_requester=True)
    _audit_decision(approval, person)


def record_decision_refused(person: StaffUser, approval: DeskApproval, reason: str) -> None:
    """Audit a decision that was refused (one's own request, expired, decided already ...),
    in a transaction of its own."""
    record(actor_for(person), "desk.decision_refused", target=target_of(approval.doctor),
           outcome="rejected",
           details={"approval": approval.id, "kind": approval.kind, "reason": reason})


# --- lists -----------------------------------------------------------------------------------


def open_requests(now: datetime | None = None) -> list[DeskApproval]:
    """Every request still waiting, the oldest first (it expires first)."""
    now = now or utcnow()
    return list(db.session.scalars(
        select(DeskApproval)
        .options(joinedload(DeskApproval.doctor), joinedload(DeskApproval.requested_by))
        .where(DeskApproval.decided_at.is_(None), DeskApproval.expires_at > now)
        .order_by(DeskApproval.expires_at, DeskApproval.id)
    ))


def open_count(now: datetime | None = None) -> int:
    return len(open_requests(now))


def closed_requests(limit: int = 20, now: datetime | None = None) -> list[DeskApproval]:
    """The latest requests that were decided or expired, newest first."""
    now = now or utcnow()
    return list(db.session.scalars(
        select(DeskApproval)
        .options(joinedload(DeskApproval.doctor), joinedload(DeskApproval.requested_by),
                 joinedload(DeskApproval.decided_by))
        .where(or_(DeskApproval.decided_at.is_not(None), DeskApproval.expires_at <= now))
        .order_by(DeskApproval.requested_at.desc(), DeskApproval.id.desc())
        .limit(limit)
    ))


def requests_for(doctor: Doctor, now: datetime | None = None) -> list[DeskApproval]:
    """This doctor's requests still waiting (for her desk page)."""
    now = now or utcnow()
    return list(db.session.scalars(
        select(DeskApproval)
        .options(joinedload(DeskApproval.requested_by))
        .where(DeskApproval.doctor_id == doctor.id, DeskApproval.decided_at.is_(None),
               DeskApproval.expires_at > now)
        .order_by(DeskApproval.id)
    ))
