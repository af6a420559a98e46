"""The audit trail as CSV: one line per event, newest first, with every cell a spreadsheet
would take as a formula neutralised (CSV injection). The rows come from
``app/audit/queries.py``'s ``export_rows``."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

from app.audit.queries import utc_text

CSV_COLUMNS = ("id", "time", "actor", "action", "target", "patient", "outcome", "rule",
               "request_id", "details", "hash")
#: A cell starting with one of these is a formula to a spreadsheet (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralise(cell: str) -> str:
    """A leading apostrophe on a cell a spreadsheet would take as a formula."""
    return "'" + cell if cell.startswith(_FORMULA_START) else cell


def csv_cells(row: Any) -> list[str]:
    values = [
        str(row.id), utc_text(row.time), row.actor, row.action, row.target or "",
        row.patient or "", row.outcome, row.rule or "", row.request_id or "",
        json.dumps(row.details or {}, ensure_ascii=False, sort_keys=True), row.hash,
    ]
    return [neutralise(value) for value in values]


def csv_lines(rows: Iterator[Any]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    yield buffer.getvalue()
    for row in rows:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow(csv_cells(row))
        yield buffer.getvalue()
