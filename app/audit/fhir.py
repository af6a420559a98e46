"""The audit trail as FHIR R4: each event an AuditEvent resource following its IHE BALP (Basic
Audit Log Patterns) pattern, streamed as a Bundle of type collection. The rows come from
``app/audit/queries.py``'s ``export_rows``."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.audit.queries import utc_text
from app.audit.trail import VERIFIED

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
        "recorded": utc_text(row.time),
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
            "timestamp": utc_text(now)}
    yield json.dumps(head, ensure_ascii=False)[:-1]
    empty = True
    for row in rows:
        entry = {"fullUrl": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, 'relais:' + row.hash)}",
                 "resource": audit_event_resource(row)}
        yield (',"entry":[' if empty else ",") + json.dumps(entry, ensure_ascii=False)
        empty = False
    yield "}" if empty else "]}"
