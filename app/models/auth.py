"""Sign-in state that must outlive one request and be shared by every app server.

One-time codes (SMS sign-in, the desk's phone possession check), the SAML requests this portal
started (for InResponseTo) and the SAML assertions it accepted (against replay) live in the
database, so that two servers behind the proxy agree on them and a restart forgets nothing.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.base import UTCDateTime, utcnow

CODE_PURPOSES = ("sign_in", "phone_check")


class OneTimeCode(db.Model):  # type: ignore[name-defined,misc]
    """A 6-digit code sent by SMS, bound to one sign-in attempt or one desk check."""

    __tablename__ = "one_time_codes"
    __table_args__ = (
        CheckConstraint("purpose IN ('sign_in', 'phone_check')", name="purpose"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    #: Random handle kept in the browser's session: the attempt the code is bound to.
    handle: Mapped[str] = mapped_column(String(64), unique=True)
    purpose: Mapped[str] = mapped_column(String(16))
    #: The doctor signing in, or the doctor whose phone the desk checks (None for a new one).
    doctor_id: Mapped[int | None] = mapped_column(ForeignKey("doctors.id"), index=True)
    #: The desk user who asked for a phone check.
    staff_user_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id"), index=True)
    #: The E.164 number the code went to.
    phone: Mapped[str] = mapped_column(String(16))
    #: HMAC-SHA256 under SECRET_KEY of handle and code: never the code itself.
    code_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: When the current code was sent; it expires 5 minutes later.
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: How many times a code was sent for this attempt (the first send counts).
    sends: Mapped[int] = mapped_column(Integer, default=0)
    #: Wrong codes typed so far, across resends.
    tries: Mapped[int] = mapped_column(Integer, default=0)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class SamlRequest(db.Model):  # type: ignore[name-defined,misc]
    """An AuthnRequest this portal sent to the identity provider, until its answer comes."""

    __tablename__ = "saml_requests"

    #: The AuthnRequest's ID attribute, which the response's InResponseTo must repeat.
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    #: SHA-256 of the browser-binding cookie's value set when the request started.
    browser_hash: Mapped[str] = mapped_column(String(64))
    #: Where to go after sign-in: a path of ours.
    next_path: Mapped[str] = mapped_column(String(2000), default="/")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class SamlAssertion(db.Model):  # type: ignore[name-defined,misc]
    """An assertion id already accepted: the same one again is a replay until it expires."""

    __tablename__ = "saml_assertions"

    id: Mapped[str] = mapped_column(String(256), primary_key=True)
    accepted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class EndedSession(db.Model):  # type: ignore[name-defined,misc]
    """A session signed out before its time: its cookie is refused even if someone kept a copy.

    Sessions live in the signed cookie; the cookie carries a random session id and this table
    holds the SHA-256 of the ids of sessions that ended early, until they would have expired
    anyway (the absolute limit), then they may be forgotten.
    """

    __tablename__ = "ended_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    ended_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
