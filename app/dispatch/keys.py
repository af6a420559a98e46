"""Content key rotation: re-encrypting the stored letters under the key ring's current key.

The command line runs it batch after batch and commits each one (see :mod:`app.dispatch`).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from app.audit import Actor, record
from app.crypto import ContentIntegrityError, associated_data, key_ring
from app.dispatch.documents import read_content
from app.extensions import db
from app.models import DocumentContent


@dataclass(frozen=True)
class RotationBatch:
    changed: int
    failed: tuple[str, ...]
    last_id: int | None  # None: nothing left after the cursor


def rotate_key_batch(actor: Actor, after_id: int = 0, batch: int = 20) -> RotationBatch:
    """Re-encrypt the next documents not yet under the first key, after ``after_id``.

    The caller commits each batch, so a long rotation holds few rows and little memory; a
    document whose content fails its check is left as it is, audited, and reported.
    """
    ring = key_ring()
    rows = db.session.scalars(
        select(DocumentContent)
        .where(
            DocumentContent.key_id != ring.current_key_id,
            DocumentContent.document_id > after_id,
        )
        .order_by(DocumentContent.document_id)
        .limit(batch)
        .with_for_update(skip_locked=True)
    ).all()
    if not rows:
        return RotationBatch(0, (), None)
    changed = 0
    failed: list[str] = []
    for content in rows:
        document = content.document
        try:
            plaintext = read_content(document)
        except ContentIntegrityError:
            failed.append(document.document_id)
            continue
        sealed = ring.seal(plaintext, associated_data(document.document_id))
        content.key_id, content.nonce, content.ciphertext = (
            sealed.key_id, sealed.nonce, sealed.ciphertext,
        )
        changed += 1
    db.session.flush()
    record(
        actor,
        "documents.keys_rotated",
        outcome="success" if not failed else "failure",
        details={"documents": changed, "key_id": ring.current_key_id, "failed": failed},
    )
    return RotationBatch(changed, tuple(failed), rows[-1].document_id)
