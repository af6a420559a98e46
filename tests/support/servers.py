"""Real app servers for tests: gunicorn instances of Relais on local ports, and its CLI.

A test that needs what only separate processes show (two servers sharing PostgreSQL and Redis,
two ``dispatch release-due`` at the same moment) starts them here. Each server:

* runs ``gunicorn -w N -b 127.0.0.1:<port> wsgi:app`` with explicit flags only: a
  ``gunicorn.conf.py`` in the checkout (the production profile) is *not* read, so that what the
  test runs is exactly what it says; or, with ``production=True``, exactly as
  ``deploy/systemd/relais-web.service`` does: ``gunicorn -c gunicorn.conf.py wsgi:app``, the
  address and the workers given as ``GUNICORN_BIND`` and ``GUNICORN_WORKERS`` (and TLS with
  ``--certfile``/``--keyfile`` when a certificate is given: gunicorn's own TLS);
* gets a clean environment (the test's settings, nothing inherited but PATH and the locale), so
  that a developer's DATABASE_URL or proxy variables cannot leak into it;
* writes its stderr (gunicorn's log and the app's) to a file the test reads afterwards, to look
  for tracebacks;
* is stopped with SIGTERM (gunicorn's graceful stop) and waited for; if it does not stop in
  time, its whole process group is killed, so no worker outlives the test.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

#: The checkout's root: gunicorn and flask run from here (``wsgi.py``).
ROOT = Path(__file__).resolve().parents[2]

#: The moved clock of ``make test-clock-ahead`` (libfaketime). Relais's own processes (gunicorn,
#: the CLI, the worker) keep it, so that they live on the same day as the test; the servers that
#: stand for other machines (PostgreSQL, Redis) run on the real clock, as the machine's own do.
CLOCK_VARIABLES = ("LD_PRELOAD", "FAKETIME", "FAKETIME_DONT_FAKE_MONOTONIC")

#: Variables passed through from the test's own environment; everything else is explicit.
_INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT", *CLOCK_VARIABLES)


def real_clock_environment() -> dict[str, str]:
    """The test's environment without the moved clock, for a server of another machine."""
    return {name: value for name, value in os.environ.items() if name not in CLOCK_VARIABLES}


class ServerError(RuntimeError):
    """A server did not start, or did not stop; carries the end of its stderr."""


def base_environment(settings: Mapping[str, str]) -> dict[str, str]:
    """A clean environment for a Relais process: PATH and locale, then ``settings``.

    HTTP proxies are never inherited, and local addresses bypass any that the settings add,
    so that nothing a test starts reaches beyond the machine.
    """
    env = {name: os.environ[name] for name in _INHERITED if name in os.environ}
    env.update({"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
                "PYTHONUNBUFFERED": "1"})
    env.update(settings)
    return env


def end_process_group(process: subprocess.Popen[Any], timeout: float) -> bool:
    """SIGTERM to a process started with ``start_new_session=True``, then wait for it; kill its
    whole group if it outstays ``timeout``, and the group's leftovers in any case (workers of a
    master that died abruptly). True when it stopped on SIGTERM in time."""
    graceful = True
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            graceful = False
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    return graceful


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_ports(count: int, candidates: Iterable[int]) -> list[int]:
    """``count`` ports from ``candidates`` that nobody listens on now."""
    found: list[int] = []
    for port in candidates:
        if port_is_free(port):
            found.append(port)
            if len(found) == count:
                return found
    raise ServerError(f"fewer than {count} free ports among the candidates")


class AppServer:
    """One gunicorn instance of the app; ``start()``/``stop()`` or a context manager."""

    def __init__(self, name: str, port: int, settings: Mapping[str, str], log_dir: Path,
                 *, workers: int = 2, host: str = "127.0.0.1", production: bool = False,
                 tls: tuple[Path, Path] | None = None) -> None:
        self.name = name
        self.host = host
        self.port = port
        self.workers = workers
        self.production = production
        #: (certificate, key) in PEM: gunicorn serves HTTPS with them.
        self.tls = tls
        gunicorn_settings = dict(settings)
        if production:
            gunicorn_settings.setdefault("GUNICORN_BIND", f"{host}:{port}")
            gunicorn_settings.setdefault("GUNICORN_WORKERS", str(workers))
        self.env = base_environment(gunicorn_settings)
        self.log_path = log_dir / f"{name}.stderr.log"
        # Flags only: an empty config file stops gunicorn from reading ./gunicorn.conf.py.
        self._config_path = log_dir / "gunicorn-flags-only.conf.py"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    def ssl_context(self) -> ssl.SSLContext | None:
        """A client context trusting this server's certificate (None on plain http)."""
        if self.tls is None:
            return None
        return ssl.create_default_context(cafile=str(self.tls[0]))

    def command(self) -> list[str]:
        tls_flags = ["--certfile", str(self.tls[0]), "--keyfile", str(self.tls[1])] \
            if self.tls else []
        if self.production:
            # What the systemd unit runs; gunicorn.conf.py reads GUNICORN_* and checks the app's
            # settings before any worker starts.
            return [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"),
                    *tls_flags, "wsgi:app"]
        return [
            sys.executable, "-m", "gunicorn",
            "--config", str(self._config_path),
            "--workers", str(self.workers),
            "--bind", f"{self.host}:{self.port}",
            "--graceful-timeout", "10",
            "--timeout", "60",
            # gunicorn 27's control socket defaults to one path per user ($HOME/.gunicorn):
            # two instances would take it from each other.
            "--no-control-socket",
            *tls_flags,
            "wsgi:app",
        ]

    # --- life cycle -------------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> AppServer:
        """Start gunicorn and return once /healthz answers 200 (or raise, stopping it)."""
        if self._process is not None:
            raise ServerError(f"{self.name} already started")
        if not port_is_free(self.port, self.host):
            raise ServerError(f"{self.name}: port {self.port} is already in use")
        self._config_path.write_text("# empty: every setting is on the command line\n")
        with self.log_path.open("wb") as log:
            # Its own process group: a last-resort kill reaches the workers too.
            self._process = subprocess.Popen(
                self.command(), cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        try:
            self._wait_until_healthy(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_until_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            process = self._process
            assert process is not None
            if process.poll() is not None:
                raise ServerError(f"{self.name} exited with {process.returncode} at start:\n"
                                  f"{self.stderr_tail()}")
            if self._healthy():
                return
            if time.monotonic() >= deadline:
                raise ServerError(f"{self.name} did not answer /healthz within {timeout} s:\n"
                                  f"{self.stderr_tail()}")
            time.sleep(0.2)

    def _healthy(self) -> bool:
        try:
            # The URL is our own local server's, built above: no user input.
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=2,  # noqa: S310
                                        context=self.ssl_context()) as answer:
                return bool(answer.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM (graceful stop), then wait; kill the group if it outstays ``timeout``."""
        process, self._process = self._process, None
        if process is None:
            return None
        if not end_process_group(process, timeout):
            raise ServerError(f"{self.name} did not stop on SIGTERM within {timeout} s")
        return process.returncode

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def __enter__(self) -> AppServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # --- what it wrote ----------------------------------------------------------------------

    def stderr(self) -> str:
        """Everything the server wrote so far (gunicorn's log and the app's)."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def stderr_tail(self, lines: int = 40) -> str:
        return "\n".join(self.stderr().splitlines()[-lines:])


def flask_command(args: list[str]) -> list[str]:
    """The ``flask --app wsgi <args>`` command line (run with :func:`base_environment`)."""
    return [sys.executable, "-m", "flask", "--app", "wsgi", *args]


def start_flask(args: list[str], settings: Mapping[str, str]) -> subprocess.Popen[str]:
    """Start ``flask --app wsgi <args>`` with ``settings``; the caller waits for it."""
    return subprocess.Popen(
        flask_command(args), cwd=ROOT, env=base_environment(settings),
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def run_flask(args: list[str], settings: Mapping[str, str],
              timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run ``flask --app wsgi <args>`` with ``settings`` to its end."""
    process = start_flask(args, settings)
    return finish(process, args, timeout)


def finish(process: subprocess.Popen[str], args: list[str],
           timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Wait for a started command (killing it after ``timeout``) and collect its output."""
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        # Killed: its pipes close at once, unless a child it started still holds them.
        stdout, stderr = process.communicate(timeout=10)
    return subprocess.CompletedProcess(args, process.returncode, stdout, stderr)
