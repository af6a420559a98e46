"""Typed settings, read once at start and validated.

Every setting comes from the environment, or from ``instance/config.py`` (same names), or from
the defaults below. Production refuses to start with unsafe values: a development secret, no
document keys, the development identity provider switched on, console SMS or email (codes and
tokens in the log), no Redis (limits per process), or SAML settings trusting a development
identity provider or signing with a development key.
"""

from __future__ import annotations

import base64
import os
import runpy
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from app.config.policy import PolicyConfig

ENVIRONMENTS = ("development", "testing", "production")

#: Development-only values. Production refuses to start while any of them is in use.
DEV_SECRET_KEY = "relais-development-secret-key-not-for-production"  # noqa: S105
DEV_DOCUMENT_KEYS = "dev1:" + base64.b64encode(b"relais-development-document-key!").decode()


class ConfigError(RuntimeError):
    """The configuration is unsafe or malformed; the application must not start."""


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off", ""}:
        return False
    raise ConfigError(f"not a boolean: {value!r}")


def _int(name: str, value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be an integer, got {value!r}") from None


def _list(value: Any) -> frozenset[str]:
    if isinstance(value, list | tuple | set | frozenset):
        return frozenset(str(v).strip() for v in value if str(v).strip())
    return frozenset(part.strip() for part in str(value).split(",") if part.strip())


def parse_document_keys(value: str) -> tuple[tuple[str, bytes], ...]:
    """Parse ``keyid:base64key,...``; the first key encrypts, all decrypt."""
    keys: list[tuple[str, bytes]] = []
    for item in value.split(","):
        item = item.strip()
        if not item:
            continue
        key_id, sep, encoded = item.partition(":")
        if not sep or not key_id:
            raise ConfigError("DOCUMENT_KEYS entries must read keyid:base64key")
        try:
            key = base64.b64decode(encoded, validate=True)
        except ValueError:
            raise ConfigError(f"DOCUMENT_KEYS key {key_id!r} is not base64") from None
        if len(key) != 32:
            raise ConfigError(f"DOCUMENT_KEYS key {key_id!r} must be 32 bytes (AES-256)")
        if any(existing == key_id for existing, _ in keys):
            raise ConfigError(f"DOCUMENT_KEYS key id {key_id!r} appears twice")
        keys.append((key_id, key))
    if not keys:
        raise ConfigError("DOCUMENT_KEYS holds no key")
    return tuple(keys)


@dataclass(frozen=True)
class Settings:
    """The validated settings. Immutable: nothing changes them after start."""

    env: str
    secret_key: str
    database_url: str
    redis_url: str | None
    document_keys: tuple[tuple[str, bytes], ...]
    public_base_url: str
    max_document_bytes: int
    mail_backend: str
    sms_backend: str
    saml_settings_dir: str
    saml_dev_idp: bool
    policy: PolicyConfig
    #: How many reverse proxies (the TLS proxy ...) stand in front of the app and set the
    #: X-Forwarded-* headers; 0 trusts none of those headers.
    proxy_hops: int = 0
    #: ``json`` (one object per line, for a log pipeline) or ``text`` (a terminal).
    log_format: str = "text"
    #: The root logger's level.
    log_level: str = "INFO"
    extra: Mapping[str, Any] = field(default_factory=dict)

    def flask_config(self) -> dict[str, Any]:
        """The Flask config keys derived from these settings."""
        production = self.env == "production"
        config: dict[str, Any] = {
            "RELAIS_ENV": self.env,
            "TESTING": self.env == "testing",
            "SECRET_KEY": self.secret_key,
            "SQLALCHEMY_DATABASE_URI": self.database_url,
            # In production an SQL error's message keeps the statement but not its parameters:
            # they are patient data, and the message reaches the log with the traceback.
            "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True, "hide_parameters": production},
            "REDIS_URL": self.redis_url,
            "DOCUMENT_KEYS": self.document_keys,
            "PUBLIC_BASE_URL": self.public_base_url,
            "MAX_DOCUMENT_BYTES": self.max_document_bytes,
            # Base64 inflates by 4/3, plus the JSON metadata around the content.
            "MAX_CONTENT_LENGTH": self.max_document_bytes * 4 // 3 + 64 * 1024,
            "MAIL_BACKEND": self.mail_backend,
            "SMS_BACKEND": self.sms_backend,
            "SAML_SETTINGS_DIR": self.saml_settings_dir,
            "SAML_DEV_IDP": self.saml_dev_idp,
            "DISPATCH_POLICY": self.policy,
            "PROXY_HOPS": self.proxy_hops,
            "LOG_FORMAT": self.log_format,
            "LOG_LEVEL": self.log_level,
            # Production is only ever reached over TLS (through the proxy).
            "PREFERRED_URL_SCHEME": "https" if production else "http",
            "SESSION_COOKIE_HTTPONLY": True,
            "SESSION_COOKIE_SAMESITE": "Lax",
            "SESSION_COOKIE_SECURE": production,
            "SESSION_COOKIE_NAME": "__Host-relais" if production else "relais",
            "PERMANENT_SESSION_LIFETIME": timedelta(hours=10),
            "WTF_CSRF_TIME_LIMIT": 3600,
            # Over HTTPS a form POST must also carry a Referer of our own origin (the CSRF
            # token stays the main defence; this refuses a token replayed from another site).
            # Our Referrer-Policy (same-origin, app/web) is what lets browsers send it.
            "WTF_CSRF_SSL_STRICT": True,
            "BABEL_DEFAULT_LOCALE": "fr",
            "BABEL_DEFAULT_TIMEZONE": "Europe/Zurich",
            "LANGUAGES": ("fr", "en"),
        }
        config.update(self.extra)
        return config


def _hours(get: Any, name: str, default: int) -> int:
    return _int(name, get(name, default))


def _policy(get: Any) -> PolicyConfig:
    try:
        return _build_policy(get)
    except ValueError as error:  # PolicyConfig's own checks (a negative delay ...)
        raise ConfigError(f"dispatch policy: {error}") from None


def _build_policy(get: Any) -> PolicyConfig:
    return PolicyConfig(
        block_deceased=_bool(get("DISPATCH_BLOCK_DECEASED", True)),
        block_third_party_data=_bool(get("DISPATCH_BLOCK_THIRD_PARTY_DATA", True)),
        excluded_categories=_list(get("DISPATCH_EXCLUDED_CATEGORIES", "follow_up_note")),
        excluded_services=_list(get("DISPATCH_EXCLUDED_SERVICES", "pedopsychiatrie")),
        sensitive_delay=_bool(get("DISPATCH_SENSITIVE_DELAY", True)),
        outpatient_delay=timedelta(hours=_hours(get, "DISPATCH_OUTPATIENT_DELAY_HOURS", 168)),
        inpatient_delay=timedelta(hours=_hours(get, "DISPATCH_INPATIENT_DELAY_HOURS", 24)),
    )


#: What a production REDIS_URL may start with (redis-py's ``Redis.from_url``).
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")

LOG_FORMATS = ("json", "text")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _logging(get: Any, production: bool) -> tuple[str, str]:
    """LOG_FORMAT (JSON in production, for the log pipeline; text elsewhere) and LOG_LEVEL."""
    log_format = str(get("LOG_FORMAT", "json" if production else "text")).strip().lower()
    if log_format not in LOG_FORMATS:
        raise ConfigError(f"LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}")
    log_level = str(get("LOG_LEVEL", "INFO")).strip().upper()
    if log_level not in LOG_LEVELS:
        raise ConfigError(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}")
    return log_format, log_level


def _refuse_unsafe_production_services(get: Any, mail_backend: str, sms_backend: str,
                                       redis_url: str | None) -> None:
    """Production refuses what would put codes and tokens in the log, or split the limits."""
    # The console senders print each message whole to stdout, which gunicorn and systemd keep
    # in the journal: every sign-in code, every email confirmation link.
    if mail_backend == "console":
        raise ConfigError("production refuses MAIL_BACKEND=console (it prints every email, "
                          "confirmation links included, to the log): set MAIL_BACKEND=smtp")
    if sms_backend == "console":
        raise ConfigError("production refuses SMS_BACKEND=console (it prints every sign-in "
                          "code to the log): set SMS_BACKEND=twilio")
    missing = [name for name in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_FROM_NUMBER")
               if not str(get(name) or "").strip()]
    if missing:
        raise ConfigError(f"production with SMS_BACKEND=twilio needs {', '.join(missing)}")
    # Without Redis every process keeps its own sign-in counters: with 4 workers on 2 servers a
    # limit of 30 tries a minute lets 240 through, and each worker forgets on restart.
    if not redis_url:
        raise ConfigError("production needs REDIS_URL: the sign-in limits and the job queue "
                          "must be shared by every process of every server")
    if not redis_url.startswith(REDIS_SCHEMES):
        raise ConfigError(f"REDIS_URL must be a Redis URL ({', '.join(REDIS_SCHEMES)}...)")
    # Flask-Limiter's own settings pass through (RATELIMIT_*): none may undo the above.
    storage = str(get("RATELIMIT_STORAGE_URI") or redis_url)
    if not storage.startswith(REDIS_SCHEMES):
        raise ConfigError("production refuses RATELIMIT_STORAGE_URI other than Redis: the "
                          "sign-in limits must be shared by every process")
    if not _bool(get("RATELIMIT_ENABLED", True)):
        raise ConfigError("production refuses RATELIMIT_ENABLED off: sign-in must be limited")
    for name in ("RATELIMIT_IN_MEMORY_FALLBACK_ENABLED", "RATELIMIT_SWALLOW_ERRORS"):
        # Either would let sign-in go on, counted per process or not at all, while Redis is
        # away: sign-in fails closed instead (app/auth/limits.py).
        if _bool(get(name, False)):
            raise ConfigError(f"production refuses {name}: sign-in must fail closed")


def _refuse_development_saml(get: Any, instance_path: str, settings_dir: str) -> None:
    """Production refuses SAML settings that trust a development IdP or use a development key.

    The development IdP's key is on every laptop that ran ``make run``; settings trusting its
    certificate (``hin dev-settings`` writes them) would accept a response signed with it for
    any GLN. The settings are read here, at start, whole: weaker than required is refused too.
    """
    from app.config.saml_trust import SettingsError, check_production_trust

    dev_idp_dir = Path(str(get("SAML_DEV_IDP_DIR") or Path(instance_path) / "dev-idp"))
    try:
        check_production_trust(settings_dir, dev_idp_cert=dev_idp_dir / "idp.crt",
                               dev_sp_cert=Path(instance_path) / "saml" / "certs" / "sp.crt")
    except SettingsError as error:
        raise ConfigError(f"production refuses SAML_SETTINGS_DIR ({settings_dir}): {error}"
                          ) from None


def load_settings(
    instance_path: str,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Read the settings: ``overrides`` > environment > ``instance/config.py`` > defaults."""
    environ = os.environ if environ is None else environ
    file_values: dict[str, Any] = {}
    config_file = Path(instance_path) / "config.py"
    if config_file.is_file():
        file_values = {
            k: v for k, v in runpy.run_path(str(config_file)).items() if k.isupper()
        }
    overrides = dict(overrides or {})

    def get(name: str, default: Any = None) -> Any:
        if name in overrides:
            return overrides[name]
        if name in environ:
            return environ[name]
        return file_values.get(name, default)

    env = str(get("RELAIS_ENV", "development")).strip().lower()
    if env not in ENVIRONMENTS:
        raise ConfigError(f"RELAIS_ENV must be one of {', '.join(ENVIRONMENTS)}, got {env!r}")
    production = env == "production"

    secret_key = str(get("SECRET_KEY", DEV_SECRET_KEY))
    keys_value = get("DOCUMENT_KEYS")
    dev_idp = _bool(get("SAML_DEV_IDP", env == "development"))

    if production:
        if secret_key == DEV_SECRET_KEY or len(secret_key) < 32:
            raise ConfigError(
                "production needs SECRET_KEY: a random value of 32 characters or more"
            )
        if not keys_value or keys_value == DEV_DOCUMENT_KEYS:
            raise ConfigError("production needs DOCUMENT_KEYS (keyid:base64 of 32 random bytes)")
        # The development key is public (it is in this file): it must not even decrypt.
        dev_keys = {key for _, key in parse_document_keys(DEV_DOCUMENT_KEYS)}
        if any(key in dev_keys for _, key in parse_document_keys(str(keys_value))):
            raise ConfigError("production refuses the development key in DOCUMENT_KEYS")
        if dev_idp:
            raise ConfigError("production refuses the development identity provider (SAML_DEV_IDP)")

    mail_backend = str(get("MAIL_BACKEND", "console"))
    if mail_backend not in {"console", "smtp"}:
        raise ConfigError("MAIL_BACKEND must be console or smtp")
    sms_backend = str(get("SMS_BACKEND", "console"))
    if sms_backend not in {"console", "twilio"}:
        raise ConfigError("SMS_BACKEND must be console or twilio")
    redis_url = str(get("REDIS_URL") or "").strip() or None
    saml_settings_dir = str(get("SAML_SETTINGS_DIR", str(Path(instance_path) / "saml")))
    if production:
        _refuse_unsafe_production_services(get, mail_backend, sms_backend, redis_url)
        _refuse_development_saml(get, instance_path, saml_settings_dir)

    max_bytes = _int("MAX_DOCUMENT_BYTES", get("MAX_DOCUMENT_BYTES", 20 * 1024 * 1024))
    if max_bytes <= 0:
        raise ConfigError("MAX_DOCUMENT_BYTES must be positive")

    proxy_hops = _int("PROXY_HOPS", get("PROXY_HOPS", 0))
    if not 0 <= proxy_hops <= 5:
        raise ConfigError("PROXY_HOPS must be from 0 to 5")

    log_format, log_level = _logging(get, production)

    # How long a document's content is kept, counted from its signature (medical-record law).
    retention_years = _int("DOCUMENT_RETENTION_YEARS", get("DOCUMENT_RETENTION_YEARS", 20))
    if retention_years < 1:
        raise ConfigError("DOCUMENT_RETENTION_YEARS must be 1 or more")

    known = {
        "RELAIS_ENV", "SECRET_KEY", "DATABASE_URL", "REDIS_URL", "DOCUMENT_KEYS",
        "PUBLIC_BASE_URL", "MAX_DOCUMENT_BYTES", "MAIL_BACKEND", "SMS_BACKEND",
        "SAML_SETTINGS_DIR", "SAML_DEV_IDP", "PROXY_HOPS", "LOG_FORMAT", "LOG_LEVEL",
    }
    # Other keys (MAIL_*, TWILIO_*, SAML_ATTR_*, DISPATCH_* ...) are passed through to Flask's
    # config for the modules that own them; an override or instance file may set any of them.
    passthrough_prefixes = ("MAIL_", "TWILIO_", "SAML_ATTR_", "DISPATCH_", "RATELIMIT_",
                            "SESSION_IDLE_", "SESSION_ABSOLUTE_", "DESK_")
    extra: dict[str, Any] = {
        "MAIL_SERVER": "localhost",
        "MAIL_PORT": 25,
        "MAIL_USE_TLS": False,
        "MAIL_USERNAME": None,
        "MAIL_PASSWORD": None,
        "MAIL_FROM": "relais@localhost",
        "TWILIO_ACCOUNT_SID": None,
        "TWILIO_AUTH_TOKEN": None,
        "TWILIO_FROM_NUMBER": None,
        "TWILIO_API_BASE": "https://api.twilio.com",
        "SAML_ATTR_GLN": "gln",
        "SAML_ATTR_EMAIL": "email",
        "SAML_ATTR_GIVEN_NAME": "givenName",
        "SAML_ATTR_FAMILY_NAME": "surname",
        # A signed-in session ends after 15 minutes without a request, or 10 hours in all.
        "SESSION_IDLE_MINUTES": 15,
        "SESSION_ABSOLUTE_HOURS": 10,
        # The service desk shown on the help page (myHUG seed: cybersanté & télémédecine).
        "DESK_PHONE": "+41 22 372 62 01",
        "DESK_EMAIL": "myhug@hcuge.ch",
        "DESK_HOURS": "Lundi au vendredi, 8 h – 12 h et 13 h – 17 h (jeudi dès 10 h)",
        "DESK_ADDRESS": "HUG – Rue Gabrielle-Perret-Gentil 4 – CH-1211 Genève 14",
    }
    for source in (file_values, environ, overrides):
        for name, value in source.items():
            if name in known:
                continue
            if name.startswith(passthrough_prefixes) or source is not environ:
                extra[name] = value
    extra["DOCUMENT_RETENTION_YEARS"] = retention_years
    extra["MAIL_PORT"] = _int("MAIL_PORT", extra["MAIL_PORT"])
    extra["MAIL_USE_TLS"] = _bool(extra["MAIL_USE_TLS"])
    for name in ("SESSION_IDLE_MINUTES", "SESSION_ABSOLUTE_HOURS"):
        extra[name] = _int(name, extra[name])
        if extra[name] <= 0:
            raise ConfigError(f"{name} must be positive")

    return Settings(
        env=env,
        secret_key=secret_key,
        database_url=str(
            get("DATABASE_URL", "sqlite:///" + str(Path(instance_path) / "relais.db"))
        ),
        redis_url=redis_url,
        document_keys=parse_document_keys(str(keys_value or DEV_DOCUMENT_KEYS)),
        public_base_url=str(get("PUBLIC_BASE_URL", "http://127.0.0.1:5000")).rstrip("/"),
        max_document_bytes=max_bytes,
        mail_backend=mail_backend,
        sms_backend=sms_backend,
        saml_settings_dir=saml_settings_dir,
        saml_dev_idp=dev_idp,
        policy=_policy(get),
        proxy_hops=proxy_hops,
        log_format=log_format,
        log_level=log_level,
        extra=extra,
    )
