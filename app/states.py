"""The states and vocabularies that the tables, the dispatch rules, notifications and the pages
share: a delivery's status, the rule recorded with it, a doctor's account state, the kinds of
encounter and document, who gave a consent.

They live here, below both ``app.models`` and ``app.dispatch``, so that a table can name its
states without importing a service, and the pure policy can name them without importing a
table. The labels people read for them are in ``app/labels.py``.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "NEEDS_A_PERSON",
    "VISIBLE_TO_DOCTOR",
    "Category",
    "DoctorState",
    "Encounter",
    "GivenBy",
    "Rule",
    "Status",
]


class Status(StrEnum):
    """Life cycle of one delivery (one document to one doctor), as the DPI API reports it."""

    HELD = "held"
    DELIVERED = "delivered"
    READ = "read"
    BLOCKED = "blocked"
    CANCELLED = "cancelled"
    RETRACTED = "retracted"


#: The deliveries a doctor sees in Relais (lists, counts, notifications): delivered or read;
#: never held, blocked, cancelled, nor retracted.
VISIBLE_TO_DOCTOR: frozenset[str] = frozenset({Status.DELIVERED.value, Status.READ.value})
#: The deliveries that wait for hospital staff on the worklist (besides those a doctor reported
#: "pas mon patient"): the letter must go by post or to the right doctor.
NEEDS_A_PERSON: frozenset[str] = frozenset({Status.BLOCKED.value, Status.CANCELLED.value})


class Rule(StrEnum):
    """The rule recorded with a delivery; the values are the API's ``rule`` strings."""

    UNSIGNED = "unsigned"
    RECIPIENT_UNKNOWN = "recipient_unknown"
    RECIPIENT_INACTIVE = "recipient_inactive"
    PATIENT_DECEASED = "patient_deceased"
    NO_CONSENT = "no_consent"
    THIRD_PARTY_DATA = "third_party_data"
    EXCLUDED_CATEGORY = "excluded_category"
    EXCLUDED_SERVICE = "excluded_service"
    SENSITIVE_DELAY = "sensitive_delay"
    OK = "ok"
    # Never returned by this module: the service records it when the hospital withdraws a letter.
    RETRACTED = "retracted"


class DoctorState(StrEnum):
    """Account state of a recipient doctor. A sign-in lockout is deliberately not a state here:
    it is a temporary sign-in measure and must never stop letters."""

    PENDING = "pending"
    ACTIVE = "active"
    DEACTIVATED = "deactivated"


class Encounter(StrEnum):
    OUTPATIENT = "outpatient"
    INPATIENT = "inpatient"


class Category(StrEnum):
    # Facts carry the category as a plain ``str`` because the DPI may add categories; this enum
    # names the ones known today.
    REPORT = "report"
    FOLLOW_UP_NOTE = "follow_up_note"


class GivenBy(StrEnum):
    PATIENT = "patient"
    REPRESENTATIVE = "representative"
