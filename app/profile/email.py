"""The change of a doctor's email address: it works only once the link sent to the new address
has been followed (24 hours, single use, only its hash is stored); the old address is told.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from sqlalchemy import select, update

from app.audit import Actor, record
from app.extensions import db
from app.models import Doctor, EmailChange
from app.models.base import utcnow
from app.notify.outbox import queue_email, send_at_once

EMAIL_TOKEN_LIFETIME = timedelta(hours=24)


class EmailChangeError(Exception):
    """The link is unknown, used, expired or not this doctor's: one message for all."""


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def request_email_change(doctor: Doctor, new_email: str, actor: Actor) -> int:
    """Send a confirmation link to the new address; returns the outbox row's id."""
    now = utcnow()
    # Only the latest request counts: earlier links stop working.
    db.session.execute(
        update(EmailChange)
        .where(EmailChange.doctor_id == doctor.id, EmailChange.used_at.is_(None),
               EmailChange.expires_at > now)
        .values(expires_at=now)
    )
    token = secrets.token_urlsafe(32)
    change = EmailChange(doctor_id=doctor.id, new_email=new_email, token_hash=_token_hash(token),
                         created_at=now, expires_at=now + EMAIL_TOKEN_LIFETIME)
    db.session.add(change)
    db.session.flush()
    row = queue_email(doctor, "email_confirm", f"email_confirm:{change.id}",
                      to_address=new_email, secret=token, now=now)
    record(actor, "profile.email_change_requested", target=f"doctor:{doctor.gln}")
    return row.id


def confirm_email_change(doctor: Doctor, token: str, actor: Actor) -> int | None:
    """Follow the link: the new address replaces the old one, which is told (its row id)."""
    now = utcnow()
    change = db.session.scalar(
        select(EmailChange).where(EmailChange.token_hash == _token_hash(token))
        .with_for_update()
    )
    if (change is None or change.doctor_id != doctor.id or change.used_at is not None
            or change.expires_at <= now):
        raise EmailChangeError
    # Single use even under a double click: a compare-and-set on used_at.
    result = db.session.execute(
        update(EmailChange).where(EmailChange.id == change.id, EmailChange.used_at.is_(None))
        .values(used_at=now).execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise EmailChangeError
    old = doctor.email
    doctor.email = change.new_email
    row_id = None
    if old and old != change.new_email:
        row_id = queue_email(doctor, "email_changed", f"email_changed:{change.id}",
                             to_address=old, now=now).id
    record(actor, "profile.updated", target=f"doctor:{doctor.gln}", details={"fields": ["email"]})
    return row_id


def send_now(row_id: int | None) -> None:
    """After the commit: try an account email at once; the worker retries it if this fails."""
    if row_id is None:
        return
    send_at_once(row_id, utcnow())


def pending_change(doctor: Doctor) -> EmailChange | None:
    """The doctor's latest link still waiting to be followed, if any."""
    return db.session.scalar(
        select(EmailChange).where(EmailChange.doctor_id == doctor.id,
                                  EmailChange.used_at.is_(None),
                                  EmailChange.expires_at > utcnow())
        .order_by(EmailChange.id.desc()).limit(1)
    )
