"""Retraction: the hospital withdraws a letter sent in error.

Every delivery is marked retracted and the encrypted content is destroyed; the metadata and
the content's hash stay for the record. The caller commits (see :mod:`app.dispatch`).
"""

from __future__ import annotations

from sqlalchemy import delete

from app.audit import Actor, record
from app.extensions import db
from app.models import Document, DocumentContent
from app.models.base import utcnow
from app.states import Rule, Status


def retract(document: Document, reason: str, actor: Actor) -> None:
    """Withdraw a letter sent in error: every delivery retracted, the content destroyed."""
    if document.retracted_at is not None:
        return
    now = utcnow()
    document.retracted_at = now
    document.retraction_reason = reason
    for delivery in document.deliveries:
        delivery.status = Status.RETRACTED.value
        delivery.rule = Rule.RETRACTED.value
        delivery.reason = "Withdrawn by the hospital."
        delivery.retracted_at = now
        delivery.decided_at = now
    # Nobody may open it again: the ciphertext goes; metadata and hash stay for the record.
    db.session.execute(
        delete(DocumentContent).where(DocumentContent.document_id == document.id)
    )
    db.session.flush()
    db.session.expire(document, ["content"])
    record(
        actor,
        "document.retracted",
        target=f"document:{document.document_id}",
        patient=document.patient.dpi_id,
        details={"deliveries": len(document.deliveries)},
    )
