"""Column types and helpers shared by the models."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import DateTime
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

#: The hospital's time zone: days typed in filters and hours shown are Geneva's.
ZURICH = ZoneInfo("Europe/Zurich")


def utcnow() -> datetime:
    return datetime.now(UTC)


def zurich_midnight(day: date) -> datetime:
    """The moment ``day`` begins in Geneva, in UTC (a filter's day boundary)."""
    return datetime.combine(day, time.min, tzinfo=ZURICH).astimezone(UTC)


def contains_pattern(term: str) -> str:
    """A LIKE pattern matching ``term`` anywhere, its ``%``, ``_`` and ``\\`` taken literally
    (use with ``escape="\\"``)."""
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class UTCDateTime(TypeDecorator[datetime]):
    """An aware datetime stored in UTC on every database.

    SQLite keeps no offset, so values are normalised to UTC on the way in and marked UTC on the
    way out; a naive value is a bug in the caller and is refused.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise ValueError("UTCDateTime needs an aware datetime")
        utc: datetime = value.astimezone(UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)  # noqa: S101 - the column only holds datetimes
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
