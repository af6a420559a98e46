"""RFC 9457 problem details for the API."""

from __future__ import annotations

import json
from typing import Any

from flask import Response
from werkzeug.http import HTTP_STATUS_CODES

PROBLEM_BASE = "https://relais.invalid/problems/"

#: The ``Retry-After`` of a 503 (the database briefly unreachable): a restart takes seconds.
RETRY_AFTER_SECONDS = 5

_TYPES = {
    400: "malformed-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    409: "conflict",
    413: "content-too-large",
    415: "unsupported-media-type",
    422: "validation-failed",
    429: "too-many-requests",
    500: "internal-error",
    503: "unavailable",
}

_DETAILS = {
    400: "The request body is not valid JSON.",
    401: "A valid bearer token is required.",
    404: "No such resource.",
    405: "This method is not allowed here.",
    413: "The request is larger than allowed.",
    500: "An internal error occurred; the request was not applied and may be retried.",
    503: "The service is briefly unavailable; send the same request again after the "
         "Retry-After delay.",
}


def problem(
    status: int, detail: str | None = None, errors: list[dict[str, str]] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + _TYPES.get(status, "error"),
        "title": HTTP_STATUS_CODES.get(status, "Error"),
        "status": status,
        "detail": detail or _DETAILS.get(status, HTTP_STATUS_CODES.get(status, "Error")),
    }
    if errors is not None:
        body["errors"] = errors
    return body


def problem_response(
    status: int, detail: str | None = None, errors: list[dict[str, str]] | None = None
) -> Response:
    response = Response(
        json.dumps(problem(status, detail, errors), ensure_ascii=False),
        status=status,
        mimetype="application/problem+json",
    )
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="relais"'
    return response
