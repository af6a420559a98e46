"""What a doctor does to a letter: open it (the first opening tells the DPI "read"), mark it read
or unread, report it as "pas mon patient". Each one audited; none commits (the view does, once).
"""

from __future__ import annotations

from typing import Any

from flask import abort

from app.audit import Actor, record
from app.crypto import ContentIntegrityError
from app.dispatch.documents import mark_first_read, read_content
from app.dispatch.facts import NotFound
from app.extensions import db
from app.models import Delivery
from app.models.base import utcnow
from app.states import Status


def _audit(actor: Actor, action: str, delivery: Delivery, **details: Any) -> None:
    # The patient's DPI id goes in the event's own column, as everywhere in the trail; no name,
    # no birth date, no title in the details.
    document = delivery.document
    record(actor, action, target=f"document:{document.document_id}",
           patient=document.patient.dpi_id, details={"delivery": delivery.id, **details})


def open_content(delivery: Delivery, actor: Actor, *, action: str, via: str) -> bytes:
    """Decrypt and verify the letter, record the reading, audit the view or download."""
    document = delivery.document
    try:
        data = read_content(document)
    except NotFound:
        abort(410)
    except ContentIntegrityError:
        _audit(actor, "document.integrity_failed", delivery)
        db.session.commit()
        raise
    mark_read(delivery, actor, explicit=False)
    _audit(actor, action, delivery, via=via)
    return data


def mark_read(delivery: Delivery, actor: Actor, *, explicit: bool) -> None:
    """The first opening records ``first_read_at`` (the DPI then sees ``read``), once."""
    if delivery.first_read_at is None:
        mark_first_read(delivery.document, delivery.recipient_gln, actor)
    elif delivery.status == Status.DELIVERED.value:
        delivery.status = Status.READ.value
    else:
        return
    if explicit:
        _audit(actor, "delivery.marked_read", delivery)


def mark_unread(delivery: Delivery, actor: Actor) -> None:
    """Back in the doctor's unread list; ``first_read_at`` stays and the DPI still sees read."""
    if delivery.status != Status.READ.value:
        return
    delivery.status = Status.DELIVERED.value
    _audit(actor, "delivery.marked_unread", delivery)


def report_not_my_patient(delivery: Delivery, actor: Actor) -> None:
    """The doctor says the letter is about someone who is not their patient."""
    if delivery.reported_not_my_patient_at is not None:
        return
    delivery.reported_not_my_patient_at = utcnow()
    _audit(actor, "delivery.reported_not_my_patient", delivery)
