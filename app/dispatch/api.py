"""DPI API v1: thin handlers that parse, authorise, call the dispatch operations and answer.

Each request is one transaction. A rejected request is rolled back whole (nothing partial is
stored) and its rejection is audited in a transaction of its own. Each view names the scopes
that allow it (``@api_call(Scope...)``); a client holding none of them is refused with 403
before anything of the request is read.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from functools import wraps
from pathlib import Path
from typing import Any, ParamSpec

from flask import Blueprint, Response, current_app, g, request
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from werkzeug.exceptions import BadRequest, HTTPException, RequestEntityTooLarge

from app.audit import Actor, record
from app.auth.limits import (
    LimitStorageError,
    unavailable_problem,
    within_unauthenticated_api_budget,
)
from app.auth.session import public
from app.dispatch import directory
from app.dispatch.clients import authenticate, missing_scope
from app.dispatch.consent import record_consent, record_death, revoke_consent
from app.dispatch.documents import document_for
from app.dispatch.facts import NotFound, patient_by_dpi_id
from app.dispatch.ingest import Conflict, NoRecipient, Taken, ingest
from app.dispatch.representations import (
    consent_out,
    doctor_out,
    document_out,
    event_out,
    patient_out,
)
from app.dispatch.retraction import retract
from app.dispatch.validation import (
    ContentTooLarge,
    UnsupportedContent,
    ValidationFailed,
    check_path_gln,
    check_path_id,
    is_valid_id,
    parse_consent,
    parse_document,
    parse_patient_patch,
    parse_retraction,
)
from app.extensions import db
from app.models import ApiClient, AuditEvent
from app.models.base import utcnow
from app.scopes import Scope
from app.text import without_control
from app.web.problems import problem_response

bp = Blueprint("api", __name__, url_prefix="/api/v1")

P = ParamSpec("P")


LAST_USED_PRECISION = timedelta(minutes=1)

_OPENAPI = Path(__file__).with_name("openapi.json")

#: The scopes each view of this blueprint accepts (any one of them), by endpoint: filled by
#: ``api_call``, read by the tests that hold it to the OpenAPI description.
REQUIRED_SCOPES: dict[str, tuple[str, ...]] = {}


class Malformed(Exception):
    """400: the body is not JSON."""


def _json(body: Any, status: int = 200) -> Response:
    return Response(
        json.dumps(body, ensure_ascii=False), status=status, mimetype="application/json"
    )


def _actor() -> Actor:
    client: ApiClient = g.api_client
    return Actor("api", client.name)


def _not_json(constant: str) -> Any:
    # Python's json module accepts NaN and Infinity, which are not JSON (RFC 8259).
    raise ValueError(f"{constant} is not JSON")


def _raw_body() -> bytes:
    try:
        raw = request.get_data(cache=False)
    except (RequestEntityTooLarge, BadRequest):
        raise  # over MAX_CONTENT_LENGTH (413), or the client went away (werkzeug's 400)
    except Exception as error:  # the WSGI server's own reader failed
        # gunicorn raises its own exceptions (InvalidChunkSize, ChunkMissingTerminator ...)
        # while reading a chunked body whose framing is broken: the client's fault, not ours.
        raise Malformed from error
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    if request.content_length is None and limit is not None and len(raw) >= limit:
        # A chunked body (no Content-Length) is cut at MAX_CONTENT_LENGTH by werkzeug, silently:
        # what was read is only the beginning of something larger.
        raise RequestEntityTooLarge
    return raw


def _body() -> Any:
    try:
        raw = _raw_body()
        body = json.loads(raw.decode("utf-8"), parse_constant=_not_json)
        # "\ud800" escapes decode to lone surrogates, which are no text and cannot be stored.
        json.dumps(body, ensure_ascii=False).encode("utf-8")
        return body
    except RequestEntityTooLarge:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError):
        # RecursionError: nesting deeper than the parser goes is not a body we can take.
        raise Malformed from None


def _rejected(status: int, detail: str | None, errors: list[dict[str, str]] | None) -> Response:
    """Roll back, audit the rejection on its own, answer with a problem."""
    db.session.rollback()
    client = g.get("api_client")
    record(
        Actor("api", client.name) if client is not None else Actor("api", "anonymous"),
        "api.rejected",
        target=g.get("audit_target"),
        outcome="rejected",
        details={
            "status": status,
            "method": request.method,
            "endpoint": request.endpoint or "",
            # Field names may come from the client (unknown fields): bounded in the trail.
            "fields": [without_control(e["field"][:100]) for e in (errors or [])[:50]],
        },
    )
    db.session.commit()
    return problem_response(status, detail, errors)


def _denied(scope: Scope) -> Response:
    """403: the client lacks the scope. Audited like any refusal, and reads nothing of the
    request (no target, no patient): the endpoint tells what was attempted."""
    db.session.rollback()
    record(
        _actor(),
        "api.denied",
        outcome="rejected",
        details={"status": 403, "method": request.method, "endpoint": request.endpoint or "",
                 "missing_scope": scope.value},
    )
    db.session.commit()
    response = problem_response(
        403, f"This call needs the scope {scope.value}, which this API client does not hold.",
        None,
    )
    # RFC 6750, section 3.1: the scope the client should ask its operator for.
    response.headers["WWW-Authenticate"] = (
        f'Bearer realm="relais", error="insufficient_scope", scope="{scope.value}"'
    )
    return response


def api_call(*scopes: Scope) -> Callable[[Callable[P, Response]], Callable[P, Response]]:
    """For a view that needs one of ``scopes``: at least one, a view naming none is closed."""
    if not scopes:
        raise TypeError("an API view names the scopes that allow it")

    def decorator(view: Callable[P, Response]) -> Callable[P, Response]:
        REQUIRED_SCOPES[f"{bp.name}.{view.__name__}"] = tuple(s.value for s in scopes)
        return _authenticated(view, scopes)

    return decorator


def _authenticated(view: Callable[P, Response], scopes: tuple[Scope, ...]) -> Callable[P, Response]:
    """Authenticate the bearer token, check that the client holds one of ``scopes``, run the
    view, map failures to problems."""

    @wraps(view)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Response:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        client = authenticate(token.strip()) if scheme.lower() == "bearer" else None
        if client is None:
            try:
                within_budget = within_unauthenticated_api_budget()
            except LimitStorageError as error:
                # The budget cannot be counted: refuse (503, retry later) rather than skip it.
                return unavailable_problem(error)
            if not within_budget:
                # Past the budget: refused without an audit event each (see limits.py).
                return problem_response(429, "Too many requests without a valid token.", None)
            return _rejected(401, None, None)
        now = utcnow()
        # Written at most once a minute: the row lock of an update on every call would make a
        # client's concurrent requests wait for one another.
        if client.last_used_at is None or now - client.last_used_at > LAST_USED_PRECISION:
            client.last_used_at = now
        g.api_client = client
        lacking = missing_scope(client, scopes)
        if lacking is not None:
            return _denied(lacking)
        try:
            response = view(*args, **kwargs)
        except Malformed:
            return _rejected(400, None, None)
        except ValidationFailed as error:
            return _rejected(422, error.detail, error.errors)
        except UnsupportedContent as error:
            return _rejected(415, str(error), None)
        except (ContentTooLarge, RequestEntityTooLarge) as error:
            detail = str(error) if isinstance(error, ContentTooLarge) else None
            return _rejected(413, detail, None)
        except NotFound:
            return _rejected(404, None, None)
        except Conflict:
            return _rejected(
                409, "This document_id was already received with a different body.", None
            )
        except Taken:
            return _rejected(
                409, "This document_id was already used by another API client.", None
            )
        except NoRecipient:
            return _rejected(
                422,
                "No recipient was given and the patient has no consented treating doctor.",
                [{"field": "recipients", "message": "no recipient given and none consented"}],
            )
        except HTTPException as error:
            return _rejected(error.code or 500, None, None)
        db.session.commit()
        return response

    return wrapper


def _or_not_found(check: Callable[..., None], *args: str) -> None:
    try:
        check(*args)
    except ValidationFailed:
        raise NotFound(args[0]) from None


@bp.post("/documents")
@api_call(Scope.DOCUMENTS_WRITE)
def post_document() -> Response:
    body = _body()
    if isinstance(body, dict) and is_valid_id(body.get("document_id")):
        # Only a well-formed id names the target of a rejection: no client bytes in the trail
        # (PostgreSQL cannot even store a NUL).
        g.audit_target = f"document:{body['document_id']}"
    data = parse_document(body, current_app.config["MAX_DOCUMENT_BYTES"])
    try:
        result = ingest(data, _actor(), g.api_client)
        db.session.commit()
    except IntegrityError:
        # A concurrent request stored the same document (or patient) first: answer as a replay
        # (or as taken, when it was another client's).
        db.session.rollback()
        result = ingest(data, _actor(), g.api_client)
    if not result.created:
        record(
            _actor(),
            "document.replayed",
            target=f"document:{data.document_id}",
            patient=result.document.patient.dpi_id,
        )
    return _json(result.response, 201 if result.created else 200)


@bp.get("/documents/<document_id>")
@api_call(Scope.DOCUMENTS_READ, Scope.DOCUMENTS_ADMIN)
def get_document(document_id: str) -> Response:
    # An identifier that cannot be valid names nothing: 404, as documented (not 422).
    _or_not_found(check_path_id, document_id, "document_id")
    g.audit_target = f"document:{document_id}"
    document = document_for(g.api_client, document_id)
    record(_actor(), "document.status_read", target=f"document:{document.document_id}",
           patient=document.patient.dpi_id)
    return _json(document_out(document))


@bp.post("/documents/<document_id>/retract")
@api_call(Scope.DOCUMENTS_WRITE, Scope.DOCUMENTS_ADMIN)
def retract_document(document_id: str) -> Response:
    check_path_id(document_id, "document_id")
    g.audit_target = f"document:{document_id}"
    reason = parse_retraction(_body())
    document = document_for(g.api_client, document_id)
    retract(document, reason, _actor())
    return _json(document_out(document))


@bp.put("/patients/<patient_id>/consents/<gln>")
@api_call(Scope.CONSENTS_WRITE)
def put_consent(patient_id: str, gln: str) -> Response:
    check_path_id(patient_id, "patient_id")
    check_path_gln(gln)
    g.audit_target = f"consent:{patient_id}/{gln}"
    data = parse_consent(_body())
    try:
        result = record_consent(patient_id, gln, data, _actor())
        db.session.commit()
    except IntegrityError:
        # A concurrent request created the same patient, doctor or consent first: write again
        # over it (the latest write wins) instead of failing with a 500.
        db.session.rollback()
        result = record_consent(patient_id, gln, data, _actor())
    return _json(consent_out(result.consent), 201 if result.created else 200)


@bp.delete("/patients/<patient_id>/consents/<gln>")
@api_call(Scope.CONSENTS_WRITE)
def delete_consent(patient_id: str, gln: str) -> Response:
    _or_not_found(check_path_id, patient_id, "patient_id")
    _or_not_found(check_path_gln, gln)
    g.audit_target = f"consent:{patient_id}/{gln}"
    revoke_consent(patient_id, gln, _actor())
    return Response(status=204)


@bp.patch("/patients/<patient_id>")
@api_call(Scope.PATIENTS_WRITE)
def patch_patient(patient_id: str) -> Response:
    check_path_id(patient_id, "patient_id")
    g.audit_target = f"patient:{patient_id}"
    parse_patient_patch(_body())
    patient = patient_by_dpi_id(patient_id)
    record_death(patient, _actor())
    return _json(patient_out(patient))


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    # isascii: str.isdigit() also takes "²" and other digits int() refuses (a 500).
    if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
        raise ValidationFailed(
            [{"field": name, "message": f"must be an integer from {low} to {high}"}]
        )
    return int(raw)


@bp.get("/events")
@api_call(Scope.EVENTS_READ)
def events() -> Response:
    # Reading the feed is deliberately not an event: the feed would otherwise feed itself.
    after = _int_arg("after", 0, 0, 2**62)
    limit = _int_arg("limit", 100, 1, 1000)
    rows = db.session.scalars(
        select(AuditEvent).where(AuditEvent.id > after).order_by(AuditEvent.id).limit(limit)
    ).all()
    next_cursor = str(rows[-1].id) if rows else None
    return _json({"events": [event_out(e) for e in rows], "next": next_cursor})


@bp.get("/doctors")
@api_call(Scope.DOCTORS_READ)
def doctors() -> Response:
    q = (request.args.get("q") or "").strip()
    specialty = (request.args.get("specialty") or "").strip()
    limit = _int_arg("limit", 50, 1, 200)
    bad = directory.search_errors(
        ("q", q, directory.MAX_QUERY), ("specialty", specialty, directory.MAX_SPECIALTY)
    )
    if bad:
        raise ValidationFailed(bad)
    found = directory.find_doctors(q, specialty, limit=limit)
    record(_actor(), "doctors.searched", details={"results": len(found)})
    return _json({"doctors": [doctor_out(d) for d in found]})


@bp.get("/openapi.json")
@public
def openapi() -> Response:
    return Response(_OPENAPI.read_bytes(), mimetype="application/json")
