"""Check requests and responses of the DPI API against its OpenAPI description.

``app/dispatch/openapi.json`` is what the DPI team builds against, so API tests assert that what the
app really answers is what that document promises::

    spec = load_spec()
    response = client.get("/api/v1/documents/DPI-1", headers=auth)
    assert_response_matches(
        spec, "GET", "/api/v1/documents/DPI-1", response.status_code,
        response.get_json(silent=True), response.content_type,
    )

Schemas are validated with JSON Schema 2020-12 (the dialect of OpenAPI 3.1), with format checking
on, and ``$ref: "#/components/..."`` resolved inside the document.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

__all__ = [
    "SPEC_PATH",
    "assert_request_valid",
    "assert_response_matches",
    "find_operation",
    "load_spec",
    "schema_errors",
]

SPEC_PATH = Path(__file__).resolve().parent.parent / "app" / "dispatch" / "openapi.json"

# The document is registered under this URI so that a schema taken from deep inside it resolves its
# "#/components/..." references against the document's root.
_SPEC_URI = "https://relais.invalid/api/v1/openapi.json"
_HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})
_TEMPLATE_PARAM = re.compile(r"\{([^{}/]+)\}")


def load_spec() -> dict[str, Any]:
    """The OpenAPI document of the DPI API, as parsed JSON."""
    with SPEC_PATH.open(encoding="utf-8") as f:
        spec: dict[str, Any] = json.load(f)
    return spec


def find_operation(
    spec: Mapping[str, Any], method: str, path: str
) -> tuple[str, dict[str, Any], dict[str, str]]:
    """The path template, operation object and (decoded) path parameters answering ``path``.

    ``path`` is concrete (``/api/v1/documents/DPI-1``, query string allowed). A template segment
    ``{name}`` matches one path segment; when nothing matches that way, a parameter may span
    several segments (an unencoded ``/`` inside an identifier). Of several matches, the one with
    the fewest parameters wins, as OpenAPI prefers concrete paths over templated ones.
    """
    concrete = _path_only(path)
    paths: Mapping[str, Any] = spec.get("paths", {})
    for segment_pattern in ("[^/]+", ".+"):
        matches: list[tuple[int, int, str, dict[str, str]]] = []
        for template in paths:
            params = _match_template(template, concrete, segment_pattern)
            if params is not None:
                # Fewest parameters first, then the most literal text (".../{id}/retract"
                # before ".../{id}" when an identifier may contain "/").
                matches.append((len(params), -len(template), template, params))
        if matches:
            _, _, template, params = min(matches, key=lambda m: (m[0], m[1]))
            path_item = _resolve(spec, paths[template])
            operation = path_item.get(method.lower())
            if method.lower() not in _HTTP_METHODS or not isinstance(operation, dict):
                raise AssertionError(
                    f"{method.upper()} {path}: method not documented for {template} "
                    f"(documented: {sorted(m.upper() for m in path_item if m in _HTTP_METHODS)})"
                )
            return template, operation, params
    raise AssertionError(f"{method.upper()} {path}: no documented path matches")


def schema_errors(spec: Mapping[str, Any], pointer: str, instance: object) -> list[str]:
    """Validation errors of ``instance`` against the schema at JSON pointer ``pointer`` of the spec.

    Each error reads ``<location in instance>: <message>``; an empty list means valid.
    """
    if "date-time" not in Draft202012Validator.FORMAT_CHECKER.checkers:
        # jsonschema checks date-time only when rfc3339-validator is importable; without it every
        # time would pass silently, including those without an offset that the API refuses.
        raise AssertionError("install rfc3339-validator: date-time formats would go unchecked")
    resource = Resource.from_contents(dict(spec), default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource(_SPEC_URI, resource)
    validator = Draft202012Validator(
        {"$ref": f"{_SPEC_URI}#{pointer}"},
        registry=registry,
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )
    errors = sorted(validator.iter_errors(instance), key=lambda e: str(e.json_path))
    return [f"{e.json_path}: {e.message}" for e in errors]


def assert_response_matches(
    spec: Mapping[str, Any],
    method: str,
    path: str,
    status: int,
    body: object | None,
    content_type: str | None,
) -> None:
    """Fail unless the spec documents this answer: its status, media type and body.

    ``body`` is the parsed JSON (``response.get_json(silent=True)``); for a response documented
    without content (204) it must be ``None`` or empty, and ``content_type`` is then not checked.
    Media type parameters such as ``charset`` are ignored.
    """
    where = f"{method.upper()} {path} -> {status}"
    template, operation, _ = find_operation(spec, method, path)
    responses: Mapping[str, Any] = operation.get("responses", {})
    key = next(
        (k for k in (str(status), f"{str(status)[0]}XX") if k in responses),
        None,
    )
    if key is None:
        raise AssertionError(
            f"{where}: status {status} not documented for {method.upper()} {template} "
            f"(documented: {sorted(responses)})"
        )
    response = _resolve(spec, responses[key])
    content: Mapping[str, Any] = response.get("content", {})
    if not content:
        if body not in (None, b"", ""):
            raise AssertionError(f"{where}: documented without content, got body {body!r}")
        return
    if content_type is None:
        raise AssertionError(f"{where}: no Content-Type, documented {sorted(content)}")
    media_type = _media_type(content_type)
    documented = {_media_type(m): m for m in content}
    if media_type not in documented:
        raise AssertionError(
            f"{where}: Content-Type {content_type!r} not documented (documented: {sorted(content)})"
        )
    media_key = documented[media_type]
    if "schema" not in content[media_key]:
        return
    pointer = _pointer_to(spec, template, method, ("responses", key), media_key)
    errors = schema_errors(spec, pointer, body)
    if errors:
        raise AssertionError(_report(f"{where}: body does not match the spec", errors, body))


def assert_request_valid(
    spec: Mapping[str, Any], method: str, path: str, body: object | None
) -> None:
    """Fail unless this request is valid for the spec: path and query parameters, and JSON body.

    Query parameters are strings on the wire; those documented as integers or booleans are
    converted before validation. ``body`` is the JSON that would be sent (``None`` for none).
    """
    where = f"{method.upper()} {path}"
    template, operation, path_params = find_operation(spec, method, path)
    path_item = _resolve(spec, spec["paths"][template])
    parameters = {
        (p["in"], p["name"]): p
        for p in (
            _resolve(spec, raw)
            for raw in [*path_item.get("parameters", []), *operation.get("parameters", [])]
        )
    }
    errors: list[str] = []
    query = dict(parse_qsl(urlsplit(path).query, keep_blank_values=True))
    for (location, name), parameter in parameters.items():
        values = {"path": path_params, "query": query}.get(location)
        if values is None:
            continue  # headers and cookies are not this helper's business
        if name not in values:
            if parameter.get("required", False):
                errors.append(f"{location} parameter {name!r}: missing")
            continue
        schema = _resolve(spec, parameter.get("schema", {}))
        value = _from_string(values[name], schema)
        errors += [
            f"{location} parameter {name!r} {e}"
            for e in _errors_against(spec, parameter.get("schema", {}), value)
        ]

    request_body = operation.get("requestBody")
    if request_body is None:
        if body is not None:
            errors.append("a body is sent but none is documented")
    else:
        request_body = _resolve(spec, request_body)
        if body is None:
            if request_body.get("required", False):
                errors.append("the documented body is required but none is sent")
        else:
            content: Mapping[str, Any] = request_body.get("content", {})
            if "application/json" not in content:
                errors.append(f"no application/json body documented ({sorted(content)})")
            elif "schema" in content["application/json"]:
                pointer = _pointer_to(spec, template, method, ("requestBody",), "application/json")
                errors += [f"body {e}" for e in schema_errors(spec, pointer, body)]
    if errors:
        raise AssertionError(_report(f"{where}: request does not match the spec", errors, body))


def _path_only(path: str) -> str:
    parts = urlsplit(path)
    return parts.path or "/"


def _match_template(template: str, concrete: str, segment_pattern: str) -> dict[str, str] | None:
    pattern = ""
    position = 0
    for param in _TEMPLATE_PARAM.finditer(template):
        pattern += re.escape(template[position : param.start()])
        pattern += f"(?P<{_group_name(param.group(1))}>{segment_pattern})"
        position = param.end()
    pattern += re.escape(template[position:])
    match = re.fullmatch(pattern, concrete)
    if match is None:
        return None
    names = _TEMPLATE_PARAM.findall(template)
    return {name: unquote(match.group(_group_name(name))) for name in names}


def _group_name(name: str) -> str:
    # Regex group names must be identifiers; OpenAPI parameter names need not be.
    return "p_" + "".join(c if c.isalnum() else f"_{ord(c):x}_" for c in name)


def _resolve(spec: Mapping[str, Any], node: Any) -> Any:
    """Follow local ``$ref``s of OpenAPI objects (responses, parameters, request bodies)."""
    seen: set[str] = set()
    while isinstance(node, Mapping) and "$ref" in node:
        reference = node["$ref"]
        if not isinstance(reference, str) or not reference.startswith("#/"):
            raise AssertionError(f"only local references are supported, not {reference!r}")
        if reference in seen:
            raise AssertionError(f"circular reference {reference!r}")
        seen.add(reference)
        node = spec
        for token in reference[2:].split("/"):
            node = node[token.replace("~1", "/").replace("~0", "~")]
    return node


def _pointer_to(
    spec: Mapping[str, Any],
    template: str,
    method: str,
    within_operation: tuple[str, ...],
    media_type: str,
) -> str:
    """JSON pointer to the schema of a media type, following ``$ref``ed responses/bodies."""
    tokens: list[str] = ["paths", template, method.lower(), *within_operation]
    node = _walk(spec, tokens)
    # A response or request body may itself be a $ref to components: point into its target.
    while isinstance(node, Mapping) and "$ref" in node:
        tokens = [_unescape(t) for t in node["$ref"][2:].split("/")]
        node = _walk(spec, tokens)
    return "/" + "/".join(_escape(t) for t in [*tokens, "content", media_type, "schema"])


def _walk(spec: Mapping[str, Any], tokens: list[str]) -> Any:
    node: Any = spec
    for token in tokens:
        node = node[token]
    return node


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _errors_against(spec: Mapping[str, Any], schema: Mapping[str, Any], value: object) -> list[str]:
    if "$ref" in schema and len(schema) == 1 and str(schema["$ref"]).startswith("#/"):
        return schema_errors(spec, str(schema["$ref"])[1:], value)
    # An inline schema: validate it in place, inside the spec, so its own $refs resolve too.
    wrapper = {**dict(spec), "x-relais-inline-schema": dict(schema)}
    return schema_errors(wrapper, "/x-relais-inline-schema", value)


def _from_string(value: str, schema: Mapping[str, Any]) -> object:
    types = schema.get("type")
    type_list = types if isinstance(types, list) else [types]
    if "integer" in type_list and re.fullmatch(r"-?[0-9]+", value):
        return int(value)
    if "boolean" in type_list and value in ("true", "false"):
        return value == "true"
    return value


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _report(headline: str, errors: list[str], body: object) -> str:
    shown = json.dumps(body, ensure_ascii=False, default=repr)
    if len(shown) > 2000:
        shown = shown[:2000] + "..."
    return "\n  ".join([headline, *errors, f"body: {shown}"])
