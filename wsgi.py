"""WSGI entry point: ``gunicorn -c gunicorn.conf.py wsgi:app`` and ``flask --app wsgi ...``.

Logging is configured here, by the process's entry point, not in ``create_app``: it is a
process-wide choice (LOG_FORMAT), and the tests build many apps in one process.
"""

from app import create_app
from app.web.logs import configure_logging

app = create_app()
configure_logging(app)
