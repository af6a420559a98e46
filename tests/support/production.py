"""The production profile for tests: safe settings, and the whole stack as ``deploy/`` runs it.

Two uses:

* :func:`safe_production_settings`: every setting production insists on, with safe values,
  for a test that builds a production app in its own process (``make_app(**...)``,
  ``create_app``, ``load_settings``). Nothing it names is contacted unless the test does so:
  the SAML folder is absent (HIN off) unless one is given.
* :func:`production_stack`: the real thing, in processes: ``flask db upgrade``, then gunicorn
  with ``gunicorn.conf.py`` serving HTTPS itself (``--certfile``/``--keyfile``, a certificate
  made here for 127.0.0.1), ``RELAIS_ENV=production``, PostgreSQL, a Redis of its own (so that
  its RQ queue and rate-limit counters are nobody else's), the RQ worker
  (``flask --app wsgi worker``), SMS through the real twilio client to the local
  Twilio-compatible server, email over SMTP with STARTTLS and a password (aiosmtpd), and a test
  identity provider over HTTPS on another site (``localhost``) signing with its own key. Every
  process writes to a log file that :meth:`ProductionStack.logs` returns, to look for what
  must never be there.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import os
import secrets
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from functools import cache
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from app.auth.saml_settings import generate_keypair, write_dev_settings, write_settings
from tests.support.idp_server import Identity, TestIdp
from tests.support.redis_server import RedisServer
from tests.support.saml_idp import keypair
from tests.support.servers import (
    ROOT,
    AppServer,
    base_environment,
    end_process_group,
    flask_command,
    free_ports,
    run_flask,
)
from tests.support.twilio_server import TwilioServer

#: The ports the production stack's gunicorn may take (one free one is chosen).
PORTS = range(18500, 18600)

_TEST_KEY = base64.b64encode(b"r" * 32).decode()


def safe_production_settings(**changes: Any) -> dict[str, Any]:
    """A production configuration with nothing unsafe in it, for an app in the test's process.

    SMTP and Twilio point at local addresses nothing listens on (a test that sends must start
    its own servers and say so); REDIS_URL is the test run's Redis (or the default local one);
    SAML_SETTINGS_DIR names a folder that does not exist: HIN is off.
    """
    settings: dict[str, Any] = {
        "RELAIS_ENV": "production",
        "SECRET_KEY": "a-random-production-secret-of-more-than-32-characters",
        "DOCUMENT_KEYS": f"prod1:{_TEST_KEY}",
        "REDIS_URL": os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0",
        "MAIL_BACKEND": "smtp",
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": "9",
        "SMS_BACKEND": "twilio",
        "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
        "TWILIO_AUTH_TOKEN": "test-auth-token-not-a-secret",
        "TWILIO_FROM_NUMBER": "+41225550100",
        "TWILIO_API_BASE": "http://127.0.0.1:9",
        "SAML_SETTINGS_DIR": str(ROOT / "tests" / "no-such-saml-folder"),
    }
    settings.update(changes)
    return settings


# --- certificates and SAML settings -------------------------------------------------------


def make_tls_files(folder: Path, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")
                   ) -> tuple[Path, Path]:
    """A self-signed server certificate for ``hosts`` and its key: (cert.pem, key.pem).

    Valid from an hour ago for two days, whatever today's date. The first host is the
    subject's common name; every host is in subjectAltName (IP or DNS).
    """
    folder.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1)).not_valid_after(now + timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


def write_sp_settings(folder: Path, public_base_url: str, idp: Mapping[str, str],
                      sp_key_name: str = "relais-sp", *,
                      sp_pair: tuple[str, str] | None = None) -> Path:
    """Production-like SP settings in ``folder``: a key pair of the test's own (not a
    development one; ``sp_pair`` = (key, cert) PEM to choose it) in ``certs/``, then
    ``settings.json`` and ``advanced_settings.json`` written by the app's own writer, trusting
    ``idp``'s certificate (``entity_id``, ``sso``, ``slo``, ``cert``)."""
    key_pem, cert_pem = sp_pair or keypair(sp_key_name)
    certs = folder / "certs"
    certs.mkdir(parents=True, exist_ok=True)
    (certs / "sp.key").write_text(key_pem, encoding="utf-8")
    (certs / "sp.key").chmod(0o600)
    (certs / "sp.crt").write_text(cert_pem, encoding="utf-8")
    assert write_settings(str(folder), public_base_url, dict(idp))
    return folder


#: The SP's address in the settings folders :func:`saml_folder` writes.
HOSPITAL_BASE = "https://relais.hopital.example"


def idp_trusting(cert_pem: str) -> dict[str, str]:
    """An IdP description (as ``write_settings`` takes it) whose signing certificate is
    ``cert_pem``: HIN's addresses, any certificate."""
    return {"entity_id": "https://idp.hin.ch/idp", "sso": "https://idp.hin.ch/sso",
            "slo": "https://idp.hin.ch/slo", "cert": cert_pem}


def certificate_for(key_pem: str, common_name: str = "relais.hopital.example") -> str:
    """A fresh self-signed certificate (PEM, no development mark) for an existing key."""
    key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1)).not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def saml_folder(folder: Path, *, idp_cert: str | None = None,
                sp_pair: tuple[str, str] | None = None) -> Path:
    """SP settings for :data:`HOSPITAL_BASE` in ``folder`` trusting ``idp_cert`` (default: a
    test IdP's, not a development one) and signing with ``sp_pair`` (default: a test SP key
    pair). With the defaults, production accepts them."""
    return write_sp_settings(folder, HOSPITAL_BASE, idp_trusting(idp_cert or keypair("hin")[1]),
                             sp_pair=sp_pair)


# --- what `make run` leaves on a laptop ----------------------------------------------------


@cache
def laptop_keypair(name: str) -> tuple[str, str]:
    """A development key pair (made by the app's :func:`generate_keypair`, marked as such),
    one per name and test session: RSA 3072 takes a second or more each."""
    return generate_keypair(f"Relais {name} (development)")


def laptop_dev_idp(instance: Path) -> dict[str, str]:
    """``instance/dev-idp`` as the development IdP leaves it (``idp.key``, ``idp.crt``), and
    its description as ``hin dev-settings`` gives it to ``write_dev_settings``."""
    key_pem, cert_pem = laptop_keypair("development IdP")
    folder = instance / "dev-idp"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "idp.key").write_text(key_pem, encoding="utf-8")
    (folder / "idp.crt").write_text(cert_pem, encoding="utf-8")
    return {"entity_id": "http://127.0.0.1:5000/dev-idp/metadata",
            "sso": "http://127.0.0.1:5000/dev-idp/sso",
            "slo": "http://127.0.0.1:5000/dev-idp/slo", "cert": cert_pem}


def laptop_saml_settings(folder: Path, idp: Mapping[str, str],
                         public_base_url: str = "http://127.0.0.1:5000") -> Path:
    """What ``hin dev-settings`` writes into ``folder`` (``make run``: ``instance/saml``): its
    development SP key pair, then the app's own ``write_dev_settings``."""
    key_pem, cert_pem = laptop_keypair("SP")
    (folder / "certs").mkdir(parents=True, exist_ok=True)
    (folder / "certs" / "sp.key").write_text(key_pem, encoding="utf-8")
    (folder / "certs" / "sp.crt").write_text(cert_pem, encoding="utf-8")
    assert write_dev_settings(str(folder), public_base_url, dict(idp))
    return folder


# --- SMTP with STARTTLS and a password ----------------------------------------------------


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], bytes]] = []
        self.changed = threading.Condition()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.changed:
            self.messages.append((list(envelope.rcpt_tos), bytes(envelope.content)))
            self.changed.notify_all()
        return "250 Message accepted for delivery"


class MailServer:
    """aiosmtpd on 127.0.0.1, as a hospital relay: STARTTLS required, then AUTH LOGIN/PLAIN
    with :attr:`username` and :attr:`password`. Messages are kept as raw bytes."""

    def __init__(self, tls: tuple[Path, Path], port: int) -> None:
        self.port = port
        self.username = "relais"
        self.password = secrets.token_urlsafe(18)
        self._inbox = _Inbox()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(tls[0]), str(tls[1]))
        self._controller = Controller(
            self._inbox, hostname="127.0.0.1", port=port, tls_context=context,
            require_starttls=True, authenticator=self._authenticate, auth_required=True,
        )

    def _authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str,
                      auth_data: Any) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and auth_data.login.decode() == \
            self.username and auth_data.password.decode() == self.password
        return AuthResult(success=ok, handled=False)

    def start(self) -> MailServer:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def messages(self) -> list[EmailMessage]:
        with self._inbox.changed:
            raw = [content for _, content in self._inbox.messages]
        return [message_from_bytes(content, policy=policy.default)  # type: ignore[misc]
                for content in raw]

    def wait_for(self, count: int, timeout: float = 60.0) -> list[EmailMessage]:
        """The first ``count`` messages, once there (AssertionError after ``timeout``)."""
        deadline = time.monotonic() + timeout
        with self._inbox.changed:
            while len(self._inbox.messages) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{len(self._inbox.messages)} email(s) arrived in "
                                         f"{timeout} s, {count} expected")
                self._inbox.changed.wait(left)
        return self.messages()[:count]

    def config(self) -> dict[str, str]:
        return {"MAIL_BACKEND": "smtp", "MAIL_SERVER": "127.0.0.1", "MAIL_PORT": str(self.port),
                "MAIL_USE_TLS": "1", "MAIL_USERNAME": self.username,
                "MAIL_PASSWORD": self.password, "MAIL_FROM": "relais@hopital.example"}


# --- a background command (the worker) ----------------------------------------------------


class BackgroundCommand:
    """``flask --app wsgi <args>`` running until :meth:`stop` (SIGTERM, then the group killed),
    its stdout and stderr in one log file."""

    def __init__(self, name: str, args: list[str], settings: Mapping[str, str],
                 log_dir: Path) -> None:
        self.name = name
        self.args = args
        self.env = base_environment(settings)
        self.log_path = log_dir / f"{name}.log"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> BackgroundCommand:
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                flask_command(self.args), cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self, timeout: float = 30.0) -> int | None:
        process, self._process = self._process, None
        if process is None:
            return None
        end_process_group(process, timeout)
        return process.returncode

    def output(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""


# --- the stack ----------------------------------------------------------------------------


@dataclass
class ProductionStack:
    """Everything :func:`production_stack` started, and what the test needs to drive it."""

    web: AppServer
    worker: BackgroundCommand
    twilio: TwilioServer
    mail: MailServer
    idp: TestIdp
    redis: RedisServer
    settings: dict[str, str]
    tls: tuple[Path, Path]
    work: Path
    #: What every command run through :meth:`flask` printed, for the log checks.
    command_outputs: list[subprocess.CompletedProcess[str]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.web.url

    def flask(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        """``flask --app wsgi <args>`` as operations run it (the same settings); must succeed."""
        result = run_flask(list(args), self.settings, timeout=timeout)
        self.command_outputs.append(result)
        assert result.returncode == 0, f"flask {' '.join(args)}:\n{result.stderr}"
        return result

    def logs(self) -> str:
        """Every log line of the stack: gunicorn's and the app's (stderr), the worker's (stdout
        and stderr), the commands' stderr. A command's stdout is where it prints a token or a
        temporary password once, on purpose, to the operator: it is not a log."""
        parts = [self.web.stderr(), self.worker.output()]
        parts += [result.stderr for result in self.command_outputs]
        return "\n".join(parts)


def stack_settings(database_url: str, redis: RedisServer, twilio: TwilioServer,
                   mail: MailServer, tls: tuple[Path, Path], saml_dir: Path,
                   public_base_url: str) -> dict[str, str]:
    """The environment of every process of the stack, as ``/etc/relais/relais.env`` would be."""
    settings = {
        "RELAIS_ENV": "production",
        "SECRET_KEY": secrets.token_urlsafe(48),
        "DOCUMENT_KEYS": "k1:" + base64.b64encode(secrets.token_bytes(32)).decode(),
        "DATABASE_URL": database_url,
        "REDIS_URL": redis.url,
        "PUBLIC_BASE_URL": public_base_url,
        "SAML_SETTINGS_DIR": str(saml_dir),
        "SAML_DEV_IDP": "0",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "INFO",
        # gunicorn serves TLS itself: no proxy in front, no X-Forwarded-* header believed.
        "PROXY_HOPS": "0",
        "GUNICORN_THREADS": "4",
        # The hospital's CA bundle: here the one certificate the SMTP relay presents.
        "SSL_CERT_FILE": str(tls[0]),
    }
    settings.update({key: str(value) for key, value in twilio.config().items()})
    settings.update(mail.config())
    return settings


@contextmanager
def production_stack(work: Path, database_url: str, identities: Mapping[str, Identity],
                     *, worker_interval: int = 2) -> Iterator[ProductionStack]:
    """Start the stack on an empty PostgreSQL database (``database_url``); stop it after.

    ``identities`` are the people the test IdP knows (HIN login -> NameID and attributes).
    The block sees the stack running; on the way out every process is stopped, and the web
    server and the worker must have stopped cleanly (exit status 0).
    """
    tls = make_tls_files(work / "tls")
    (port,) = free_ports(1, PORTS)
    public_base_url = f"https://127.0.0.1:{port}"
    mail_port = free_ports(1, range(port + 1, PORTS.stop))[0]
    with contextlib.ExitStack() as started:
        redis = started.enter_context(RedisServer(work / "redis"))
        twilio = started.enter_context(TwilioServer())
        mail = MailServer(tls, mail_port).start()
        started.callback(mail.stop)
        idp = started.enter_context(TestIdp(tls=tls, sp_cert=keypair("relais-sp")[1],
                                            sp_base=public_base_url, identities=identities))
        saml_dir = write_sp_settings(work / "saml", public_base_url, idp.description())
        settings = stack_settings(database_url, redis, twilio, mail, tls, saml_dir,
                                  public_base_url)
        web = AppServer("web", port, settings, work, production=True, tls=tls)
        worker = BackgroundCommand("worker", ["worker", "--interval", str(worker_interval)],
                                   settings, work)
        stack = ProductionStack(web, worker, twilio, mail, idp, redis, settings, tls, work)
        stack.flask("db", "upgrade")  # the schema first, as README's step 3
        web.start(timeout=60)
        started.callback(web.stop)
        worker.start()
        started.callback(worker.stop)
        yield stack
        assert worker.running, f"the worker died:\n{worker.output()[-3000:]}"
        assert worker.stop() == 0, worker.output()[-3000:]
        assert web.stop() == 0, web.stderr_tail()
