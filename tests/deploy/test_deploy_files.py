"""``deploy/`` and the README's production section agree with what production accepts.

``deploy/relais.env.example`` with its two secrets filled in must start production as it
stands; it must name a SAML folder of its own (never ``instance/saml``, where ``make run``
writes a laptop's development settings); the systemd units must leave that folder, the
settings and the code read-only; the README must tell operations the same folder.
"""

from __future__ import annotations

import base64
import configparser
import os
import re
import shlex
from pathlib import Path

from app.config import load_settings
from tests.support.servers import ROOT

DEPLOY = ROOT / "deploy"
UNITS = ("relais-web", "relais-worker", "relais-purge")


def env_example() -> dict[str, str]:
    """The example's variables, read as systemd's EnvironmentFile= and `set -a; .` read them."""
    values: dict[str, str] = {}
    for line in (DEPLOY / "relais.env.example").read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, value = line.partition("=")
        assert sep, line
        values[name.strip()] = " ".join(shlex.split(value)) if value.strip() else ""
    return values


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(DEPLOY / "systemd" / f"{name}.service", encoding="utf-8")
    return parser


def test_the_example_with_its_secrets_filled_in_starts_production(tmp_path: Path) -> None:
    values = env_example()
    assert values["RELAIS_ENV"] == "production"
    assert values["SECRET_KEY"] == "" and values["DOCUMENT_KEYS"] == ""  # to generate
    values["SECRET_KEY"] = base64.urlsafe_b64encode(os.urandom(36)).decode()
    values["DOCUMENT_KEYS"] = "k2026:" + base64.b64encode(os.urandom(32)).decode()
    # As on a fresh server: /etc/relais/saml not written yet (HIN off until it is).
    settings = load_settings(str(tmp_path), environ=values)
    assert settings.env == "production"
    assert (settings.sms_backend, settings.mail_backend) == ("twilio", "smtp")
    assert settings.redis_url


def test_the_example_names_a_saml_folder_of_its_own() -> None:
    folder = env_example()["SAML_SETTINGS_DIR"]
    assert folder == "/etc/relais/saml"
    assert "instance" not in folder


def test_the_services_can_write_neither_the_code_nor_the_settings() -> None:
    saml = Path(env_example()["SAML_SETTINGS_DIR"])
    for name in UNITS:
        service = unit(name)["Service"]
        assert service["ProtectSystem"] == "strict", name
        assert service["EnvironmentFile"] == "/etc/relais/relais.env", name
        assert "ReadWritePaths" not in service, name
        read_only = [Path(p) for p in service["ReadOnlyPaths"].split()]
        for path in (saml, Path("/etc/relais/relais.env"), Path("/opt/relais/instance")):
            assert any(path.is_relative_to(ro) for ro in read_only), (name, path)
    assert unit("relais-web")["Service"]["ExecStart"].startswith(
        "/opt/relais/.venv/bin/gunicorn -c /opt/relais/gunicorn.conf.py ")


def test_the_readme_tells_operations_the_same_folder() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    production = readme[readme.index("## Running in production"):readme.index("## Benchmarks")]
    assert "/etc/relais/saml" in production
    assert not re.search(r"/opt/relais/instance/saml", production)
