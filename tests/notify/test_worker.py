"""The worker as operations run it: a real process, stopped cleanly by SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from flask import Flask

from tests.conftest import TEST_KEY

ROOT = Path(__file__).resolve().parents[2]


def test_the_worker_loops_and_stops_cleanly_on_sigterm(app: Flask) -> None:
    env = {**os.environ, "RELAIS_ENV": "testing",
           "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
           "SECRET_KEY": "test-secret-key-that-is-long-enough-0123456789",
           "DOCUMENT_KEYS": f"test1:{TEST_KEY}", "MAIL_BACKEND": "console",
           "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "wsgi", "worker", "--interval", "1"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    seen: list[str] = []
    try:
        # Wait for two rounds (however slow the machine is to start), then stop it.
        assert process.stdout is not None
        deadline = time.monotonic() + 120
        while sum("released:" in line for line in seen) < 2 and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            seen.append(line)
        process.send_signal(signal.SIGTERM)
        rest, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    out = "".join(seen) + rest
    assert process.returncode == 0, err
    assert out.count("released: 0 delivered, 0 cancelled") >= 2
    assert "notifications: 0 sent" in out
    assert out.rstrip().endswith("worker: stopped")
