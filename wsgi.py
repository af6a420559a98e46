"""WSGI entry point: ``gunicorn -c gunicorn.conf.py wsgi:app`` and ``flask --app wsgi ...``.

Logging is configured here, by the process's entry point, not in ``create_app``: it is a
process-wide choice (LOG_FORMAT), and the tests build many apps in one process.

An unsafe or malformed setting stops the process here with one line naming it (exit status 1),
the same line gunicorn.conf.py prints: a ``flask`` command in production refuses exactly what
gunicorn refuses, and without a traceback that would bury the reason.
"""

from app import create_app
from app.config import ConfigError
from app.web.logs import configure_logging

try:
    app = create_app()
except ConfigError as error:
    raise SystemExit(f"Relais refuses to start: {error}") from None
configure_logging(app)
