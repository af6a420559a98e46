"""Hospital staff and desk accounts: password plus an authenticator app (TOTP)."""

from __future__ import annotations

import re
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates

from app.extensions import db
from app.models.base import UTCDateTime, utcnow

STAFF_ROLES = ("staff", "desk")
LOGIN_PATTERN = re.compile(r"[a-z0-9._-]{3,64}")


class StaffUser(db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "staff_users"
    __table_args__ = (CheckConstraint("role IN ('staff', 'desk')", name="role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    #: 3 to 64 of ``a-z 0-9 . _ -``; never changes (the TOTP secret is bound to it).
    login: Mapped[str] = mapped_column(String(64), unique=True)
    #: staff (hospital staff) or desk (enrols doctors in person).
    role: Mapped[str] = mapped_column(String(16))
    #: argon2id; a temporary password must be changed at first sign-in.
    password_hash: Mapped[str] = mapped_column(String(255))
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    deactivated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: The TOTP secret, AES-256-GCM under DOCUMENT_KEYS like documents; the associated data
    #: binds it to this row's id and login. Empty only while the row is being created.
    totp_key_id: Mapped[str | None] = mapped_column(String(64))
    totp_nonce: Mapped[bytes | None] = mapped_column(LargeBinary(12))
    totp_ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary)
    #: When the user first proved a code from this secret; None while enrolment is pending.
    totp_confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: The last accepted time step: a code of this step or an earlier one is refused (replay).
    totp_last_counter: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_sign_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Consecutive failed sign-ins; 10 lock sign-in for 15 minutes (the desk can unlock).
    failed_sign_ins: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    sign_in_locked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Bumped by "sign out everywhere", deactivation and TOTP reset: older sessions end.
    session_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    recovery_codes: Mapped[list[RecoveryCode]] = relationship(
        back_populates="staff_user", cascade="all, delete-orphan"
    )

    @validates("login")
    def _check_login(self, _key: str, value: str) -> str:
        if not LOGIN_PATTERN.fullmatch(value):
            raise ValueError("a staff login is 3-64 of a-z, 0-9, '.', '_' or '-'")
        return value

    @validates("role")
    def _check_role(self, _key: str, value: str) -> str:
        if value not in STAFF_ROLES:
            raise ValueError("a staff role is staff or desk")
        return value

    @property
    def totp_pending(self) -> bool:
        """True until the user has proved a code from the current secret."""
        return self.totp_confirmed_at is None


class RecoveryCode(db.Model):  # type: ignore[name-defined,misc]
    """A single-use code that stands in for a TOTP code when the authenticator is lost."""

    __tablename__ = "staff_recovery_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    staff_user_id: Mapped[int] = mapped_column(ForeignKey("staff_users.id"), index=True)
    #: SHA-256 of the normalised code. The codes carry about 79 random bits, so a fast hash
    #: resists an offline search as well as argon2 would, and lets the code be found by hash.
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    staff_user: Mapped[StaffUser] = relationship(back_populates="recovery_codes")
