"""The audit trail as the desk reads it: the filters (parsed and checked), keyset pages, and
the reading of an export, which ``app/audit/csv_export.py`` and ``app/audit/fhir.py`` write.

One set of filters serves the page and both exports. Exports stream: events are read by keyset
(id, newest first) in batches of plain rows, never all at once, and stop at ``EXPORT_LIMIT``.
An export is bounded by the last event recorded when it was asked for (``through``), so that its
count, recorded in its own ``audit.exported`` event before the first byte goes out, is exactly
what the file holds.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from flask import Flask
from sqlalchemy import ColumnElement, Select, func, select

from app.audit.trail import VERIFIED
from app.extensions import db
from app.models.audit import AuditEvent, AuditHead
from app.models.base import ZURICH
from app.text import has_control
from app.web.listing import BIGINT_ID_MAX, row_id

PAGE_SIZE = 50
#: The most events one export carries (the newest first); the page says so.
EXPORT_LIMIT = 100_000
#: Rows read from the database at a time while an export streams.
BATCH = 1000

#: The longest value each filter accepts (the columns' own sizes, or less).
MAX_LENGTHS = {"from": 32, "to": 32, "actor": 200, "patient": 64, "document": 200,
               "action": 64, "before": 19}
FIELDS = ("from", "to", "actor", "patient", "document", "action")

# Error codes of the filters, labelled by the viewer.
TOO_LONG = "too_long"
INVALID_TEXT = "invalid_text"
INVALID_TIME = "invalid_time"
TIME_ORDER = "time_order"
INVALID_CURSOR = "invalid_cursor"

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2})?")


# --- filters ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditFilters:
    """What the desk asked for; times are UTC bounds, ``start`` included, ``end`` excluded."""

    raw: dict[str, str]
    start: datetime | None = None
    end: datetime | None = None
    actor: str = ""
    patient: str = ""
    document: str = ""
    action: str = ""

    def args(self) -> dict[str, str]:
        """The filters as query arguments (to keep them in links)."""
        return {name: self.raw[name] for name in FIELDS if self.raw.get(name)}

    def shown(self, name: str) -> str:
        """A filter's value as its form field shows it (a date in a date-and-time field)."""
        value = self.raw.get(name, "")
        if name in ("from", "to") and _DATE.fullmatch(value):
            return value + ("T00:00" if name == "from" else "T23:59")
        return value.replace(" ", "T", 1) if name in ("from", "to") else value

    def described(self) -> dict[str, str]:
        """The filters for an audit event's details: ids and times only; the patient's DPI id
        goes in the event's own ``patient`` column instead."""
        return {name: value for name, value in self.args().items() if name != "patient"}

    def conditions(self) -> list[ColumnElement[bool]]:
        conditions: list[ColumnElement[bool]] = []
        if self.start is not None:
            conditions.append(AuditEvent.time >= self.start)
        if self.end is not None:
            conditions.append(AuditEvent.time < self.end)
        if self.actor:
            conditions.append(AuditEvent.actor == self.actor)
        if self.patient:
            conditions.append(AuditEvent.patient == self.patient)
        if self.document:
            conditions.append(AuditEvent.target == f"document:{self.document}")
        if self.action:
            conditions.append(AuditEvent.action == self.action)
        return conditions


def parse_time(raw: str, *, end: bool) -> datetime:
    """A date or a date and time typed in Europe/Zurich, as a UTC bound. An end bound covers the
    whole day, minute or second it names. ValueError when it is not one."""
    text = raw.strip()
    try:
        if _DATE.fullmatch(text):
            day = date.fromisoformat(text)
            if end:
                day += timedelta(days=1)
            local = datetime.combine(day, time.min, tzinfo=ZURICH)
        elif _DATETIME.fullmatch(text):
            local = datetime.fromisoformat(text.replace(" ", "T")).replace(tzinfo=ZURICH)
            if end:
                local += timedelta(seconds=1) if text.count(":") == 2 else timedelta(minutes=1)
        else:
            raise ValueError(text)
        return local.astimezone(UTC)
    except OverflowError as error:  # year 1 or 9999 at the edges of the calendar
        raise ValueError(text) from error


def parse_filters(args: Mapping[str, str]) -> tuple[AuditFilters, dict[str, str]]:
    """The filters from query arguments, and the error code of each wrong one (then the
    filters are not to be used)."""
    raw = {name: str(args.get(name, "")).strip() for name in (*FIELDS, "before")}
    errors: dict[str, str] = {}
    for name, value in raw.items():
        if len(value) > MAX_LENGTHS[name]:
            errors[name] = TOO_LONG
        elif has_control(value):
            errors[name] = INVALID_TEXT
    bounds: dict[str, datetime | None] = {"from": None, "to": None}
    for name in ("from", "to"):
        if raw[name] and name not in errors:
            try:
                bounds[name] = parse_time(raw[name], end=name == "to")
            except ValueError:
                errors[name] = INVALID_TIME
    start, end = bounds["from"], bounds["to"]
    if start is not None and end is not None and start >= end:
        errors["to"] = TIME_ORDER
    # ASCII digits (not "²", which int() refuses) naming an id a BIGINT can hold.
    if raw["before"] and "before" not in errors and row_id(raw["before"], BIGINT_ID_MAX) is None:
        errors["before"] = INVALID_CURSOR
    if errors:
        raw = {name: value[:MAX_LENGTHS[name]] for name, value in raw.items()}
    filters = AuditFilters(raw=raw, start=start, end=end, actor=raw["actor"],
                           patient=raw["patient"], document=raw["document"], action=raw["action"])
    return filters, errors


# --- the page ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    events: list[AuditEvent]
    next_before: int | None


def events_page(filters: AuditFilters, before: int | None, size: int = PAGE_SIZE) -> Page:
    """One page, newest first, by keyset on the id: one query whatever the page."""
    query = select(AuditEvent).where(*filters.conditions())
    if before is not None:
        query = query.where(AuditEvent.id < before)
    rows = list(db.session.scalars(query.order_by(AuditEvent.id.desc()).limit(size + 1)))
    more = len(rows) > size
    rows = rows[:size]
    return Page(rows, rows[-1].id if more and rows else None)


def actions_present() -> list[str]:
    return list(db.session.scalars(select(AuditEvent.action).distinct().order_by(
        AuditEvent.action)))


def last_event_id() -> int:
    """The id of the last event recorded (ids have no gaps: also the number of events)."""
    return int(db.session.scalar(select(AuditHead.seq).where(AuditHead.id == 1)) or 0)


def latest_verification() -> AuditEvent | None:
    return db.session.scalar(select(AuditEvent).where(AuditEvent.action == VERIFIED)
                             .order_by(AuditEvent.id.desc()).limit(1))


def compact(details: Mapping[str, Any] | None) -> str:
    """Details as ``key=value`` pairs on one line."""
    parts = []
    for key, value in sorted((details or {}).items()):
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False,
                                                                separators=(",", ":"))
        parts.append(f"{key}={text}")
    return " ".join(parts)


# --- exports: reading ---------------------------------------------------------------------------


def _export_query(filters: AuditFilters, through: int) -> Select[Any]:
    table = AuditEvent.__table__
    return select(table).where(*filters.conditions(), AuditEvent.id <= through)


def export_count(filters: AuditFilters, through: int, limit: int | None = None) -> int:
    """How many events an export up to ``through`` carries (at most ``limit``, by default
    ``EXPORT_LIMIT``)."""
    limit = EXPORT_LIMIT if limit is None else limit
    capped = (select(AuditEvent.id).where(*filters.conditions(), AuditEvent.id <= through)
              .order_by(AuditEvent.id.desc()).limit(limit).subquery())
    return int(db.session.scalar(select(func.count()).select_from(capped)) or 0)


def export_rows(filters: AuditFilters, through: int, limit: int | None = None,
                batch: int = BATCH, app: Flask | None = None) -> Iterator[Any]:
    """The events of an export, newest first, as plain rows read ``batch`` at a time.

    With ``app``, each batch is read in an application context of its own, held only while
    reading: a streamed response's generator then never keeps a context across its yields
    (a download abandoned half-way cannot pop another request's context when collected).
    """
    left = EXPORT_LIMIT if limit is None else limit
    before: int | None = None
    while left > 0:
        query = _export_query(filters, through)
        if before is not None:
            query = query.where(AuditEvent.id < before)
        query = query.order_by(AuditEvent.id.desc()).limit(min(batch, left))
        if app is None:
            rows = list(db.session.execute(query).all())
        else:
            with app.app_context():
                rows = list(db.session.execute(query).all())
        if not rows:
            return
        yield from rows
        left -= len(rows)
        before = rows[-1].id


def utc_text(value: datetime) -> str:
    """A stored time as FHIR and the CSV write it: UTC, to the microsecond, with a Z."""
    if value.tzinfo is None:  # SQLite hands plain rows back without their zone: stored as UTC
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
