"""Notification emails waiting to go (the outbox) and pending changes of email address."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.base import UTCDateTime, utcnow
from app.models.doctor import Doctor

#: What an outbox row announces.
KINDS = ("arrival", "digest", "email_confirm", "email_changed", "change_requested",
         "account_changed")


class Notification(db.Model):  # type: ignore[name-defined,misc]
    """One email to send, written in the transaction of the change it announces.

    A row is due when ``next_attempt_at`` has passed and it is neither sent nor failed. A sender
    claims it by moving ``next_attempt_at`` forward (a lease) with a compare-and-set, sends,
    and marks it sent at once; a crash leaves it due again when the lease ends.
    """

    __tablename__ = "notifications"
    __table_args__ = (
        CheckConstraint(f"kind IN ({', '.join(repr(kind) for kind in KINDS)})", name="kind"),
        CheckConstraint("count >= 0", name="count"),
        # The sender's due list.
        Index("ix_notifications_due", "sent_at", "failed_at", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    doctor_id: Mapped[int] = mapped_column(ForeignKey("doctors.id"), index=True)
    #: arrival, digest, email_confirm, email_changed; change_requested (a change of the
    #: doctor's sign-in was asked at the desk) and account_changed (it was made).
    kind: Mapped[str] = mapped_column(String(16))
    #: Unique: ``arrival:<doctor>:open`` while an arrival email still gathers arrivals (one
    #: per doctor), then ``arrival:<doctor>:<id>``; ``digest:<doctor>:<local date>``; so a
    #: retry or a second worker never writes a second row for the same email.
    idempotency_key: Mapped[str] = mapped_column(String(128), unique=True)
    #: How many documents the email announces (arrival, digest).
    count: Mapped[int] = mapped_column(Integer, default=0)
    #: Another address than the doctor's current one (the new one to confirm, the old one to
    #: tell of a change); null: the doctor's address when sending.
    to_address: Mapped[str | None] = mapped_column(String(320))
    #: The email-change confirmation token, kept only until the email went (then wiped): the
    #: pending change itself stores its hash only.
    secret: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Permanent failure after the last attempt: listed for the desk.
    failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    #: The last error's kind and SMTP code only: never an address nor any content.
    last_error: Mapped[str | None] = mapped_column(String(200))

    doctor: Mapped[Doctor] = relationship()


class EmailChange(db.Model):  # type: ignore[name-defined,misc]
    """A new email address that works only once its confirmation link was followed."""

    __tablename__ = "email_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    doctor_id: Mapped[int] = mapped_column(ForeignKey("doctors.id"), index=True)
    new_email: Mapped[str] = mapped_column(String(320))
    #: SHA-256 of the token sent to the new address; the token itself is never stored.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    doctor: Mapped[Doctor] = relationship()
