"""Production refuses unsafe settings at start, as operations would meet it (issue 14, point 3).

Each case is a production configuration with one unsafe thing in it, given to the real
processes, from the environment as systemd gives ``/etc/relais/relais.env``:

* ``gunicorn -c gunicorn.conf.py`` (what ``relais-web.service`` runs) must exit with status 1
  before it binds its address, with one line on stderr naming the setting, no traceback;
* a ``flask --app wsgi`` command (``db upgrade``, the first one operations run) must do the
  same, and touch nothing: its SQLite database is never created.

The rules themselves, case by case, are in ``tests/test_config.py``; here, that both entry
points apply them. A control case with every setting safe shows that gunicorn then serves
and the command runs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.support.production import (
    certificate_for,
    laptop_dev_idp,
    laptop_keypair,
    laptop_saml_settings,
    safe_production_settings,
    saml_folder,
)
from tests.support.saml_idp import keypair
from tests.support.servers import (
    ROOT,
    AppServer,
    base_environment,
    free_ports,
    port_is_free,
    run_flask,
)

#: Ports gunicorn is told to bind (and must not, when it refuses).
PORTS = range(18500, 18600)


def _saml(work: Path, case: str) -> dict[str, str]:
    """The SAML settings of one case (a folder in ``work``), as environment variables; the
    development IdP's folder (what `make run` leaves) is ``work/dev-idp``."""
    folder = work / "etc-relais-saml"
    dev_idp = laptop_dev_idp(work)
    if case == "make-run-settings":
        # Exactly what `make run` writes: hin dev-settings trusting the development IdP
        laptop_saml_settings(folder, dev_idp)
    elif case == "idp-cert-made-for-a-laptop":
        saml_folder(folder, idp_cert=laptop_keypair("SP")[1])
    elif case == "idp-cert-of-the-dev-idp":
        _, unmarked = keypair("unmarked-dev-idp")
        (work / "dev-idp" / "idp.crt").write_text(unmarked)
        saml_folder(folder, idp_cert=unmarked)
    elif case == "sp-key-of-the-dev-idp":
        dev_key = (work / "dev-idp" / "idp.key").read_text()
        saml_folder(folder, sp_pair=(dev_key, certificate_for(dev_key)))
    elif case == "safe":
        saml_folder(folder)
    else:
        raise AssertionError(case)
    return {"SAML_SETTINGS_DIR": str(folder), "SAML_DEV_IDP_DIR": str(work / "dev-idp")}


#: case -> (the changes to a safe production environment, what the refusal must name).
#: ``None`` removes the variable. The SAML cases change the settings folder (:func:`_saml`).
#: One case per refusal (their variants are in tests/test_config.py).
CASES: dict[str, tuple[dict[str, str | None], str]] = {
    "console-mail": ({"MAIL_BACKEND": "console"}, "MAIL_BACKEND=console"),
    "console-sms": ({"SMS_BACKEND": None}, "SMS_BACKEND=console"),  # the default
    "no-redis": ({"REDIS_URL": None}, "REDIS_URL"),
    "make-run-settings": ({}, "SAML_SETTINGS_DIR"),
    "idp-cert-made-for-a-laptop": ({}, "the IdP certificate is a development one"),
    "idp-cert-of-the-dev-idp": ({}, "the IdP certificate is the development identity "
                                    "provider's"),
    "sp-key-of-the-dev-idp": ({}, "the SP key (certs/sp.key) is the development one"),
}


def environment(work: Path, case: str, port: int) -> dict[str, str]:
    """A safe production environment (HIN configured) with ``case``'s one unsafe change."""
    changes, _ = CASES.get(case, ({}, ""))
    saml_case = case if case in CASES and not changes else "safe"
    settings = {name: str(value) for name, value in safe_production_settings().items()}
    settings.update(_saml(work, saml_case))
    settings.update({
        "DATABASE_URL": f"sqlite:///{work / 'relais.db'}",
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "GUNICORN_WORKERS": "1",
        "LOG_FORMAT": "json",
    })
    for name, value in changes.items():
        if value is None:
            settings.pop(name, None)
        else:
            settings[name] = value
    return settings


def gunicorn(settings: dict[str, str], timeout: float = 60.0) -> tuple[int | None, str]:
    """``gunicorn -c gunicorn.conf.py`` as relais-web.service runs it: its exit status (None
    if it was still running after ``timeout``: it did not refuse) and its stderr. Its own
    process group, all of it ended in any case: no worker outlives the test."""
    command = [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py")]
    process = subprocess.Popen(command, cwd=ROOT, env=base_environment(settings),
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _, stderr = process.communicate(timeout=timeout)
        return process.returncode, stderr
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        _, stderr = process.communicate(timeout=10)
        return None, stderr
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)


@pytest.mark.parametrize("case", list(CASES))
def test_gunicorn_refuses_to_start(tmp_path: Path, case: str) -> None:
    (port,) = free_ports(1, PORTS)
    status, stderr = gunicorn(environment(tmp_path, case, port), timeout=30)
    assert status == 1, stderr
    lines = stderr.strip().splitlines()
    # One line, the reason, naming the setting; gunicorn never got to bind.
    assert len(lines) == 1 and lines[0].startswith("Relais refuses to start: "), stderr
    assert CASES[case][1] in lines[0]
    assert "Traceback" not in stderr
    assert port_is_free(port)


@pytest.mark.parametrize("case", list(CASES))
def test_a_flask_command_refuses_the_same(tmp_path: Path, case: str) -> None:
    (port,) = free_ports(1, PORTS)
    result = run_flask(["db", "upgrade"], environment(tmp_path, case, port))
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Relais refuses to start: "), result.stderr
    assert CASES[case][1] in lines[0]
    assert not (tmp_path / "relais.db").exists()  # refused before touching anything


def test_with_every_setting_safe_both_start(tmp_path: Path) -> None:
    # Given the same environment with nothing unsafe (HIN configured with settings of its own)
    (port,) = free_ports(1, PORTS)
    settings = environment(tmp_path, "safe", port)
    # Then the first command runs
    assert run_flask(["db", "upgrade"], settings).returncode == 0
    assert (tmp_path / "relais.db").exists()
    # And gunicorn serves
    with AppServer("web", port, settings, tmp_path, production=True, workers=1) as web, \
            urllib.request.urlopen(f"{web.url}/healthz", timeout=10) as answer:  # noqa: S310
        assert answer.status == 200
