"""Finding and reading a stored document: who reaches it, its content, its first reading.

``reaches`` is THE ownership rule of the API; ``read_content`` decrypts and checks a letter;
``mark_first_read`` tells the DPI that the doctor opened it. Functions here flush; the caller
commits (see :mod:`app.dispatch`).
"""

from __future__ import annotations

from sqlalchemy import select

from app.audit import Actor, record
from app.crypto import Sealed, associated_data, key_ring
from app.dispatch.facts import NotFound
from app.extensions import db
from app.models import ApiClient, Delivery, Document
from app.models.base import utcnow
from app.scopes import Scope
from app.states import Status


def document_by_dpi_id(document_id: str) -> Document:
    """Any document, for Relais itself (the demo data); the API uses ``document_for``."""
    document = db.session.scalar(select(Document).where(Document.document_id == document_id))
    if document is None:
        raise NotFound(document_id)
    return document


def reaches(client: ApiClient, document: Document) -> bool:
    """THE ownership rule of the API: a client reaches the documents it posted; one holding
    ``documents:admin`` reaches every document."""
    return client.holds(Scope.DOCUMENTS_ADMIN) or (
        document.api_client_id is not None and document.api_client_id == client.id
    )


def document_for(client: ApiClient, document_id: str) -> Document:
    """The document with this id if ``client`` reaches it; another client's is NotFound,
    exactly as an unknown id, so that a client never learns that it exists."""
    document = db.session.scalar(select(Document).where(Document.document_id == document_id))
    if document is None or not reaches(client, document):
        raise NotFound(document_id)
    return document


def read_content(document: Document) -> bytes:
    """Decrypt and verify the content; raises ContentIntegrityError on any mismatch."""
    content = document.content
    if content is None:
        raise NotFound(document.document_id)
    sealed = Sealed(content.key_id, content.nonce, content.ciphertext)
    return key_ring().open(sealed, associated_data(document.document_id), document.sha256)


def mark_first_read(document: Document, gln: str, actor: Actor) -> Delivery | None:
    """The doctor opened the letter: ``read`` for the DPI, once; later views change nothing."""
    delivery = next((d for d in document.deliveries if d.recipient_gln == gln), None)
    if delivery is None or delivery.status != Status.DELIVERED.value:
        return delivery
    delivery.status = Status.READ.value
    delivery.first_read_at = utcnow()
    db.session.flush()
    record(
        actor,
        "delivery.read",
        target=f"document:{document.document_id}",
        patient=document.patient.dpi_id,
        details={"recipient": gln},
    )
    return delivery
