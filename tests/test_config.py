"""Settings: the documented defaults, and production's refusal of unsafe values."""

from __future__ import annotations

import base64
import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from app import create_app
from app.config import (
    DEV_DOCUMENT_KEYS,
    DEV_SECRET_KEY,
    ConfigError,
    Settings,
    load_settings,
    parse_document_keys,
)
from app.config.saml_trust import (
    DEV_MARK_OID,
    is_development_certificate,
    load_certificate,
)
from tests.support.production import (
    certificate_for,
    idp_trusting,
    laptop_dev_idp,
    laptop_keypair,
    laptop_saml_settings,
    make_tls_files,
    safe_production_settings,
    saml_folder,
)
from tests.support.saml_idp import keypair

PROD_KEY = base64.b64encode(b"p" * 32).decode()
OTHER_KEY = base64.b64encode(b"q" * 32).decode()

#: A production configuration with nothing unsafe in it (HIN not configured: see the SAML
#: section below for settings folders).
SAFE_PRODUCTION: dict[str, str] = {
    **{name: str(value) for name, value in safe_production_settings().items()},
    "DOCUMENT_KEYS": f"prod1:{PROD_KEY}",
    "DATABASE_URL": "postgresql+psycopg://relais@db/relais",
}


def load(tmp_path: Path, environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
    return load_settings(str(tmp_path), overrides, environ or {})


# --- defaults ---------------------------------------------------------------------------------


def test_defaults_match_the_interfaces(tmp_path: Path) -> None:
    settings = load(tmp_path)
    config = settings.flask_config()

    assert settings.env == "development"
    assert settings.database_url == f"sqlite:///{tmp_path / 'relais.db'}"
    assert settings.redis_url is None
    assert settings.public_base_url == "http://127.0.0.1:5000"
    assert settings.max_document_bytes == 20971520
    assert settings.mail_backend == "console"
    assert settings.sms_backend == "console"
    assert settings.saml_settings_dir == str(tmp_path / "saml")
    assert settings.saml_dev_idp is True
    assert settings.secret_key == DEV_SECRET_KEY
    assert settings.document_keys == parse_document_keys(DEV_DOCUMENT_KEYS)

    assert config["MAIL_SERVER"] == "localhost"
    assert config["MAIL_PORT"] == 25
    assert config["MAIL_USE_TLS"] is False
    assert config["MAIL_USERNAME"] is None
    assert config["MAIL_PASSWORD"] is None
    assert config["MAIL_FROM"] == "relais@localhost"
    assert config["TWILIO_ACCOUNT_SID"] is None
    assert config["TWILIO_AUTH_TOKEN"] is None
    assert config["TWILIO_FROM_NUMBER"] is None
    assert config["TWILIO_API_BASE"] == "https://api.twilio.com"
    assert config["SAML_ATTR_GLN"] == "gln"
    assert config["SAML_ATTR_EMAIL"] == "email"
    assert config["SAML_ATTR_GIVEN_NAME"] == "givenName"
    assert config["SAML_ATTR_FAMILY_NAME"] == "surname"
    assert config["MAX_DOCUMENT_BYTES"] == 20971520
    assert config["SQLALCHEMY_DATABASE_URI"] == settings.database_url


@pytest.mark.parametrize(
    ("env", "dev_idp"), [("development", True), ("testing", False), ("production", False)]
)
def test_development_identity_provider_is_on_only_in_development(
    tmp_path: Path, env: str, dev_idp: bool
) -> None:
    values = {**SAFE_PRODUCTION, "RELAIS_ENV": env}
    assert load(tmp_path, values).saml_dev_idp is dev_idp


def test_environment_values_are_typed(tmp_path: Path) -> None:
    settings = load(tmp_path, {
        "MAX_DOCUMENT_BYTES": "1048576",
        "MAIL_PORT": "587",
        "MAIL_USE_TLS": "1",
        "PUBLIC_BASE_URL": "https://relais.example.ch/",
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "SAML_ATTR_GLN": "urn:oid:2.51.1.1",
    })
    config = settings.flask_config()
    assert settings.max_document_bytes == 1048576
    assert config["MAIL_PORT"] == 587
    assert config["MAIL_USE_TLS"] is True
    # Trailing slash dropped: links are built as base + path.
    assert settings.public_base_url == "https://relais.example.ch"
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert config["SAML_ATTR_GLN"] == "urn:oid:2.51.1.1"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MAX_DOCUMENT_BYTES", "twenty"),
        ("MAX_DOCUMENT_BYTES", "0"),
        ("MAIL_PORT", "smtp"),
        ("MAIL_USE_TLS", "maybe"),
        ("MAIL_BACKEND", "sendmail"),
        ("SMS_BACKEND", "carrier-pigeon"),
        ("SAML_DEV_IDP", "perhaps"),
        ("DISPATCH_OUTPATIENT_DELAY_HOURS", "a week"),
    ],
)
def test_malformed_values_are_refused(tmp_path: Path, name: str, value: str) -> None:
    with pytest.raises(ConfigError):
        load(tmp_path, {name: value})


def test_unknown_environment_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="RELAIS_ENV"):
        load(tmp_path, {"RELAIS_ENV": "staging"})


# --- production refuses unsafe values -----------------------------------------------------------


def test_safe_production_configuration_is_accepted(tmp_path: Path) -> None:
    settings = load(tmp_path, SAFE_PRODUCTION)
    config = settings.flask_config()
    assert settings.env == "production"
    assert settings.saml_dev_idp is False
    assert settings.document_keys == (("prod1", b"p" * 32),)
    assert config["SESSION_COOKIE_SECURE"] is True
    assert config["SESSION_COOKIE_NAME"].startswith("__Host-")
    assert config["TESTING"] is False


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"SECRET_KEY": None}, "SECRET_KEY"),
        ({"SECRET_KEY": DEV_SECRET_KEY}, "SECRET_KEY"),
        ({"SECRET_KEY": "short-secret"}, "SECRET_KEY"),
        ({"DOCUMENT_KEYS": None}, "DOCUMENT_KEYS"),
        ({"DOCUMENT_KEYS": ""}, "DOCUMENT_KEYS"),
        ({"DOCUMENT_KEYS": DEV_DOCUMENT_KEYS}, "DOCUMENT_KEYS"),
        # The development key must not decrypt in production either, even as a second key.
        ({"DOCUMENT_KEYS": f"prod1:{PROD_KEY},{DEV_DOCUMENT_KEYS}"}, "DOCUMENT_KEYS"),
        ({"SAML_DEV_IDP": "1"}, "SAML_DEV_IDP"),
        # Console senders print codes and confirmation links to the log (the default too).
        ({"MAIL_BACKEND": "console"}, "MAIL_BACKEND"),
        ({"MAIL_BACKEND": None}, "MAIL_BACKEND"),
        ({"SMS_BACKEND": "console"}, "SMS_BACKEND"),
        ({"SMS_BACKEND": None}, "SMS_BACKEND"),
        ({"TWILIO_AUTH_TOKEN": ""}, "TWILIO_AUTH_TOKEN"),
        ({"TWILIO_ACCOUNT_SID": None, "TWILIO_FROM_NUMBER": " "},
         "TWILIO_ACCOUNT_SID, TWILIO_FROM_NUMBER"),
        # Without Redis each process keeps its own sign-in counters.
        ({"REDIS_URL": None}, "REDIS_URL"),
        ({"REDIS_URL": " "}, "REDIS_URL"),
        ({"REDIS_URL": "memory://"}, "REDIS_URL"),
        ({"RATELIMIT_STORAGE_URI": "memory://"}, "RATELIMIT_STORAGE_URI"),
        ({"RATELIMIT_ENABLED": "0"}, "RATELIMIT_ENABLED"),
        ({"RATELIMIT_IN_MEMORY_FALLBACK_ENABLED": "1"}, "RATELIMIT_IN_MEMORY_FALLBACK_ENABLED"),
        ({"RATELIMIT_SWALLOW_ERRORS": "true"}, "RATELIMIT_SWALLOW_ERRORS"),
    ],
    ids=["no-secret", "dev-secret", "short-secret", "no-keys", "empty-keys", "dev-keys",
         "dev-key-among-others", "dev-idp", "console-mail", "default-mail", "console-sms",
         "default-sms", "no-twilio-token", "no-twilio-sid-nor-sender", "no-redis",
         "blank-redis", "memory-redis", "memory-limits", "limits-off", "limits-fall-back",
         "limits-swallow-errors"],
)
def test_production_refuses_unsafe_values(
    tmp_path: Path, change: dict[str, str | None], problem: str
) -> None:
    values = {**SAFE_PRODUCTION, **change}
    environ = {k: v for k, v in values.items() if v is not None}
    with pytest.raises(ConfigError, match=problem):
        load(tmp_path, environ)


def test_create_app_in_production_with_unsafe_settings_raises() -> None:
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        create_app({**SAFE_PRODUCTION, "SECRET_KEY": DEV_SECRET_KEY})
    with pytest.raises(ConfigError, match="SAML_DEV_IDP"):
        create_app({**SAFE_PRODUCTION, "SAML_DEV_IDP": True})
    with pytest.raises(ConfigError, match="SMS_BACKEND"):
        create_app({**SAFE_PRODUCTION, "SMS_BACKEND": "console"})
    with pytest.raises(ConfigError, match="REDIS_URL"):
        create_app({**SAFE_PRODUCTION, "REDIS_URL": None})


def test_create_app_in_production_with_safe_settings_starts() -> None:
    app = create_app(SAFE_PRODUCTION)
    assert app.config["RELAIS_ENV"] == "production"
    assert app.config["SAML_DEV_IDP"] is False


# --- DOCUMENT_KEYS ------------------------------------------------------------------------------


def test_document_keys_parse_in_order() -> None:
    keys = parse_document_keys(f" new:{OTHER_KEY} , old:{PROD_KEY} ")
    assert keys == (("new", b"q" * 32), ("old", b"p" * 32))


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("k1:not-base64!!", "base64"),
        (f"k1:{base64.b64encode(b'x' * 16).decode()}", "32 bytes"),
        (f"k1:{PROD_KEY},k1:{OTHER_KEY}", "twice"),
        ("", "no key"),
        (" , ", "no key"),
        (PROD_KEY, "keyid:base64key"),
        (f":{PROD_KEY}", "keyid:base64key"),
    ],
    ids=["bad-base64", "wrong-length", "duplicate-id", "empty", "only-commas", "no-id",
         "empty-id"],
)
def test_bad_document_keys_are_refused(value: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        parse_document_keys(value)


def test_bad_document_keys_stop_the_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="DOCUMENT_KEYS"):
        load(tmp_path, {"DOCUMENT_KEYS": "k1:!!!"})


# --- instance/config.py and the environment -----------------------------------------------------


def write_instance_config(tmp_path: Path) -> None:
    (tmp_path / "config.py").write_text(
        "PUBLIC_BASE_URL = 'https://from-file.example.ch'\n"
        "MAX_DOCUMENT_BYTES = 1000\n"
        "MAIL_BACKEND = 'smtp'\n"
        "MAIL_SERVER = 'smtp.from-file.example.ch'\n"
        "TWILIO_FROM_NUMBER = '+41225550000'\n"
        "lowercase_is_ignored = 'x'\n",
        encoding="utf-8",
    )


def test_instance_config_file_is_read(tmp_path: Path) -> None:
    write_instance_config(tmp_path)
    settings = load(tmp_path)
    config = settings.flask_config()
    assert settings.public_base_url == "https://from-file.example.ch"
    assert settings.max_document_bytes == 1000
    assert settings.mail_backend == "smtp"
    assert config["MAIL_SERVER"] == "smtp.from-file.example.ch"
    assert config["TWILIO_FROM_NUMBER"] == "+41225550000"
    assert "lowercase_is_ignored" not in config


def test_environment_wins_over_instance_config(tmp_path: Path) -> None:
    write_instance_config(tmp_path)
    settings = load(tmp_path, {
        "PUBLIC_BASE_URL": "https://from-env.example.ch",
        "MAX_DOCUMENT_BYTES": "2000",
        "MAIL_SERVER": "smtp.from-env.example.ch",
    })
    config = settings.flask_config()
    assert settings.public_base_url == "https://from-env.example.ch"
    assert settings.max_document_bytes == 2000
    assert config["MAIL_SERVER"] == "smtp.from-env.example.ch"
    # What the environment does not set still comes from the file.
    assert settings.mail_backend == "smtp"


def test_overrides_win_over_the_environment(tmp_path: Path) -> None:
    settings = load_settings(
        str(tmp_path), {"PUBLIC_BASE_URL": "https://override.example.ch"},
        {"PUBLIC_BASE_URL": "https://from-env.example.ch"},
    )
    assert settings.public_base_url == "https://override.example.ch"


def test_unrelated_environment_variables_stay_out_of_the_flask_config(tmp_path: Path) -> None:
    config = load(tmp_path, {"HOME": "/root", "PATH": "/usr/bin"}).flask_config()
    assert "HOME" not in config
    assert "PATH" not in config


def test_production_checks_apply_to_the_instance_file_too(tmp_path: Path) -> None:
    (tmp_path / "config.py").write_text(
        f"SECRET_KEY = {DEV_SECRET_KEY!r}\n", encoding="utf-8"
    )
    environ = {k: v for k, v in SAFE_PRODUCTION.items() if k != "SECRET_KEY"}
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        load(tmp_path, environ)


# --- dispatch policy switches ------------------------------------------------------------------


def test_default_policy_is_the_cara_principles(tmp_path: Path) -> None:
    policy = load(tmp_path).policy
    assert policy.sensitive_delay is True
    assert policy.outpatient_delay == timedelta(days=7)
    assert policy.inpatient_delay == timedelta(hours=24)
    assert policy.excluded_services == frozenset({"pedopsychiatrie"})
    assert policy.excluded_categories == frozenset({"follow_up_note"})
    assert policy.block_third_party_data is True
    assert policy.block_deceased is True


def test_policy_switches_reach_the_policy_config(tmp_path: Path) -> None:
    settings = load(tmp_path, {
        "DISPATCH_SENSITIVE_DELAY": "0",
        "DISPATCH_EXCLUDED_SERVICES": "pedopsychiatrie, psychiatrie ,",
        "DISPATCH_EXCLUDED_CATEGORIES": "",
        "DISPATCH_BLOCK_THIRD_PARTY_DATA": "off",
        "DISPATCH_OUTPATIENT_DELAY_HOURS": "72",
        "DISPATCH_INPATIENT_DELAY_HOURS": "12",
    })
    policy = settings.policy
    assert policy.sensitive_delay is False
    assert policy.excluded_services == frozenset({"pedopsychiatrie", "psychiatrie"})
    assert policy.excluded_categories == frozenset()
    assert policy.block_third_party_data is False
    assert policy.outpatient_delay == timedelta(hours=72)
    assert policy.inpatient_delay == timedelta(hours=12)
    assert settings.flask_config()["DISPATCH_POLICY"] == policy


def test_policy_from_instance_file_accepts_lists(tmp_path: Path) -> None:
    (tmp_path / "config.py").write_text(
        "DISPATCH_EXCLUDED_SERVICES = ['pedopsychiatrie', 'genetique']\n", encoding="utf-8"
    )
    assert load(tmp_path).policy.excluded_services == frozenset({"pedopsychiatrie", "genetique"})


def test_negative_delay_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="negative"):
        load(tmp_path, {"DISPATCH_OUTPATIENT_DELAY_HOURS": "-1"})


# --- reverse proxy ------------------------------------------------------------------------------


def test_no_proxy_is_trusted_by_default(tmp_path: Path) -> None:
    settings = load(tmp_path)
    assert settings.proxy_hops == 0
    assert settings.flask_config()["PREFERRED_URL_SCHEME"] == "http"
    assert load(tmp_path, SAFE_PRODUCTION).flask_config()["PREFERRED_URL_SCHEME"] == "https"


@pytest.mark.parametrize("value", ["-1", "6", "one"])
def test_bad_proxy_hops_are_refused(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match="PROXY_HOPS"):
        load(tmp_path, {"PROXY_HOPS": value})


# --- production refuses development SAML settings -------------------------------------------
#
# `load(tmp_path, ...)` takes tmp_path as the instance folder: `laptop_dev_idp(tmp_path)` and
# `laptop_saml_settings(tmp_path / "saml", ...)` leave in it what `make run` leaves in instance/.


def production_with_saml(instance: Path, folder: Path, **changes: str) -> Settings:
    return load(instance, {**SAFE_PRODUCTION, "SAML_SETTINGS_DIR": str(folder), **changes})


def test_the_key_pairs_made_for_a_laptop_carry_the_development_mark(tmp_path: Path) -> None:
    # What the app itself makes for a laptop: the development IdP's pair, hin dev-settings' pair
    with create_app({"SAML_DEV_IDP": "1", "SAML_DEV_IDP_DIR": str(tmp_path / "dev-idp"),
                     "SAML_SETTINGS_DIR": str(tmp_path / "saml")}).app_context():
        from flask import current_app

        from app.auth.saml_settings import write_dev_settings_for

        assert write_dev_settings_for(current_app)
    for pem in ((tmp_path / "dev-idp" / "idp.crt").read_text(),
                (tmp_path / "saml" / "certs" / "sp.crt").read_text()):
        certificate = load_certificate(pem)
        assert is_development_certificate(certificate)
        assert certificate.extensions.get_extension_for_oid(DEV_MARK_OID).critical is False
    # ... and nothing else does
    assert not is_development_certificate(load_certificate(keypair("hin")[1]))
    assert not is_development_certificate(load_certificate(make_tls_files(tmp_path)[0]
                                                           .read_text()))


def test_production_accepts_settings_of_its_own(tmp_path: Path) -> None:
    folder = saml_folder(tmp_path / "etc-relais-saml")
    # Even beside what `make run` left in the instance folder.
    laptop_saml_settings(tmp_path / "saml", laptop_dev_idp(tmp_path))
    settings = production_with_saml(tmp_path, folder)
    assert settings.saml_settings_dir == str(folder)


def test_production_refuses_the_settings_make_run_writes(tmp_path: Path) -> None:
    # Given the folder `make run` (hin dev-settings) wrote, trusting the development IdP
    laptop_saml_settings(tmp_path / "saml", laptop_dev_idp(tmp_path))
    # Then production refuses to start with it, naming the setting and the reason
    with pytest.raises(ConfigError, match=r"SAML_SETTINGS_DIR .*the IdP certificate is a "
                                          r"development one"):
        production_with_saml(tmp_path, tmp_path / "saml")


def _refusal(tmp_path: Path, case: str) -> Path:
    """A SAML settings folder with one unsafe thing in it; the rest as production's own."""
    folder = tmp_path / "etc-relais-saml"
    if case == "idp-cert-made-for-a-laptop":
        saml_folder(folder, idp_cert=laptop_keypair("SP")[1])  # any hin dev-settings pair
    elif case == "idp-cert-of-the-dev-idp":
        # The development IdP's certificate itself, even without the mark (one made by hand,
        # or by an older Relais): it is known by its key.
        _, cert = keypair("unmarked-dev-idp")
        (tmp_path / "dev-idp").mkdir()
        (tmp_path / "dev-idp" / "idp.crt").write_text(cert)
        saml_folder(folder, idp_cert=cert)
    elif case == "dev-cert-among-several":
        saml_folder(folder)
        settings = json.loads((folder / "settings.json").read_text())
        settings["idp"]["x509certMulti"] = {"signing": [
            settings["idp"]["x509cert"], laptop_dev_idp(tmp_path)["cert"]]}
        (folder / "settings.json").write_text(json.dumps(settings))
    elif case == "sp-cert-made-for-a-laptop":
        laptop_saml_settings(folder, idp_trusting(keypair("hin")[1]))
    elif case == "sp-key-of-make-run-with-a-new-cert":
        # The key `make run` made, dressed in a certificate of its own
        laptop_saml_settings(tmp_path / "saml", laptop_dev_idp(tmp_path))
        dev_key = (tmp_path / "saml" / "certs" / "sp.key").read_text()
        saml_folder(folder, sp_pair=(dev_key, certificate_for(dev_key)))
    elif case == "sp-key-of-the-dev-idp":
        laptop_dev_idp(tmp_path)
        dev_key = (tmp_path / "dev-idp" / "idp.key").read_text()
        saml_folder(folder, sp_pair=(dev_key, certificate_for(dev_key)))
    elif case == "sp-key-not-of-its-cert":
        saml_folder(folder, sp_pair=(keypair("sp-a")[0], keypair("sp-b")[1]))
    elif case == "assertions-unsigned":
        saml_folder(folder)
        advanced = json.loads((folder / "advanced_settings.json").read_text())
        advanced["security"]["wantAssertionsSigned"] = False
        (folder / "advanced_settings.json").write_text(json.dumps(advanced))
    elif case == "unreadable":
        folder.mkdir()
        (folder / "settings.json").write_text("{not json")
    else:
        raise AssertionError(case)
    return folder


SAML_REFUSALS = {
    "idp-cert-made-for-a-laptop": "the IdP certificate is a development one",
    "idp-cert-of-the-dev-idp": "the IdP certificate is the development identity provider's",
    "dev-cert-among-several": "the IdP certificate is a development one",
    "sp-cert-made-for-a-laptop": "the SP certificate",
    "sp-key-of-make-run-with-a-new-cert": r"the SP key \(certs/sp.key\) is the development one",
    "sp-key-of-the-dev-idp": r"the SP key \(certs/sp.key\) is the development one",
    "sp-key-not-of-its-cert": "does not belong to the SP certificate",
    "assertions-unsigned": "security.wantAssertionsSigned must be True",
    "unreadable": "unreadable settings",
}


@pytest.mark.parametrize("case", sorted(SAML_REFUSALS))
def test_production_refuses_development_or_weak_saml_settings(tmp_path: Path,
                                                              case: str) -> None:
    folder = _refusal(tmp_path, case)
    with pytest.raises(ConfigError) as refused:
        production_with_saml(tmp_path, folder)
    message = str(refused.value)
    assert message.startswith(f"production refuses SAML_SETTINGS_DIR ({folder}): ")
    assert re.search(SAML_REFUSALS[case], message), message
    # The same folder is fine on a laptop: only production refuses it.
    load(tmp_path, {"SAML_SETTINGS_DIR": str(folder)})


def test_the_development_idp_folder_may_be_moved_and_is_still_known(tmp_path: Path) -> None:
    _, cert = keypair("unmarked-dev-idp")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "idp.crt").write_text(cert)
    folder = saml_folder(tmp_path / "etc-relais-saml", idp_cert=cert)
    with pytest.raises(ConfigError, match="development identity provider's"):
        production_with_saml(tmp_path, folder, SAML_DEV_IDP_DIR=str(tmp_path / "elsewhere"))
