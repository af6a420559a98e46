"""gunicorn settings for Relais: ``gunicorn -c gunicorn.conf.py wsgi:app``.

Every value comes from the environment (the systemd unit's EnvironmentFile), with a default
fit for one server behind nginx on the same host. The app's own settings (RELAIS_ENV,
SECRET_KEY, DOCUMENT_KEYS, PROXY_HOPS, LOG_FORMAT ...) are read and validated here first, with
the app's own rules: in production, gunicorn refuses to start (exit status 1, the reason on
stderr) rather than boot workers that would each fail on an unsafe or missing setting.

| variable | meaning | default |
|---|---|---|
| GUNICORN_BIND | address(es) to listen on, comma-separated | 127.0.0.1:8000 |
| GUNICORN_WORKERS | worker processes | 2 x cores + 1, at most 8 |
| GUNICORN_THREADS | threads per worker (more than 1: the gthread worker) | 4 |
| GUNICORN_TIMEOUT | seconds a request may take before its worker is killed | 60 |
| GUNICORN_GRACEFUL_TIMEOUT | seconds workers get to finish on a restart or stop | 30 |
| GUNICORN_KEEPALIVE | seconds an idle keep-alive connection stays open | 5 |
| GUNICORN_MAX_REQUESTS | requests after which a worker is replaced (0: never) | 2000 |
| GUNICORN_MAX_REQUESTS_JITTER | random extra, so workers are not all replaced at once | 200 |
| GUNICORN_PRELOAD | 1 imports the app once in the master (see below) | 0 |
| GUNICORN_PROXY_IPS | addresses of the TLS proxy, when PROXY_HOPS > 0 | 127.0.0.1,::1 |
| GUNICORN_WORKER_TMP_DIR | folder of the workers' heartbeat files | /dev/shm when writable |
| GUNICORN_LIMIT_REQUEST_LINE | longest request line in bytes; longer: 414 | 4094 |
| GUNICORN_LIMIT_REQUEST_FIELDS | most header fields in a request; more: 431 | 100 |
| GUNICORN_LIMIT_REQUEST_FIELD_SIZE | longest header field in bytes; longer: 431 | 8190 |
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from app.config import ConfigError, Settings, load_settings  # noqa: E402 - needs the path above
from app.web.logs import logging_config  # noqa: E402

#: Four workers of about 100 MB each already serve a hospital; more than eight on one server
#: costs memory and PostgreSQL connections for little: add servers instead.
MAX_DEFAULT_WORKERS = 8


def _int(name: str, default: int, minimum: int = 0) -> int:
    raw = os.environ.get(name, "").strip()
    try:
        value = int(raw) if raw else default
    except ValueError:
        raise SystemExit(f"gunicorn.conf.py: {name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise SystemExit(f"gunicorn.conf.py: {name} must be at least {minimum}")
    return value


def _settings_or_exit() -> Settings:
    """The app's validated settings; an unsafe or missing one stops gunicorn here."""
    try:
        return load_settings(str(ROOT / "instance"))
    except ConfigError as error:
        raise SystemExit(f"Relais refuses to start: {error}") from None


_settings = _settings_or_exit()

wsgi_app = "wsgi:app"
chdir = str(ROOT)

# --- sockets and processes ---------------------------------------------------------------------

bind = [a.strip() for a in os.environ.get("GUNICORN_BIND", "127.0.0.1:8000").split(",")
        if a.strip()]
workers = _int("GUNICORN_WORKERS", min(2 * (os.cpu_count() or 1) + 1, MAX_DEFAULT_WORKERS), 1)
# Threads let a worker serve other requests while one waits on PostgreSQL, SMTP or Twilio (a
# code's SMS may wait up to TWILIO_TIMEOUT_SECONDS); the app keeps no per-process request state.
threads = _int("GUNICORN_THREADS", 4, 1)
worker_class = "gthread" if threads > 1 else "sync"
timeout = _int("GUNICORN_TIMEOUT", 60, 1)  # a 20 MiB letter from the DPI fits well within it
graceful_timeout = _int("GUNICORN_GRACEFUL_TIMEOUT", 30, 1)
keepalive = _int("GUNICORN_KEEPALIVE", 5, 0)
# Replace each worker after a while, so that a slow leak (a library's cache ...) cannot grow
# without bound; the jitter keeps the workers from all restarting in the same minute.
max_requests = _int("GUNICORN_MAX_REQUESTS", 2000)
max_requests_jitter = _int("GUNICORN_MAX_REQUESTS_JITTER", 200)
# Not preloaded by default: each worker imports the app after the fork, so no connection pool
# (PostgreSQL, Redis) can ever be shared between processes, and `systemctl reload` (HUP)
# starts workers on new code after an upgrade. The settings are still checked above, in the
# master, before any worker starts. Preloading saves some memory; set GUNICORN_PRELOAD=1 to
# trade the reload for it.
preload_app = _int("GUNICORN_PRELOAD", 0) == 1
# The heartbeat file in memory, not on a disk that may stall (gunicorn's own advice); the
# default temporary directory when /dev/shm is not writable (a sandboxed service).
worker_tmp_dir = os.environ.get("GUNICORN_WORKER_TMP_DIR") or (
    "/dev/shm" if os.access("/dev/shm", os.W_OK) else None  # noqa: S108
)
# gunicorn's control socket ($HOME/.gunicorn/gunicorn.ctl) is off: one path per user would be
# shared by every instance on the host, and ProtectSystem=strict has no writable home for it.
control_socket_disable = True
proc_name = "relais-web"

# --- request limits ----------------------------------------------------------------------------

# Refused by gunicorn itself, before a worker thread or the app spends anything on them (a
# request line of 8 KB, a 64 KB header, 200 headers): 414 or 431, and the worker goes on serving.
# Explicit rather than gunicorn's defaults, so that a gunicorn upgrade cannot loosen them, and
# never 0 (gunicorn reads a request line limit of 0 as "no limit"). The longest request line
# Relais builds (a filtered list of Mes documents) is far below 4 KB; the largest header it
# needs is the session cookie (< 1 KB).
# Bodies are bounded by the app (MAX_CONTENT_LENGTH: 413) and by nginx's client_max_body_size.
limit_request_line = _int("GUNICORN_LIMIT_REQUEST_LINE", 4094, 1024)
limit_request_fields = _int("GUNICORN_LIMIT_REQUEST_FIELDS", 100, 32)
limit_request_field_size = _int("GUNICORN_LIMIT_REQUEST_FIELD_SIZE", 8190, 1024)

# --- the TLS proxy -----------------------------------------------------------------------------

# Which X-Forwarded-* headers to believe is decided once, by ProxyFix in the app (PROXY_HOPS,
# counting trusted hops from the right). gunicorn's own handling of X-Forwarded-Proto must not
# trust more: with no proxy (PROXY_HOPS=0) it trusts nobody; with one, only the proxy's
# addresses, which ProxyFix then reads the same way.
forwarded_allow_ips = (
    os.environ.get("GUNICORN_PROXY_IPS", "127.0.0.1,::1") if _settings.proxy_hops else ""
)

# --- logs --------------------------------------------------------------------------------------

# One handler for the whole process: gunicorn's lines and the app's, in LOG_FORMAT (JSON in
# production). gunicorn's access log is off: it would print raw paths and query strings, which
# hold patient ids; the app writes its own access line with the route template instead.
accesslog = None
errorlog = "-"
loglevel = _settings.log_level.lower()
logconfig_dict = logging_config(_settings.log_format, _settings.log_level)
