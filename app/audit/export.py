"""The audit trail as the desk reads it: filters, keyset pages, and exports as CSV and as a FHIR
R4 Bundle of AuditEvent resources following IHE BALP (Basic Audit Log Patterns).

One set of filters serves the page and both exports. Exports stream: events are read by keyset
(id, newest first) in batches of plain rows, never all at once, and stop at ``EXPORT_LIMIT``.
An export is bounded by the last event recorded when it was asked for (``through``), so that its
count, recorded in its own ``audit.exported`` event before the first byte goes out, is exactly
what the file holds.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from flask import Flask
from sqlalchemy import ColumnElement, Select, func, select

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
    from app.audit.trail import VERIFIED

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


def _utc_text(value: datetime) -> str:
    if value.tzinfo is None:  # SQLite hands plain rows back without their zone: stored as UTC
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


# --- CSV --------------------------------------------------------------------------------------

CSV_COLUMNS = ("id", "time", "actor", "action", "target", "patient", "outcome", "rule",
               "request_id", "details", "hash")
#: A cell starting with one of these is a formula to a spreadsheet (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralise(cell: str) -> str:
    """A leading apostrophe on a cell a spreadsheet would take as a formula."""
    return "'" + cell if cell.startswith(_FORMULA_START) else cell


def csv_cells(row: Any) -> list[str]:
    values = [
        str(row.id), _utc_text(row.time), row.actor, row.action, row.target or "",
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


# --- FHIR (R4, IHE BALP) ----------------------------------------------------------------------

BALP = "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit."
DCM = "http://dicom.nema.org/resources/ontology/DCM"
AUDIT_EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
RESTFUL = "http://hl7.org/fhir/restful-interaction"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
SECURITY_ROLE = "http://terminology.hl7.org/CodeSystem/extra-security-role-type"

#: Identifier systems. GLN: the GS1 OID used by the Swiss EPR; the others are Relais' own.
GLN_SYSTEM = "urn:oid:2.51.1.3"
PATIENT_SYSTEM = "urn:relais:dpi:patient-id"
DOCUMENT_SYSTEM = "urn:relais:dpi:document-id"
TARGET_SYSTEM = "urn:relais:audit-target"
ACTOR_SYSTEMS = {"doctor": GLN_SYSTEM, "staff": "urn:relais:staff-login",
                 "desk": "urn:relais:staff-login", "api": "urn:relais:api-client"}
OBSERVER = "Relais"


@dataclass(frozen=True)
class Pattern:
    """One BALP pattern: its profile (``Patient`` variant when a patient is concerned), the
    event type and subtype, and the FHIR action code (C/R/U/D/E)."""

    profile: str
    patient_profile: str | None
    type: tuple[str, str, str]
    subtype: tuple[str, str, str]
    action: str
    query: bool = False


_REST = (AUDIT_EVENT_TYPE, "rest", "Restful Operation")
CREATE = Pattern("Create", "PatientCreate", _REST, (RESTFUL, "create", "create"), "C")
READ = Pattern("Read", "PatientRead", _REST, (RESTFUL, "read", "read"), "R")
UPDATE = Pattern("Update", "PatientUpdate", _REST, (RESTFUL, "update", "update"), "U")
DELETE = Pattern("Delete", "PatientDelete", _REST, (RESTFUL, "delete", "delete"), "D")
QUERY = Pattern("Query", "PatientQuery", _REST, (RESTFUL, "search-type", "search-type"), "E",
                query=True)
_AUTHENTICATION = (DCM, "110114", "User Authentication")
LOGIN = Pattern("Login", None, _AUTHENTICATION, (DCM, "110122", "Login"), "E")
LOGOUT = Pattern("Logout", None, _AUTHENTICATION, (DCM, "110123", "Logout"), "E")

#: THE table: each Relais action and the closest BALP pattern. An action missing here (a new
#: one) is placed by its verb (``_by_verb``).
ACTION_PATTERNS: dict[str, Pattern] = {
    # the DPI API
    "api.rejected": CREATE,  # a refused call of the DPI (nearly all of them write)
    "api.denied": CREATE,  # a call outside the client's scopes, refused the same way
    "api_client.created": CREATE,
    "api_client.revoked": DELETE,
    "document.received": CREATE,
    "document.replayed": CREATE,
    "document.retracted": DELETE,
    "document.status_read": READ,
    "documents.keys_rotated": UPDATE,
    "patient.deceased": UPDATE,
    "consent.recorded": CREATE,
    "consent.revoked": UPDATE,
    "doctors.searched": QUERY,
    # dispatch
    "delivery.decided": CREATE,
    "delivery.released": UPDATE,
    "delivery.cancelled": UPDATE,
    "delivery.read": READ,
    "delivery.marked_read": UPDATE,
    "delivery.marked_unread": UPDATE,
    "delivery.reported_not_my_patient": UPDATE,
    # the doctor's workspace
    "document.viewed": READ,
    "document.downloaded": READ,
    "documents.zip_downloaded": READ,
    "document.integrity_failed": READ,
    "profile.updated": UPDATE,
    "profile.email_change_requested": UPDATE,
    # sign-in
    "auth.signed_in": LOGIN,
    "auth.failed": LOGIN,
    "auth.refused": LOGIN,
    "auth.hin_rejected": LOGIN,
    "auth.sms_failed": LOGIN,
    "auth.code_resent": LOGIN,
    "staff.totp_checked": LOGIN,
    "staff.recovery_code_used": LOGIN,
    "auth.signed_out": LOGOUT,
    "auth.locked": UPDATE,
    "auth.unlocked": UPDATE,
    "auth.password_changed": UPDATE,
    "hin.identity_linked": CREATE,
    # accounts (desk, CLI)
    "doctor.created": CREATE,
    "doctor.created_pending": CREATE,
    "doctor.enrolled": CREATE,
    "doctor.activated": UPDATE,
    "doctor.deactivated": UPDATE,
    "doctor.reactivated": UPDATE,
    "doctor.password_reset": UPDATE,
    "doctor.mobile_changed": UPDATE,
    "desk.phone_code_sent": CREATE,
    "desk.phone_code_failed": CREATE,
    "desk.phone_code_checked": READ,
    "desk.enrolment_refused": CREATE,
    "staff.created": CREATE,
    "staff.deactivated": UPDATE,
    "staff.totp_reset": UPDATE,
    "staff.totp_keys_rotated": UPDATE,
    "staff.recovery_codes_issued": CREATE,
    # the trail itself
    "audit.verified": QUERY,
    "audit.exported": QUERY,
}

_VERBS = {
    CREATE: ("created", "received", "recorded", "enrolled", "issued", "sent", "added"),
    READ: ("viewed", "downloaded", "read", "opened", "printed"),
    DELETE: ("deleted", "removed", "retracted", "revoked"),
    QUERY: ("searched", "listed", "exported", "queried"),
}


def _by_verb(action: str) -> Pattern:
    verb = action.rpartition(".")[2]
    for pattern, verbs in _VERBS.items():
        if verb in verbs:
            return pattern
    return UPDATE


def pattern_for(action: str) -> Pattern:
    return ACTION_PATTERNS.get(action) or _by_verb(action)


#: Relais outcomes as FHIR AuditEvent outcome codes (0 success, 4 minor, 8 serious failure);
#: 12 (major failure) for a broken chain.
OUTCOMES = {"success": "0", "rejected": "4", "failure": "8"}


def outcome_code(action: str, outcome: str) -> str:
    from app.audit.trail import VERIFIED

    if action == VERIFIED and outcome == "failure":
        return "12"
    return OUTCOMES.get(outcome, "8")


def _coding(system: str, code: str, display: str) -> dict[str, str]:
    return {"system": system, "code": code, "display": display}


def _agents(actor: str) -> list[dict[str, Any]]:
    kind, _, name = actor.partition(":")
    relais = {"type": {"coding": [_coding(DCM, "110152", "Destination Role ID")]},
              "who": {"display": OBSERVER}, "requestor": False}
    system = ACTOR_SYSTEMS.get(kind)
    who: dict[str, Any] = ({"identifier": {"system": system, "value": name}, "display": actor}
                           if system and name else {"display": actor})
    if kind in ("doctor", "staff", "desk"):
        # A person, through a web browser (the client).
        user = {"type": {"coding": [_coding(SECURITY_ROLE, "humanuser", "human user")]},
                "who": who, "requestor": True}
        browser = {"type": {"coding": [_coding(DCM, "110153", "Source Role ID")]},
                   "who": {"display": "web browser"}, "requestor": False}
        return [user, browser, relais]
    # The DPI (an API client), or Relais itself (cli, system): the client is the requestor.
    client = {"type": {"coding": [_coding(DCM, "110153", "Source Role ID")]}, "who": who,
              "requestor": True}
    return [client, relais]


def _detail(name: str, value: Any) -> dict[str, str]:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False,
                                                            sort_keys=True)
    return {"type": name, "valueString": text}


def _entities(row: Any, pattern: Pattern) -> list[dict[str, Any]]:
    details = [_detail(key, value) for key, value in sorted((row.details or {}).items())]
    details += [_detail(name, value) for name, value in
                (("rule", row.rule), ("request_id", row.request_id), ("hash", row.hash))
                if value]
    target: str = row.target or ""
    kind, _, value = target.partition(":")
    what: dict[str, Any]
    if kind == "document" and value:
        what = {"type": "DocumentReference",
                "identifier": {"system": DOCUMENT_SYSTEM, "value": value}}
    elif target:
        what = {"identifier": {"system": TARGET_SYSTEM, "value": target}}
    else:
        what = {"display": OBSERVER}
    data: dict[str, Any] = {
        "what": what,
        "type": _coding(ENTITY_TYPE, "2", "System Object"),
        "role": _coding(OBJECT_ROLE, "4", "Domain Resource"),
    }
    if details:
        data["detail"] = details
    entities = [data]
    if pattern.query:
        query = json.dumps(row.details or {}, ensure_ascii=False, sort_keys=True)
        entities.append({
            "type": _coding(ENTITY_TYPE, "2", "System Object"),
            "role": _coding(OBJECT_ROLE, "24", "Query"),
            "query": base64.b64encode(query.encode()).decode(),
        })
    if row.patient:
        entities.append({
            "what": {"type": "Patient",
                     "identifier": {"system": PATIENT_SYSTEM, "value": row.patient}},
            "type": _coding(ENTITY_TYPE, "1", "Person"),
            "role": _coding(OBJECT_ROLE, "1", "Patient"),
        })
    return entities


def audit_event_resource(row: Any) -> dict[str, Any]:
    """One stored event as a FHIR R4 AuditEvent following its BALP pattern."""
    pattern = pattern_for(row.action)
    profile = pattern.patient_profile if row.patient and pattern.patient_profile else (
        pattern.profile)
    resource: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": str(row.id),
        "meta": {"profile": [BALP + profile]},
        "type": _coding(*pattern.type),
        "subtype": [_coding(*pattern.subtype), _coding("urn:relais:audit-action", row.action,
                                                       row.action)],
        "action": pattern.action,
        "recorded": _utc_text(row.time),
        "outcome": outcome_code(row.action, row.outcome),
        "agent": _agents(row.actor),
        "source": {"site": OBSERVER, "observer": {"display": OBSERVER},
                   "type": [_coding(SOURCE_TYPE, "4", "Application Server")]},
        "entity": _entities(row, pattern),
    }
    if row.outcome != "success":
        resource["outcomeDesc"] = row.outcome
    return resource


def bundle_chunks(rows: Iterator[Any], now: datetime) -> Iterator[str]:
    """A Bundle (type collection) streamed in pieces of JSON text (no ``entry`` when empty:
    FHIR JSON has no empty arrays)."""
    head = {"resourceType": "Bundle", "id": str(uuid.uuid4()), "type": "collection",
            "timestamp": _utc_text(now)}
    yield json.dumps(head, ensure_ascii=False)[:-1]
    empty = True
    for row in rows:
        entry = {"fullUrl": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, 'relais:' + row.hash)}",
                 "resource": audit_event_resource(row)}
        yield (',"entry":[' if empty else ",") + json.dumps(entry, ensure_ascii=False)
        empty = False
    yield "}" if empty else "]}"
