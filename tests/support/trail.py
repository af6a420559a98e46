"""Reading the audit trail in a test: the events of one action, oldest first."""

from __future__ import annotations

from sqlalchemy import select

from app.extensions import db
from app.models import AuditEvent


def events(action: str) -> list[AuditEvent]:
    return list(db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)))
