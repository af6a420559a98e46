"""A throwaway PostgreSQL cluster, started by a test that needs to stop or crash its database.

The machine's PostgreSQL is shared by every test (and by other suites on the same server):
stopping it would harm them. A test that needs a database fault gets a cluster of its own
instead: ``initdb`` into a temporary folder, ``pg_ctl`` on a free port, removed afterwards.

* ``initdb -A trust``, listening on 127.0.0.1 only, its socket in its own folder, ``fsync=off``
  (a test cluster: the operating system does not crash under it, so nothing acknowledged is
  lost when PostgreSQL itself is stopped, even "immediately");
* initdb refuses to run as root: as root, every server binary runs as the ``postgres`` system
  user, in a folder that user owns;
* ``stop(mode)`` with pg_ctl's modes: ``smart``, ``fast`` (what a service manager does) or
  ``immediate`` (like a crash: no checkpoint, crash recovery at the next start);
* ``start()``, ``restart(mode)``, ``psql(sql)`` (tuples only, unaligned);
* ``url``: the SQLAlchemy URL (``postgresql+psycopg``) of its database.

Use the module-scoped ``pg_cluster`` fixture: ``from tests.support.pg_cluster import
pg_cluster_fixture  # noqa: F401`` in a test module (the fixture is named ``pg_cluster``; the
function has another name so that ruff sees no redefinition), or ``with PgCluster(...)``.
Missing PostgreSQL binaries skip (a failure under CI=true).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType

import pytest

from tests.conftest import skip_or_fail
from tests.support.servers import ServerError, free_ports

#: Where the test clusters listen (one free port is taken).
PORTS = range(18900, 19000)
#: pg_ctl's stop modes.
MODES = ("smart", "fast", "immediate")
#: The system user that runs the server when the tests run as root.
SERVICE_USER = "postgres"

_VERSION = re.compile(r"^\d+$")


def find_bin_dir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` with initdb and pg_ctl, if any."""
    root = Path("/usr/lib/postgresql")
    if not root.is_dir():
        return None
    versions = sorted((p for p in root.iterdir() if _VERSION.match(p.name)),
                      key=lambda p: int(p.name), reverse=True)
    for version in versions:
        bin_dir = version / "bin"
        if all((bin_dir / name).is_file() for name in ("initdb", "pg_ctl", "postgres", "psql")):
            return bin_dir
    return None


class PgCluster:
    """One PostgreSQL cluster in a temporary folder; ``start()`` creates it the first time."""

    def __init__(self, bin_dir: Path, port: int, database: str = "relais") -> None:
        self.bin_dir = bin_dir
        self.port = port
        self.database = database
        self._as_root = os.geteuid() == 0
        self.root = Path(tempfile.mkdtemp(prefix="relais-pg-"))
        self.data_dir = self.root / "data"
        self.socket_dir = self.root / "socket"
        self.log_path = self.root / "postgres.log"
        self._initialised = False
        if self._as_root:
            # initdb refuses root: the service user owns the folder and runs the server.
            entry = pwd.getpwnam(SERVICE_USER)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self._run(["mkdir", "-p", str(self.socket_dir)])

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{self.database}"

    # --- commands ---------------------------------------------------------------------------

    def _command(self, args: Sequence[str]) -> list[str]:
        program, *rest = args
        path = self.bin_dir / program
        resolved = str(path) if path.is_file() else program
        if self._as_root:
            return ["runuser", "-u", SERVICE_USER, "--", resolved, *rest]
        return [resolved, *rest]

    def _run(self, args: Sequence[str], timeout: float = 60.0) -> str:
        try:
            done = subprocess.run(
                self._command(args), cwd=self.root, capture_output=True, text=True,
                timeout=timeout, check=False, env=self._env(),
            )
        except subprocess.TimeoutExpired:
            raise ServerError(f"{args[0]} did not finish within {timeout} s:\n"
                              f"{self.log_tail()}") from None
        if done.returncode != 0:
            raise ServerError(f"{' '.join(args[:2])} failed ({done.returncode}):\n{done.stdout}"
                              f"{done.stderr}\n{self.log_tail()}")
        return done.stdout

    def _env(self) -> dict[str, str]:
        env = {name: os.environ[name] for name in ("PATH", "LANG") if name in os.environ}
        # libpq would otherwise read the test's PG* variables (another server, another user).
        env["LC_ALL"] = "C.UTF-8"
        return env

    def _options(self) -> str:
        return (f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 "
                "-c fsync=off -c full_page_writes=off -c max_connections=50")

    def _pg_ctl(self, *args: str, timeout: float = 60.0) -> str:
        return self._run(["pg_ctl", "-D", str(self.data_dir), "-l", str(self.log_path),
                          "-t", str(int(timeout)), *args], timeout=timeout + 10)

    # --- life cycle -------------------------------------------------------------------------

    def start(self) -> PgCluster:
        """Start the server (creating the cluster and its database the first time); wait."""
        if not self._initialised:
            self._run(["initdb", "-D", str(self.data_dir), "-A", "trust", "-U", "postgres",
                       "-E", "UTF8", "--locale=C", "--no-sync"])
        self._pg_ctl("-w", "-o", self._options(), "start")
        if not self._initialised:
            self._initialised = True
            self.psql(f'CREATE DATABASE "{self.database}"', database="postgres")
        return self

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: ``smart``, ``fast`` or ``immediate`` (crash-like)."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        self._pg_ctl("-w", "-m", mode, "stop")

    def restart(self, mode: str = "fast") -> None:
        """Stop with ``mode`` and start again, waiting until it accepts connections."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        self._pg_ctl("-w", "-m", mode, "-o", self._options(), "restart")

    @property
    def running(self) -> bool:
        try:
            self._run(["pg_ctl", "-D", str(self.data_dir), "status"], timeout=10)
        except ServerError:
            return False
        return True

    def psql(self, sql: str, database: str | None = None) -> str:
        """Run ``sql`` through psql on TCP; its output, tuples only, unaligned, ``|``-separated."""
        return self._run(["psql", "-X", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
                          "-p", str(self.port), "-U", "postgres", "-d", database or self.database,
                          "-A", "-t", "-c", sql])

    def close(self) -> None:
        """Stop the server whatever its state, and remove the folder."""
        try:
            if self._initialised and self.running:
                with contextlib.suppress(ServerError):
                    self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except (FileNotFoundError, PermissionError):
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> PgCluster:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def start_cluster(database: str = "relais") -> PgCluster:
    """A started cluster on a free port; skips (fails under CI) without PostgreSQL's binaries."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        skip_or_fail("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    assert bin_dir is not None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SERVICE_USER)
        except KeyError:
            skip_or_fail(f"running as root without a {SERVICE_USER!r} user to run PostgreSQL")
    (port,) = free_ports(1, PORTS)
    return PgCluster(bin_dir, port, database).__enter__()


@pytest.fixture(scope="module", name="pg_cluster")
def pg_cluster_fixture() -> Iterator[PgCluster]:
    """A throwaway cluster for the module: stopped and removed afterwards, even on failure."""
    cluster = start_cluster()
    try:
        yield cluster
    finally:
        cluster.close()
