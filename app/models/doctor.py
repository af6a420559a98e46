"""City doctors: the recipients of letters."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates

from app.extensions import db
from app.gln import is_valid_gln
from app.models.base import UTCDateTime, utcnow
from app.phone import is_e164
from app.states import DoctorState

if TYPE_CHECKING:
    from app.models.patient import Consent


class Doctor(db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "doctors"
    __table_args__ = (
        CheckConstraint("state IN ('pending', 'active', 'deactivated')", name="state"),
        CheckConstraint(
            "notification_mode IN ('none', 'immediate', 'digest')", name="notification_mode"
        ),
        CheckConstraint("digest_hour BETWEEN 0 AND 23", name="digest_hour"),
        CheckConstraint("patients_view IN ('all', 'recent', 'unread')", name="patients_view"),
        CheckConstraint("patients_recent_months BETWEEN 1 AND 120",
                        name="patients_recent_months"),
        CheckConstraint("documents_view IN ('all', 'unread')", name="documents_view"),
        CheckConstraint("landing_page IN ('documents', 'patients', 'profile')",
                        name="landing_page"),
        CheckConstraint("language IN ('fr', 'en')", name="language"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    #: The 13-digit GLN, with a valid GS1 check digit.
    gln: Mapped[str] = mapped_column(String(13), unique=True)
    family_name: Mapped[str] = mapped_column(String(200), default="")
    given_name: Mapped[str] = mapped_column(String(200), default="")
    email: Mapped[str | None] = mapped_column(String(320))
    #: Mobile number in E.164 form (``+41791234567``), for SMS codes.
    mobile: Mapped[str | None] = mapped_column(String(16))
    locality: Mapped[str | None] = mapped_column(String(200))
    #: pending (known, cannot receive yet), active (can receive) or deactivated.
    state: Mapped[str] = mapped_column(String(16), default=DoctorState.PENDING.value, index=True)
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    deactivated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: SMS sign-in mode: login, argon2id hash, and whether the password is a temporary one.
    login: Mapped[str | None] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=False)
    #: A sign-in lockout (too many failures). It never stops letters.
    sign_in_locked: Mapped[bool] = mapped_column(Boolean, default=False)
    sign_in_locked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Consecutive failed sign-ins (password or code); 10 lock sign-in for 15 minutes.
    failed_sign_ins: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    #: Bumped by "sign out everywhere" and by the desk: every older session ends.
    session_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_sign_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Email notification of new documents: none, immediate (at each arrival) or digest.
    notification_mode: Mapped[str] = mapped_column(String(16), default="none")
    #: Hour (0-23, Europe/Zurich) of the daily digest, when notification_mode is digest.
    digest_hour: Mapped[int] = mapped_column(Integer, default=7, server_default="7")
    #: Mon profil (c): Mes patients shows all, only those with a document in the last
    #: ``patients_recent_months`` months (recent), or only those with unread documents.
    patients_view: Mapped[str] = mapped_column(String(16), default="all", server_default="all")
    patients_recent_months: Mapped[int] = mapped_column(Integer, default=12,
                                                        server_default="12")
    #: Mon profil (d): Mes documents opens on all documents or on the unread ones.
    documents_view: Mapped[str] = mapped_column(String(16), default="all", server_default="all")
    #: Mon profil (e): the page after sign-in.
    landing_page: Mapped[str] = mapped_column(String(16), default="documents",
                                              server_default="documents")
    #: The interface language chosen in the profile (fr or en).
    language: Mapped[str] = mapped_column(String(2), default="fr", server_default="fr")
    #: When the last daily digest was written: the next one counts the arrivals since then.
    last_digest_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    consents: Mapped[list[Consent]] = relationship(back_populates="doctor")
    specialty_links: Mapped[list[DoctorSpecialty]] = relationship(
        cascade="all, delete-orphan", order_by="DoctorSpecialty.code"
    )
    identities: Mapped[list[HinIdentity]] = relationship(
        back_populates="doctor", cascade="all, delete-orphan"
    )

    @validates("gln")
    def _check_gln(self, _key: str, value: str) -> str:
        if not is_valid_gln(value):
            raise ValueError("invalid GLN")
        return value

    @validates("mobile")
    def _check_mobile(self, _key: str, value: str | None) -> str | None:
        if value is not None and not is_e164(value):
            raise ValueError("mobile must be in E.164 form")
        return value

    @property
    def specialties(self) -> list[str]:
        """Specialty codes (FMH titles), used by hospital staff to choose the recipient."""
        return [link.code for link in self.specialty_links]

    @specialties.setter
    def specialties(self, codes: list[str]) -> None:
        wanted = list(dict.fromkeys(codes))
        self.specialty_links = [link for link in self.specialty_links if link.code in wanted]
        have = {link.code for link in self.specialty_links}
        self.specialty_links.extend(DoctorSpecialty(code=c) for c in wanted if c not in have)

    @property
    def can_receive(self) -> bool:
        return self.state == DoctorState.ACTIVE.value

    @property
    def sign_in_mode(self) -> str:
        """``hin``, ``sms`` or ``none`` (never signed in nor enrolled)."""
        if self.identities:
            return "hin"
        if self.login is not None:
            return "sms"
        return "none"

    @property
    def display_name(self) -> str:
        return f"{self.given_name} {self.family_name}".strip()


class HinIdentity(db.Model):  # type: ignore[name-defined,misc]
    """An identity from the HIN federation, linked to a doctor (not the doctor itself)."""

    __tablename__ = "hin_identities"
    __table_args__ = (UniqueConstraint("provider", "subject", name="uq_hin_identities_subject"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    doctor_id: Mapped[int] = mapped_column(ForeignKey("doctors.id"), index=True)
    #: The identity provider (its SAML entity id).
    provider: Mapped[str] = mapped_column(String(255))
    #: The subject (NameID) the provider gives this person.
    subject: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    doctor: Mapped[Doctor] = relationship(back_populates="identities")


class DoctorSpecialty(db.Model):  # type: ignore[name-defined,misc]
    """One specialty code of a doctor: a table, so that staff can filter on it with an index."""

    __tablename__ = "doctor_specialties"

    doctor_id: Mapped[int] = mapped_column(ForeignKey("doctors.id"), primary_key=True)
    code: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)
