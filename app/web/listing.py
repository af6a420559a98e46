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
