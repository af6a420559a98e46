"""What list pages read from the query string: keyset cursors and days.

A list ordered by (a moment, a row id), newest first, pages with an opaque, URL-safe cursor. A
cursor or a day that does not parse is a bad request (400), never a 500 and never a silently
ignored filter.
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, date, datetime

from flask import abort, request

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


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, _, raw_id = raw.partition("|")
        when = datetime.fromisoformat(stamp)
        if when.tzinfo is None or not raw_id.isdigit():
            raise ValueError(cursor)
        return when, int(raw_id)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        abort(400)


def date_arg(name: str) -> date | None:
    """The query string's ``name`` as a day (``YYYY-MM-DD``), None when empty."""
    raw = request.args.get(name, "").strip()
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        abort(400)
