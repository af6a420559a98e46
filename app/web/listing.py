"""What list pages read from the query string: keyset cursors and days.

A list ordered by (a moment, a row id), newest first, pages with an opaque, URL-safe cursor. A
cursor or a day that does not parse is a bad request (400), never a 500 and never a silently
ignored filter.
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, date, datetime, timedelta

from flask import abort, request

from app.models.base import EARLIEST_MOMENT, LATEST_MOMENT, storable_moment

#: The largest row ids the database holds: INTEGER keys (patients, doctors...) and BIGINT ones
#: (deliveries, audit events). A larger number names no row, and the database would fail on it
#: (PostgreSQL refuses to compare an INTEGER with it; SQLite's driver overflows past 64 bits).
INT_ID_MAX = 2**31 - 1
BIGINT_ID_MAX = 2**63 - 1


def row_id(raw: str | None, largest: int = INT_ID_MAX) -> int | None:
    """``raw`` as a row id (ASCII digits up to ``largest``), else None."""
    # isascii: str.isdigit() also takes "²" and other digits that int() refuses.
    if raw is None or not (raw.isascii() and raw.isdigit()) or len(raw) > 19:
        return None
    value = int(raw)
    return value if value <= largest else None


def encode_cursor(when: datetime, row_id: int) -> str:
    raw = f"{when.astimezone(UTC).isoformat()}|{row_id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, largest: int = BIGINT_ID_MAX) -> tuple[datetime, int]:
    """The (moment, row id) a cursor names; 400 unless it is one this list could have given:
    a moment within the stored range and an id the database can hold (a forged cursor at year
    1, or at id 2**70, would otherwise overflow in the driver)."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, _, raw_id = raw.partition("|")
        when = datetime.fromisoformat(stamp)
        found = row_id(raw_id, largest)
        if when.tzinfo is None or found is None or not storable_moment(when):
            raise ValueError(cursor)
        return when, found
    except (ValueError, binascii.Error, UnicodeDecodeError):
        abort(400)


#: The days a filter may name: those whose midnight in Geneva lies within the stored range.
EARLIEST_DAY = EARLIEST_MOMENT.date() + timedelta(days=1)
LATEST_DAY = LATEST_MOMENT.date() - timedelta(days=2)


def date_arg(name: str) -> date | None:
    """The query string's ``name`` as a day (``YYYY-MM-DD``), None when empty."""
    raw = request.args.get(name, "").strip()
    if not raw:
        return None
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        abort(400)
    if not EARLIEST_DAY <= day <= LATEST_DAY:
        abort(400)
    return day
