"""The desk's safeguards against a single insider: four-eyes requests, the separation of duties
between a doctor's account and the letters directed to it, and the desk's short-lived steps
kept server-side (a pending enrolment, credentials to show once)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    ForeignKey,
    Index,
    LargeBinary,
    String,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.base import UTCDateTime, utcnow
from app.models.doctor import Doctor
from app.models.staff import StaffUser

#: The changes to an active doctor's sign-in that wait for a second desk person.
APPROVAL_KINDS = ("enrolment", "password_reset", "mobile_change")
#: How a request ended: applied after approval, refused by a second person, or withdrawn by the
#: person who asked. Expiry is not a decision: an undecided request past ``expires_at`` is dead.
APPROVAL_DECISIONS = ("approved", "refused", "withdrawn")
#: ``account``: took part in setting the doctor's sign-in (enrolled, asked for or approved a
#: reset or a new mobile). ``letters``: directed a patient's letters to the doctor (a consent
#: recorded on the staff pages, a pending doctor created by one, a worklist letter sent to it).
DUTIES = ("account", "letters")
#: What a desk step holds until it is finished or shown.
STEP_KINDS = ("enrolment", "mobile_change", "credentials")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class DeskApproval(db.Model):  # type: ignore[name-defined,misc]
    """A change to an active doctor's sign-in, asked by one desk person, applied only when
    another approves it, once, before it expires."""

    __tablename__ = "desk_approvals"
    __table_args__ = (
        CheckConstraint(_in("kind", APPROVAL_KINDS), name="kind"),
        CheckConstraint("decision IS NULL OR " + _in("decision", APPROVAL_DECISIONS),
                        name="decision"),
        # The approvals page: the undecided ones, by expiry.
        Index("ix_desk_approvals_open", "decided_at", "expires_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    #: enrolment (SMS sign-in for a doctor who can already receive), password_reset or
    #: mobile_change.
    kind: Mapped[str] = mapped_column(String(16))
    doctor_id: Mapped[int] = mapped_column(ForeignKey("doctors.id"), index=True)
    #: The desk person who asked; never the one who decides.
    requested_by_id: Mapped[int] = mapped_column(ForeignKey("staff_users.id"), index=True)
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: What the change sets, as checked at the desk: the new mobile (E.164), the identity
    #: document seen, the names and email typed (shown to the approver; an active doctor's
    #: stored names and email are kept). Never a password or a code.
    change: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    #: The address the doctor was told of the request at (her address before the change);
    #: None when she had none on file.
    told_address: Mapped[str | None] = mapped_column(String(320))
    #: Set once, by a compare-and-set on ``decided_at IS NULL``.
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id"))
    decision: Mapped[str | None] = mapped_column(String(16))

    doctor: Mapped[Doctor] = relationship()
    requested_by: Mapped[StaffUser] = relationship(foreign_keys=[requested_by_id])
    decided_by: Mapped[StaffUser | None] = relationship(foreign_keys=[decided_by_id])

    def is_open(self, now: datetime) -> bool:
        return self.decided_at is None and now < self.expires_at


class DoctorDuty(db.Model):  # type: ignore[name-defined,misc]
    """Which side of a doctor a staff person stands on: the account or the letters, never both.

    One row per (doctor, person): the primary key makes a second side impossible even for two
    requests racing, and rows are never deleted, so a re-enrolment or a reactivation cannot wash
    away who set the account up.
    """

    __tablename__ = "doctor_duties"
    __table_args__ = (CheckConstraint(_in("duty", DUTIES), name="duty"),)

    doctor_id: Mapped[int] = mapped_column(ForeignKey("doctors.id"), primary_key=True)
    staff_user_id: Mapped[int] = mapped_column(ForeignKey("staff_users.id"), primary_key=True,
                                               index=True)
    #: account or letters.
    duty: Mapped[str] = mapped_column(String(16))
    #: The audit action of the first act that gave this person this side.
    first_act: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class DeskStep(db.Model):  # type: ignore[name-defined,misc]
    """A desk step in progress (an enrolment or a mobile change waiting for its code) or
    credentials waiting to be shown once, held here rather than in the session cookie.

    The cookie carries only a random handle; this row keeps its SHA-256, so the row is useless
    without the cookie and the cookie is useless once the row is gone: showing credentials
    deletes the row in the same transaction, so a copy of the cookie shows nothing. The
    content is sealed with the document key ring, bound to the row's kind, owner and handle.
    """

    __tablename__ = "desk_steps"
    __table_args__ = (CheckConstraint(_in("kind", STEP_KINDS), name="kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    #: SHA-256 of the handle kept in the desk user's session.
    handle_hash: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    #: The desk person the step belongs to: nobody else can read or finish it.
    staff_user_id: Mapped[int] = mapped_column(ForeignKey("staff_users.id"), index=True)
    #: The doctor concerned, when known (a mobile change, credentials).
    doctor_id: Mapped[int | None] = mapped_column(ForeignKey("doctors.id"))
    key_id: Mapped[str] = mapped_column(String(64))
    nonce: Mapped[bytes] = mapped_column(LargeBinary(12))
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
