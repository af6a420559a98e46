"""Column types and helpers shared by the models."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import DateTime
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

#: The hospital's time zone: days typed in filters and hours shown are Geneva's.
ZURICH = ZoneInfo("Europe/Zurich")


#: The moments Relais stores and computes with. A letter's hold, its retention and a list's day
#: boundaries are added to them, so they stay far from Python's calendar edges (years 1 and 9999,
#: where adding a day or turning an offset into UTC overflows). Anything outside is refused as
#: input: it is no letter's, no consent's and no cursor's moment.
EARLIEST_MOMENT = datetime(1900, 1, 1, tzinfo=UTC)
LATEST_MOMENT = datetime(2200, 1, 1, tzinfo=UTC)
#: The offsets in use on Earth: UTC-12:00 (Baker Island) to UTC+14:00 (Line Islands).
LOWEST_OFFSET, HIGHEST_OFFSET = timedelta(hours=-12), timedelta(hours=14)


def storable_moment(when: datetime) -> bool:
    """Whether an aware ``when`` has a real offset and lies within the stored range."""
    offset = when.utcoffset()
    if offset is None or not LOWEST_OFFSET <= offset <= HIGHEST_OFFSET:
        return False
    # Compared without converting: the conversion itself overflows at the calendar's edges.
    naive_utc_bounds = (EARLIEST_MOMENT.replace(tzinfo=None) + offset,
                        LATEST_MOMENT.replace(tzinfo=None) + offset)
    return naive_utc_bounds[0] <= when.replace(tzinfo=None) < naive_utc_bounds[1]


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
