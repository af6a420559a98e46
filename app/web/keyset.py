"""Keyset pagination: the cursor of a list ordered by (a moment, a row id), newest first.

The cursor is opaque and URL-safe; a cursor that does not decode is a bad request (400), never
a 500 and never a silent first page.
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime

from flask import abort


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
