"""Logs: one JSON object per line on stderr in production, readable text on a laptop.

What a log line may hold is decided here, in one place. A hospital's log pipeline keeps lines
for months and many people read them, so a line never carries patient data or secrets:

- the access line names the *route template* (``/staff/patients/<dpi_id>``), never the path
  nor the query string, which hold DPI ids, patient ids and search words;
- the user is a kind (doctor, staff, desk, api, anonymous), never a name, login or GLN;
- an exception keeps its type and its traceback (files, lines, code) but no local values.

Every line written during a request carries that request's id, the one sent back in the
``X-Request-ID`` header, so that a desk agent can quote it and operations find the lines.
"""

from __future__ import annotations

import json
import logging
import logging.config
import sys
import time
import traceback
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, g, has_request_context, request
from flask.logging import default_handler

from app.config import LOG_FORMATS

#: The logger of the access lines (one per request).
ACCESS_LOGGER = "relais.access"

#: Attributes a LogRecord carries from ``extra=`` that belong in a line.
_FIELDS = ("request_id", "method", "route", "status", "duration_ms", "remote_addr", "user")


def _request_id() -> str | None:
    if has_request_context():
        value = g.get("request_id")
        return str(value) if value else None
    return None


def _traceback(record: logging.LogRecord) -> str | None:
    """The formatted traceback: frames and the exception's type and message, no locals."""
    if not record.exc_info or record.exc_info[0] is None:
        return None
    return "".join(traceback.format_exception(*record.exc_info)).rstrip()


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines inside values are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or _request_id()
        if request_id:
            line["request_id"] = request_id
        for name in _FIELDS[1:]:
            if hasattr(record, name):
                line[name] = getattr(record, name)
        if record.exc_info and record.exc_info[0] is not None:
            line["exception"] = record.exc_info[0].__name__
            line["traceback"] = _traceback(record)
        elif record.stack_info:
            line["stack"] = record.stack_info
        return json.dumps(line, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """A line a developer reads in the terminal: time, level, logger, request id, message."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        request_id = getattr(record, "request_id", None) or _request_id()
        if request_id:
            text += f" [request {request_id}]"
        return text


class RelaisHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The stderr handler of Relais, recognisable so that logging is configured only once.

    gunicorn configures logging in its master (gunicorn.conf.py); the app, imported again in
    each worker, must then keep that configuration rather than add a second handler.
    """

    def __init__(self) -> None:
        super().__init__(sys.stderr)


def logging_config(log_format: str, level: str = "INFO") -> dict[str, Any]:
    """The ``logging.config.dictConfig`` for Relais, also given to gunicorn (logconfig_dict).

    Everything goes to the root logger's one handler on stderr. gunicorn's own loggers
    propagate to it; its access logger is silenced (our access line replaces it: gunicorn's
    would print the raw path and query string). werkzeug's request lines (``flask run``) are
    silenced in JSON mode for the same reason.
    """
    if log_format not in LOG_FORMATS:
        raise ValueError(f"LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}")
    raw_lines = "WARNING" if log_format == "json" else "INFO"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "relais": {"()": JsonFormatter if log_format == "json" else TextFormatter},
        },
        "handlers": {
            "relais": {"()": RelaisHandler, "formatter": "relais"},
        },
        "root": {"level": level, "handlers": ["relais"]},
        "loggers": {
            "gunicorn.error": {"level": level, "handlers": [], "propagate": True},
            "gunicorn.access": {"level": "CRITICAL", "handlers": [], "propagate": False},
            "werkzeug": {"level": raw_lines, "handlers": [], "propagate": True},
            # Flask-Migrate imports alembic in every process; its plugin lines are noise.
            "alembic.runtime.plugins": {"level": "WARNING", "handlers": [], "propagate": True},
            # The twilio client logs each request at INFO: its URL (with the account SID) and
            # headers. Not ours to print: WARNING and above only.
            "twilio": {"level": "WARNING", "handlers": [], "propagate": True},
            # Flask-Limiter logs each breach at INFO with its key, and the per-account key is
            # the login as typed: a password typed into the login field by mistake. Its
            # warnings (storage errors) carry no key.
            "flask-limiter": {"level": "WARNING", "handlers": [], "propagate": True},
        },
    }


def configured() -> bool:
    """Whether the root logger already writes through Relais's handler."""
    return any(isinstance(h, RelaisHandler) for h in logging.getLogger().handlers)


def configure_logging(app: Flask) -> None:
    """Route every log line of the process through one handler in the app's LOG_FORMAT.

    Called by the entry point (``wsgi.py``), not by ``create_app``: configuring logging is a
    process-wide side effect, and tests build many apps in one process.
    """
    if not configured():
        logging.config.dictConfig(
            logging_config(app.config["LOG_FORMAT"], app.config["LOG_LEVEL"])
        )
    # Flask's own handler writes plain text to stderr; ours already catches app.logger's lines.
    app.logger.removeHandler(default_handler)


def _user_kind() -> str:
    """Who made the request, as a kind only: names and logins are personal data."""
    principal = g.get("principal")
    if principal is not None:
        return str(principal.role)
    if g.get("api_client") is not None:
        return "api"
    return "anonymous"


def _start_timer() -> None:
    g.log_started = time.perf_counter()


def _access_line(response: Response) -> Response:
    """One line per request, with the route template, never the path or the query string."""
    started = g.get("log_started")
    duration = (time.perf_counter() - started) * 1000 if started is not None else None
    rule = request.url_rule
    logging.getLogger(ACCESS_LOGGER).info(
        "request",
        extra={
            "request_id": g.get("request_id"),
            "method": request.method,
            # Unknown routes (404, 405 ...) have no template; their path is not logged either.
            "route": rule.rule if rule is not None else None,
            "status": response.status_code,
            "duration_ms": round(duration, 1) if duration is not None else None,
            "remote_addr": request.remote_addr,  # the client's, after ProxyFix
            "user": _user_kind(),
        },
    )
    return response


def init_request_logging(app: Flask) -> None:
    """Time each request and write its access line.

    Called before the other ``after_request`` hooks are registered: Flask runs those hooks in
    reverse order, so the line is written last, with the final status.
    """
    app.before_request(_start_timer)
    app.after_request(_access_line)
