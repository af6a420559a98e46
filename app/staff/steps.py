"""The desk's steps in progress, kept server-side: the cookie holds only a random handle.

A pending enrolment (what the desk typed, the code attempt's handle), a pending mobile change,
and credentials to show once each live in a ``desk_steps`` row, sealed with the document key
ring and bound to the row's kind, its desk user and its handle. The session cookie carries the
handle alone, so a copy of the cookie holds no data; and the credentials are taken out by
deleting their row in the transaction that shows them, so a copy of the cookie, or the same
page reloaded, finds nothing. Steps expire (30 minutes, credentials 10); expired rows are
swept whenever a new step opens.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final

from sqlalchemy import delete, select

from app.crypto import ContentIntegrityError, Sealed, key_ring
from app.extensions import db
from app.models import DeskStep, StaffUser
from app.models.base import utcnow

ENROLMENT: Final = "enrolment"
MOBILE_CHANGE: Final = "mobile_change"
CREDENTIALS: Final = "credentials"

LIFETIMES: Final = {
    ENROLMENT: timedelta(minutes=30),
    MOBILE_CHANGE: timedelta(minutes=30),
    # Shown right after the action that made them: a sheet nobody opened soon is better gone.
    CREDENTIALS: timedelta(minutes=10),
}


@dataclass
class Step:
    row: DeskStep
    data: dict[str, Any]

    @property
    def doctor_id(self) -> int | None:
        return self.row.doctor_id


def _hash(handle: str) -> str:
    return hashlib.sha256(handle.encode()).hexdigest()


def _aad(kind: str, staff_user_id: int, handle_hash: str) -> bytes:
    return f"relais-desk-step:{kind}:{staff_user_id}:{handle_hash}".encode()


def _seal(row: DeskStep, data: dict[str, Any]) -> None:
    sealed = key_ring().seal(json.dumps(data).encode(),
                             _aad(row.kind, row.staff_user_id, row.handle_hash))
    row.key_id, row.nonce, row.ciphertext = sealed.key_id, sealed.nonce, sealed.ciphertext


def open_step(kind: str, owner: StaffUser, data: dict[str, Any],
              doctor_id: int | None = None) -> str:
    """Store a step for ``owner``; returns the handle to keep in the session. Flushes."""
    now = utcnow()
    db.session.execute(delete(DeskStep).where(DeskStep.expires_at <= now))
    handle = secrets.token_urlsafe(32)
    row = DeskStep(handle_hash=_hash(handle), kind=kind, staff_user_id=owner.id,
                   doctor_id=doctor_id, created_at=now, expires_at=now + LIFETIMES[kind])
    _seal(row, data)
    db.session.add(row)
    db.session.flush()
    return handle


def find_step(kind: str, owner: StaffUser, handle: object) -> Step | None:
    """The owner's live step of this kind under ``handle``; None for anything else (another
    desk user's step, an expired or finished one, a handle that is not one)."""
    if not isinstance(handle, str) or not 16 <= len(handle) <= 64:
        return None
    row = db.session.scalar(select(DeskStep).where(
        DeskStep.handle_hash == _hash(handle), DeskStep.kind == kind,
        DeskStep.staff_user_id == owner.id, DeskStep.expires_at > utcnow(),
    ))
    if row is None:
        return None
    try:
        plain = key_ring().unseal(Sealed(row.key_id, row.nonce, row.ciphertext),
                                  _aad(row.kind, row.staff_user_id, row.handle_hash))
        data = json.loads(plain)
    except (ContentIntegrityError, ValueError):
        return None
    return Step(row, data) if isinstance(data, dict) else None


def update_step(step: Step, data: dict[str, Any]) -> None:
    step.data = data
    _seal(step.row, data)
    db.session.flush()


def close_step(step: Step) -> bool:
    """Delete the step; False when it was gone already (another request finished it)."""
    result = db.session.execute(
        delete(DeskStep).where(DeskStep.id == step.row.id)
        .execution_options(synchronize_session=False)
    )
    db.session.expunge(step.row)
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def take_step(kind: str, owner: StaffUser, handle: object) -> dict[str, Any] | None:
    """Read and delete in one go: the data, for the one request whose delete removed the row."""
    step = find_step(kind, owner, handle)
    if step is None or not close_step(step):
        return None
    return step.data
