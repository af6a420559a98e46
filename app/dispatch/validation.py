"""Parse and validate the DPI's JSON into typed values, naming every bad field.

Nothing here touches the database: a request is checked whole before anything is stored.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, TypeVar

from app.gln import is_valid_gln
from app.models.base import (
    EARLIEST_MOMENT,
    HIGHEST_OFFSET,
    LATEST_MOMENT,
    LOWEST_OFFSET,
    ZURICH,
    storable_moment,
)
from app.states import Category, Encounter, GivenBy
from app.text import has_control

T = TypeVar("T")

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]*")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_DATETIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?(Z|[+-][0-9]{2}:[0-9]{2})"
)
#: The oldest birth date a living patient can have (the oldest people ever lived about 122 years).
EARLIEST_BIRTH_DATE = date(1880, 1, 1)
BIRTH_DATE_RANGE = f"must be from {EARLIEST_BIRTH_DATE.isoformat()} to today"
PDF_MAGIC = b"%PDF-"
PATIENT_ID_MAX = 64  # as in the patients table
DOCUMENT_ID_MAX = 128  # as in the documents table


def _offset_text(offset: Any) -> str:
    hours, rest = divmod(abs(int(offset.total_seconds())), 3600)
    return f"{'-' if offset.total_seconds() < 0 else '+'}{hours:02d}:{rest // 60:02d}"


_MOMENT_RANGE = (
    f"must lie from {EARLIEST_MOMENT.year} to {LATEST_MOMENT.year - 1} (UTC), with an offset "
    f"from {_offset_text(LOWEST_OFFSET)} to {_offset_text(HIGHEST_OFFSET)}"
)


class ValidationFailed(Exception):
    """422: well-formed JSON whose fields are wrong."""

    def __init__(self, errors: list[dict[str, str]], detail: str | None = None) -> None:
        super().__init__(detail or "The request has invalid fields.")
        self.errors = errors
        self.detail = detail or "The request has invalid fields."


class UnsupportedContent(Exception):
    """415: the content is not a PDF."""


class ContentTooLarge(Exception):
    """413: the content is larger than MAX_DOCUMENT_BYTES."""


def canonical_hash(body: Any) -> str:
    """SHA-256 of the body in canonical JSON (sorted keys, no spaces): replays compare equal."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class _Reader:
    """Reads fields from a JSON object, collecting one error per bad field."""

    def __init__(self, data: Any, prefix: str = "") -> None:
        self.prefix = prefix
        self.errors: list[dict[str, str]] = []
        #: Set on a nested object that is missing or not an object: its one error is said,
        #: and its fields are not reported again one by one.
        self.silent = False
        self.data: dict[str, Any] = data if isinstance(data, dict) else {}
        if not isinstance(data, dict):
            self.fail("", "must be a JSON object")

    def name(self, field: str) -> str:
        if self.prefix and field:
            return f"{self.prefix}.{field}"
        return field or self.prefix or "body"

    def fail(self, field: str, message: str) -> None:
        if not self.silent:
            self.errors.append({"field": self.name(field), "message": message})

    def reject_unknown(self, allowed: set[str]) -> None:
        for key in sorted(set(self.data) - allowed):
            self.fail(key, "is not a known field")

    def _get(self, field: str, required: bool) -> tuple[bool, Any]:
        if field not in self.data:
            if required:
                self.fail(field, "is required")
            return False, None
        return True, self.data[field]

    def text(
        self,
        field: str,
        max_len: int,
        required: bool = True,
        pattern: re.Pattern[str] | None = None,
    ) -> str | None:
        present, value = self._get(field, required)
        if not present:
            return None
        if value is None and not required:
            return None
        if not isinstance(value, str):
            self.fail(field, "must be a string")
            return None
        if not value.strip():
            self.fail(field, "must not be blank")
            return None
        if len(value) > max_len:
            self.fail(field, f"must be at most {max_len} characters")
            return None
        if has_control(value, lines=True):
            self.fail(field, "must not contain control characters")
            return None
        if pattern is not None and not pattern.fullmatch(value):
            self.fail(field, "has characters that are not allowed")
            return None
        return value

    def boolean(self, field: str, required: bool = True, default: bool = False) -> bool:
        present, value = self._get(field, required)
        if not present:
            return default
        if not isinstance(value, bool):
            self.fail(field, "must be true or false")
            return default
        return value

    def choice(self, field: str, parse: Callable[[str], T], allowed: str) -> T | None:
        present, value = self._get(field, True)
        if not present:
            return None
        try:
            if not isinstance(value, str):
                raise ValueError
            return parse(value)
        except ValueError:
            self.fail(field, f"must be one of: {allowed}")
            return None

    def day(self, field: str) -> date | None:
        """A birth date: a real day, from EARLIEST_BIRTH_DATE to today in Geneva."""
        present, value = self._get(field, True)
        if not present:
            return None
        if not isinstance(value, str) or not _DATE.fullmatch(value):
            self.fail(field, "must be a date (YYYY-MM-DD)")
            return None
        try:
            day = date.fromisoformat(value)
        except ValueError:
            self.fail(field, "is not a real date")
            return None
        if not EARLIEST_BIRTH_DATE <= day <= datetime.now(UTC).astimezone(ZURICH).date():
            self.fail(field, BIRTH_DATE_RANGE)
            return None
        return day

    def moment(self, field: str, missing_message: str) -> datetime | None:
        present, value = self._get(field, False)
        if not present or value is None:
            self.fail(field, missing_message)
            return None
        if not isinstance(value, str) or not _DATETIME.fullmatch(value):
            self.fail(field, "must be an ISO 8601 date-time with an offset")
            return None
        try:
            when = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            self.fail(field, "is not a real date-time")
            return None
        if not storable_moment(when):
            self.fail(field, _MOMENT_RANGE)
            return None
        return when

    def nested(self, field: str) -> _Reader:
        present, value = self._get(field, True)
        reader = _Reader(value if present else {}, self.name(field))
        if not present:
            reader.errors.clear()  # the parent already said it is required
        reader.silent = not present or not isinstance(value, dict)
        return reader

    def absorb(self, other: _Reader) -> None:
        self.errors.extend(other.errors)


@dataclass(frozen=True)
class PatientIn:
    id: str
    family_name: str
    given_name: str
    birth_date: date
    deceased: bool


@dataclass(frozen=True)
class DocumentIn:
    document_id: str
    patient: PatientIn
    encounter: Encounter
    recipients: tuple[str, ...] | None
    type: str
    title: str
    service: str
    author: str
    signed_at: datetime
    sensitive: bool
    third_party_data: bool
    category: Category
    content_type: str
    content: bytes
    request_hash: str


DOCUMENT_FIELDS = {
    "document_id", "patient", "encounter", "recipients", "type", "title", "service", "author",
    "signed_at", "sensitive", "third_party_data", "category", "content_type", "content",
}


def _recipients(reader: _Reader) -> tuple[str, ...] | None:
    present, value = reader._get("recipients", False)
    if not present or value is None:
        return None
    if not isinstance(value, list) or not value:
        reader.fail("recipients", "must be a non-empty list of GLNs")
        return None
    if len(value) > 50:
        reader.fail("recipients", "must have at most 50 GLNs")
        return None
    ok = True
    for index, gln in enumerate(value):
        if not is_valid_gln(gln):
            reader.fail(f"recipients[{index}]", "is not a valid GLN (13 digits, GS1 check digit)")
            ok = False
    if ok and len(set(value)) != len(value):
        reader.fail("recipients", "must not list a GLN twice")
        ok = False
    return tuple(value) if ok else None


def parse_patient(
    reader: _Reader, with_id: bool
) -> tuple[str | None, str | None, str | None, date | None]:
    patient_id = reader.text("id", PATIENT_ID_MAX, pattern=_ID) if with_id else None
    family = reader.text("family_name", 200)
    given = reader.text("given_name", 200)
    birth = reader.day("birth_date")
    return patient_id, family, given, birth


def _base64_length(size: int) -> int:
    """The length of the base64 text (with padding) of ``size`` bytes."""
    return 4 * ((size + 2) // 3)


def parse_document(body: Any, max_bytes: int) -> DocumentIn:
    """Validate a ``POST /api/v1/documents`` body: 422, then 415, then 413 on failure."""
    reader = _Reader(body)
    if reader.errors:
        raise ValidationFailed(reader.errors)
    reader.reject_unknown(DOCUMENT_FIELDS)
    document_id = reader.text("document_id", DOCUMENT_ID_MAX, pattern=_ID)

    patient_reader = reader.nested("patient")
    patient_reader.reject_unknown({"id", "family_name", "given_name", "birth_date", "deceased"})
    patient_id, family, given, birth = parse_patient(patient_reader, with_id=True)
    deceased = patient_reader.boolean("deceased", required=False)
    reader.absorb(patient_reader)

    encounter = reader.choice("encounter", Encounter, "outpatient, inpatient")
    recipients = _recipients(reader)
    doc_type = reader.text("type", 64)
    title = reader.text("title", 500)
    service = reader.text("service", 64)
    author = reader.text("author", 200)
    signed_at = reader.moment(
        "signed_at", "is required: documents are published only after signature in the DPI"
    )
    sensitive = reader.boolean("sensitive")
    third_party = reader.boolean("third_party_data")
    category = reader.choice("category", Category, "report, follow_up_note")
    content_type = reader.text("content_type", 64)
    # No length limit on the text here: a content too large is a 413, not a field error. Base64
    # text longer than that of MAX_DOCUMENT_BYTES is not even decoded.
    content_text = reader.text("content", 2**62)
    content: bytes | None = None
    too_large = False
    if content_text is not None:
        if len(content_text) > _base64_length(max_bytes):
            too_large = True
        else:
            try:
                content = base64.b64decode(content_text, validate=True)
            except (binascii.Error, ValueError):
                reader.fail("content", "is not valid base64")
    if reader.errors:
        raise ValidationFailed(reader.errors)
    if content_type != "application/pdf":
        raise UnsupportedContent("content_type must be application/pdf")
    if too_large or content is None or len(content) > max_bytes:
        raise ContentTooLarge(f"the document is larger than {max_bytes} bytes")
    if not content.startswith(PDF_MAGIC):
        raise UnsupportedContent("the content is not a PDF document")
    return DocumentIn(
        document_id=str(document_id),
        patient=PatientIn(str(patient_id), str(family), str(given), birth, deceased),  # type: ignore[arg-type]
        encounter=encounter,  # type: ignore[arg-type]
        recipients=recipients,
        type=str(doc_type),
        title=str(title),
        service=str(service),
        author=str(author),
        signed_at=signed_at,  # type: ignore[arg-type]
        sensitive=sensitive,
        third_party_data=third_party,
        category=category,  # type: ignore[arg-type]
        content_type="application/pdf",
        content=content,
        request_hash=canonical_hash(body),
    )


@dataclass(frozen=True)
class ConsentIn:
    electronic_sending: bool
    designation: str
    given_by: GivenBy
    representative_name: str | None
    minor_agreement: bool
    recorded_by: str
    family_name: str
    given_name: str
    birth_date: date


CONSENT_FIELDS = {
    "electronic_sending", "designation", "given_by", "representative_name", "minor_agreement",
    "recorded_by", "patient",
}


def _designation(value: str) -> str:
    if value != "treating_doctor":
        raise ValueError
    return value


def parse_consent(body: Any) -> ConsentIn:
    reader = _Reader(body)
    if reader.errors:
        raise ValidationFailed(reader.errors)
    reader.reject_unknown(CONSENT_FIELDS)
    sending = reader.boolean("electronic_sending")
    designation = reader.choice("designation", _designation, "treating_doctor")
    given_by = reader.choice("given_by", GivenBy, "patient, representative")
    representative = reader.text("representative_name", 200, required=False)
    agreement = reader.boolean("minor_agreement", required=False)
    recorded_by = reader.text("recorded_by", 200)
    patient_reader = reader.nested("patient")
    patient_reader.reject_unknown({"family_name", "given_name", "birth_date"})
    _, family, given, birth = parse_patient(patient_reader, with_id=False)
    reader.absorb(patient_reader)
    if reader.errors:
        raise ValidationFailed(reader.errors)
    return ConsentIn(
        electronic_sending=sending,
        designation=str(designation),
        given_by=given_by,  # type: ignore[arg-type]
        representative_name=representative,
        minor_agreement=agreement,
        recorded_by=str(recorded_by),
        family_name=str(family),
        given_name=str(given),
        birth_date=birth,  # type: ignore[arg-type]
    )


def parse_retraction(body: Any) -> str:
    reader = _Reader(body)
    if reader.errors:
        raise ValidationFailed(reader.errors)
    reader.reject_unknown({"reason"})
    reason = reader.text("reason", 1000)
    if reader.errors:
        raise ValidationFailed(reader.errors)
    return str(reason)


def parse_patient_patch(body: Any) -> None:
    reader = _Reader(body)
    if reader.errors:
        raise ValidationFailed(reader.errors)
    reader.reject_unknown({"deceased"})
    present, value = reader._get("deceased", True)
    if present and value is not True:
        reader.fail("deceased", "must be true: the API records a death and cannot undo one")
    if reader.errors:
        raise ValidationFailed(reader.errors)


def is_valid_id(value: object, longest: int = DOCUMENT_ID_MAX) -> bool:
    return (
        isinstance(value, str)
        and len(value) <= longest
        and _ID.fullmatch(value) is not None
    )


def check_path_id(value: str, field: str) -> None:
    """A document or patient identifier from the path, as strict as in a body."""
    longest = PATIENT_ID_MAX if field == "patient_id" else DOCUMENT_ID_MAX
    if len(value) > longest or not _ID.fullmatch(value) or has_control(value, lines=True):
        raise ValidationFailed([{"field": field, "message": "is not a valid identifier"}])


def check_path_gln(value: str) -> None:
    if not is_valid_gln(value):
        raise ValidationFailed(
            [{"field": "gln", "message": "is not a valid GLN (13 digits, GS1 check digit)"}]
        )
