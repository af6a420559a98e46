"""Content retention: a document's content is deleted once its retention has passed.

Swiss law keeps a medical record for 20 years after the last treatment; Relais counts
``DOCUMENT_RETENTION_YEARS`` (default 20) from the letter's signature (``signed_at``), the
date the letter itself carries. When that time has passed, ``documents purge-expired`` deletes
the encrypted content and sets ``purged_at``; the metadata, the content's hash and every
delivery stay, so the trail, the DPI's status and the staff pages keep their history. Each
purged document gets one ``document.purged`` event.

Two purges may run at once (two timers, an operator by hand): each document is purged once,
by a compare-and-set on ``purged_at IS NULL``. Functions here flush; the caller commits each
batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

from flask import current_app
from sqlalchemy import ColumnElement, and_, delete, func, select, update

from app.audit.trail import Actor, Entry, record_all
from app.extensions import db
from app.models import Document, DocumentContent, Patient
from app.models.base import ZURICH, utcnow, zurich_midnight

#: The action of a purge's audit event, one per document.
PURGED = "document.purged"


def retention_years() -> int:
    return int(current_app.config["DOCUMENT_RETENTION_YEARS"])


def years_before(moment: datetime, years: int) -> datetime:
    """``moment`` minus whole calendar years (29 February becomes 28 February)."""
    try:
        return moment.replace(year=moment.year - years)
    except ValueError:
        return moment.replace(year=moment.year - years, day=28)


def cutoff(now: datetime | None = None, before: date | None = None,
           years: int | None = None) -> datetime:
    """Documents signed before this moment have passed their retention.

    ``before`` (a day in Geneva) narrows the purge to documents signed before that day; it
    never widens it: a document still within its retention is never purged.
    """
    limit = years_before(now or utcnow(), retention_years() if years is None else years)
    if before is not None:
        limit = min(limit, zurich_midnight(before))
    return limit.astimezone(UTC)


def _expired(limit: datetime) -> ColumnElement[bool]:
    return and_(Document.purged_at.is_(None), Document.signed_at < limit)


def count_expired(limit: datetime) -> int:
    """How many documents a purge with this cutoff would purge now (``--dry-run``)."""
    return db.session.scalar(select(func.count(Document.id)).where(_expired(limit))) or 0


@dataclass(frozen=True)
class PurgeBatch:
    #: Documents this batch purged (others may have been taken by a concurrent purge).
    purged: int
    #: False when no expired document was left to look at: the purge is over.
    more: bool


def purge_batch(actor: Actor, limit: datetime, batch: int = 100) -> PurgeBatch:
    """Purge the next expired documents (at most ``batch``), in the caller's transaction.

    On PostgreSQL, rows another purge holds are skipped (it purges them); the UPDATE's
    ``purged_at IS NULL`` condition makes each document purged once even when two purges read
    the same rows.
    """
    years = retention_years()
    candidates = db.session.scalars(
        select(Document.id).where(_expired(limit)).order_by(Document.id).limit(batch)
        .with_for_update(skip_locked=True)
    ).all()
    if not candidates:
        return PurgeBatch(0, more=False)
    now = utcnow()
    purged = db.session.execute(
        update(Document)
        .where(Document.id.in_(candidates), Document.purged_at.is_(None))
        .values(purged_at=now)
        .returning(Document.id)
        .execution_options(synchronize_session=False)
    ).scalars().all()
    if not purged:
        return PurgeBatch(0, more=True)
    db.session.execute(
        delete(DocumentContent).where(DocumentContent.document_id.in_(purged))
        .execution_options(synchronize_session=False)
    )
    rows = db.session.execute(
        select(Document.document_id, Document.signed_at, Patient.dpi_id)
        .join(Patient, Patient.id == Document.patient_id)
        .where(Document.id.in_(purged)).order_by(Document.id)
    ).all()
    # The DPI's ids and the signature day: never a title, a name or the content.
    record_all(actor, [
        Entry(PURGED, target=f"document:{row.document_id}", patient=row.dpi_id,
              details={"retention_years": years,
                       "signed_at": row.signed_at.astimezone(ZURICH).date().isoformat()})
        for row in rows
    ])
    return PurgeBatch(len(purged), more=True)
