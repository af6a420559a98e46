"""Patients, as known from the DPI, and their consents to electronic sending."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ColumnElement,
    Date,
    ForeignKey,
    String,
    UniqueConstraint,
    and_,
)
from sqlalchemy.ext.hybrid import hybrid_property
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.base import UTCDateTime, utcnow
from app.models.doctor import Doctor


class Patient(db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "patients"

    id: Mapped[int] = mapped_column(primary_key=True)
    #: The patient's identifier in the hospital record (DPI).
    dpi_id: Mapped[str] = mapped_column(String(64), unique=True)
    family_name: Mapped[str] = mapped_column(String(200))
    given_name: Mapped[str] = mapped_column(String(200))
    birth_date: Mapped[date] = mapped_column(Date)
    #: When the death was recorded; blocks dispatch and cancels held deliveries.
    deceased_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    consents: Mapped[list[Consent]] = relationship(back_populates="patient")

    @property
    def deceased(self) -> bool:
        return self.deceased_at is not None


class Consent(db.Model):  # type: ignore[name-defined,misc]
    """The patient designated this doctor and (maybe) authorised electronic sending.

    One row per patient, doctor and designation: the latest write wins. Revoking keeps the row
    (with ``revoked_at``) so that the doctor can be shown that consent was revoked.
    """

    __tablename__ = "consents"
    __table_args__ = (
        UniqueConstraint("patient_id", "doctor_id", "designation", name="uq_consents_subject"),
        CheckConstraint("given_by IN ('patient', 'representative')", name="given_by"),
        CheckConstraint("designation IN ('treating_doctor')", name="designation"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    doctor_id: Mapped[int] = mapped_column(ForeignKey("doctors.id"), index=True)
    designation: Mapped[str] = mapped_column(String(32), default="treating_doctor")
    electronic_sending: Mapped[bool] = mapped_column(Boolean)
    #: ``patient`` or ``representative`` (a parent, a relative the patient chose, a guardian).
    given_by: Mapped[str] = mapped_column(String(16))
    representative_name: Mapped[str | None] = mapped_column(String(200))
    #: The signed agreement of a minor aged 12 to 15.
    minor_agreement: Mapped[bool] = mapped_column(Boolean, default=False)
    #: The staff login or name that recorded it.
    recorded_by: Mapped[str] = mapped_column(String(200))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    patient: Mapped[Patient] = relationship(back_populates="consents")
    doctor: Mapped[Doctor] = relationship(back_populates="consents")

    @hybrid_property
    def active(self) -> bool:
        """THE active consent: electronic sending authorised and not revoked. In Python on a
        loaded consent, and in SQL (``Consent.active`` in a ``where``) for every query that
        asks which consents count: dispatch, Mes patients, the staff pages."""
        return self.electronic_sending and self.revoked_at is None

    @active.inplace.expression
    @classmethod
    def _active_expression(cls) -> ColumnElement[bool]:
        return and_(cls.electronic_sending.is_(True), cls.revoked_at.is_(None))
