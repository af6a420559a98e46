"""Telling a doctor by email that her sign-in is being changed, or was changed, at the desk.

Through the outbox (``app.notify``), in the transaction of the request or of the change, to the
address known before the change (fixed on the row, so a later change of address does not move
it). The email names the kind of change only: no code, no password, no number, no patient.
"""

from __future__ import annotations

import secrets
from typing import Final

from app.models import Doctor, Notification
from app.notify.outbox import queue_email

#: The changes an email can name (the last part of its outbox key, read by app.notify.mail).
CHANGES: Final = ("enrolment", "password_reset", "mobile_change")

REQUESTED: Final = "change_requested"
CHANGED: Final = "account_changed"


def tell_doctor(doctor: Doctor, kind: str, change: str, *, address: str | None,
                reference: str | None = None) -> Notification | None:
    """Queue the email; None when the doctor has no address on file (nobody to tell)."""
    if change not in CHANGES or kind not in (REQUESTED, CHANGED):
        raise ValueError(f"no such account email: {kind} {change}")
    if not address:
        return None
    reference = reference or secrets.token_hex(8)
    return queue_email(doctor, kind, f"{kind}:{doctor.id}:{reference}:{change}",
                       to_address=address)
