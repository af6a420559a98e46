"""Documents received from the DPI, their encrypted content and their deliveries."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    and_,
)
from sqlalchemy.ext.hybrid import hybrid_method
from sqlalchemy.orm import Mapped, mapped_column, relationship
from sqlalchemy.sql.elements import ColumnElement

from app.extensions import db
from app.models.base import UTCDateTime, utcnow
from app.models.doctor import Doctor
from app.models.patient import Patient
from app.states import VISIBLE_TO_DOCTOR


class Document(db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "documents"
    __table_args__ = (
        CheckConstraint("encounter IN ('outpatient', 'inpatient')", name="encounter"),
        # The retention purge: documents not yet purged, signed before a cutoff.
        Index("ix_documents_retention", "purged_at", "signed_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    #: The DPI's identifier of the document; one document per id, ever.
    document_id: Mapped[str] = mapped_column(String(128), unique=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    type: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(500))
    #: The DPI's service code (``cardiologie``, ``pedopsychiatrie`` ...).
    service: Mapped[str] = mapped_column(String(64))
    author: Mapped[str] = mapped_column(String(200))
    encounter: Mapped[str] = mapped_column(String(16))
    signed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sensitive: Mapped[bool] = mapped_column(Boolean)
    third_party_data: Mapped[bool] = mapped_column(Boolean)
    category: Mapped[str] = mapped_column(String(32))
    content_type: Mapped[str] = mapped_column(String(64))
    #: Size in bytes and SHA-256 of the plaintext, checked on every read.
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: SHA-256 of the request body in canonical form: a replay is compared with it.
    request_hash: Mapped[str] = mapped_column(String(64))
    #: The answer given to the first request, served again to an identical replay.
    response: Mapped[dict[str, Any]] = mapped_column(JSON)
    api_client_id: Mapped[int | None] = mapped_column(ForeignKey("api_clients.id"))
    retracted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    retraction_reason: Mapped[str | None] = mapped_column(Text)
    #: When the content was deleted at the end of its retention (DOCUMENT_RETENTION_YEARS after
    #: ``signed_at``); the metadata, the hash and the deliveries stay for the record.
    purged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    patient: Mapped[Patient] = relationship()
    content: Mapped[DocumentContent] = relationship(
        back_populates="document", cascade="all, delete-orphan", uselist=False
    )
    deliveries: Mapped[list[Delivery]] = relationship(
        back_populates="document", order_by="Delivery.id", cascade="all, delete-orphan"
    )


class DocumentContent(db.Model):  # type: ignore[name-defined,misc]
    """The encrypted bytes, apart from the metadata so that lists never load them."""

    __tablename__ = "document_contents"

    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id"), primary_key=True)
    #: AES-256-GCM: ``key_id`` names the key in DOCUMENT_KEYS; ``nonce`` is 12 random bytes;
    #: ``ciphertext`` carries the tag. The associated data binds it to its document.
    key_id: Mapped[str] = mapped_column(String(64))
    nonce: Mapped[bytes] = mapped_column(LargeBinary(12))
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)

    document: Mapped[Document] = relationship(back_populates="content")


class Delivery(db.Model):  # type: ignore[name-defined,misc]
    """One document for one recipient, and what the policy decided about it."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("document_id", "recipient_gln", name="uq_deliveries_recipient"),
        CheckConstraint(
            "status IN ('held', 'delivered', 'read', 'blocked', 'cancelled', 'retracted')",
            name="status",
        ),
        CheckConstraint(
            "handling IS NULL OR handling IN ('post', 'other_doctor', 'no_action', 'rechecked')",
            name="handling",
        ),
        # The doctor's inbox, newest first; the release worker's due list.
        Index("ix_deliveries_inbox", "doctor_id", "status", "delivered_at"),
        Index("ix_deliveries_due", "status", "release_at"),
        # Mes documents: one doctor's letters newest first, walked backwards one page at a time.
        Index("ix_deliveries_recent", "doctor_id", "delivered_at", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id"), index=True)
    recipient_gln: Mapped[str] = mapped_column(String(13))
    doctor_id: Mapped[int | None] = mapped_column(ForeignKey("doctors.id"))
    status: Mapped[str] = mapped_column(String(16))
    #: The rule that decided (``ok``, ``sensitive_delay``, ``no_consent`` ...).
    rule: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(String(500))
    release_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decided_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    first_read_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    retracted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reported_not_my_patient_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Staff handled this delivery on the worklist (blocked, cancelled or "pas mon patient"):
    #: when, who (the staff login), how (``post``, ``other_doctor``, ``no_action``,
    #: ``rechecked``) and a short note. Set once; a handled delivery leaves the open worklist.
    handled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    handled_by: Mapped[str | None] = mapped_column(String(64))
    handling: Mapped[str | None] = mapped_column(String(16))
    handling_note: Mapped[str | None] = mapped_column(String(500))

    document: Mapped[Document] = relationship(back_populates="deliveries")
    doctor: Mapped[Doctor | None] = relationship()

    @hybrid_method
    def visible_to(self, doctor_id: int | None) -> bool:
        """THE delivery a doctor sees (lists, counts, notifications): hers, delivered or read
        (VISIBLE_TO_DOCTOR), and not reported "pas mon patient", which leaves her lists. In
        Python on a loaded delivery, and in SQL (``Delivery.visible_to(id)`` in a ``where``)."""
        return (doctor_id is not None and self.doctor_id == doctor_id
                and self.status in VISIBLE_TO_DOCTOR and self.reported_not_my_patient_at is None)

    @visible_to.inplace.expression  # type: ignore[attr-defined,untyped-decorator]
    @classmethod
    def _visible_to_expression(cls, doctor_id: int | None) -> ColumnElement[bool]:
        return and_(cls.doctor_id == doctor_id, cls.status.in_(VISIBLE_TO_DOCTOR),
                    cls.reported_not_my_patient_at.is_(None))
