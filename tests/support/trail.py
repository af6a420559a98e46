"""Reading the audit trail in a test: the events of one action, oldest first, as the database
holds them now (what the test's session had loaded is read again)."""

from __future__ import annotations

from sqlalchemy import select

from app.extensions import db
from app.models import AuditEvent


def events(action: str) -> list[AuditEvent]:
    db.session.expire_all()
    return list(db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)))
