"""A throwaway ``redis-server`` for fault tests: started on a spare port, stopped at will.

Stopping the machine's Redis would harm every other test running at the same time; a test
that needs Redis to go away (and come back) starts its own here:

* ``redis-server --port P --bind 127.0.0.1 --save "" --appendonly no`` (nothing on disk, so
  a restart starts empty, as a Redis that lost its memory would), in a folder of its own;
* :meth:`RedisServer.stop` really stops it (SIGTERM, which with ``--save ""`` is a shutdown
  without saving; SIGKILL if it lingers)
  and returns only once the port refuses connections; :meth:`RedisServer.start` starts it
  again on the same port, so that clients configured with :attr:`RedisServer.url` find it;
* the process is ended at the end of the block even when the test failed.

Use the module-scoped ``redis_server`` fixture: ``from tests.support.redis_server import
redis_server_fixture  # noqa: F401`` in a test module (the function has another name so that
ruff sees no redefinition), or ``with RedisServer(folder) as server`` directly. Each test that
stops it should start it again (``server.ensure_running()``) for the next one.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import pytest
import redis

from tests.conftest import skip_or_fail
from tests.support.servers import ServerError, free_ports, real_clock_environment

#: The binary (Debian's redis-server package).
REDIS_SERVER = "/usr/bin/redis-server"

#: The ports a throwaway Redis may take (one free one is chosen).
PORTS = range(18600, 18700)


def _port_refuses(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, port)) != 0


class RedisServer:
    """One redis-server process on a fixed spare port; ``start()``/``stop()`` as often as needed."""

    def __init__(self, folder: Path, port: int | None = None, host: str = "127.0.0.1") -> None:
        self.folder = folder
        self.host = host
        self.port = port if port is not None else free_ports(1, PORTS)[0]
        self.log_path = folder / "redis.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The ``REDIS_URL`` of this server (database 0: it is ours alone)."""
        return f"redis://{self.host}:{self.port}/0"

    def client(self) -> redis.Redis:
        """A short-timeout client, for the test's own checks."""
        return redis.Redis(host=self.host, port=self.port, socket_connect_timeout=1,
                           socket_timeout=2)

    def command(self) -> list[str]:
        return [
            REDIS_SERVER, "--port", str(self.port), "--bind", self.host,
            "--save", "", "--appendonly", "no", "--dir", str(self.folder),
            "--logfile", str(self.log_path), "--daemonize", "no",
        ]

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    # --- life cycle -------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> RedisServer:
        """Start redis-server on :attr:`port`; return once it answers PING."""
        if self.running:
            raise ServerError("redis-server already running")
        if not _port_refuses(self.port, self.host):
            raise ServerError(f"port {self.port} is already in use")
        self.folder.mkdir(parents=True, exist_ok=True)
        self._process = subprocess.Popen(
            self.command(), cwd=self.folder, env=real_clock_environment(), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        client = self.client()
        try:
            while True:
                if self._process.poll() is not None:
                    raise ServerError(f"redis-server exited with {self._process.returncode}:\n"
                                      f"{self.log_tail()}")
                with contextlib.suppress(redis.RedisError):
                    if client.ping():
                        return self
                if time.monotonic() >= deadline:
                    self._kill()
                    raise ServerError(f"redis-server did not answer within {timeout} s:\n"
                                      f"{self.log_tail()}")
                time.sleep(0.05)
        finally:
            client.close()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop it for real (SIGTERM, else SIGKILL); return once the port refuses."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            # SIGTERM: Redis shuts down at once, and with --save "" writes nothing on the way.
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._kill()
        self._process = None
        deadline = time.monotonic() + timeout
        while not _port_refuses(self.port, self.host):
            if time.monotonic() >= deadline:
                raise ServerError(f"port {self.port} still accepts connections after stop")
            time.sleep(0.05)

    def ensure_running(self) -> RedisServer:
        """Start it again if a test left it stopped."""
        return self if self.running else self.start()

    def _kill(self) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=10)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            self.stop()
        finally:
            self._kill()

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


@pytest.fixture(name="redis_server", scope="module")
def redis_server_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A throwaway Redis for the module, stopped (for good) after its last test."""
    if shutil.which(REDIS_SERVER) is None:
        skip_or_fail(f"{REDIS_SERVER} is missing: install Debian's redis-server")
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server
