"""The ``users`` commands (issue 3): staff and desk accounts from the command line."""

from __future__ import annotations

import re

import pyotp
import pytest
from flask import Flask
from flask.testing import FlaskCliRunner
from sqlalchemy import func, select

from app.audit import CLI
from app.auth.passwords import verify_password
from app.auth.staff_factors import issue_recovery_codes, totp_secret, verify_staff_totp
from app.extensions import db
from app.models import RecoveryCode, StaffUser
from app.models.base import utcnow
from tests.conftest import audit_text


@pytest.fixture()
def runner(app: Flask) -> FlaskCliRunner:
    return app.test_cli_runner()


def printed(output: str, label: str) -> str:
    """The value of a ``label: value`` line, which must appear exactly once."""
    values = re.findall(rf"^{re.escape(label)}: (\S+)$", output, re.MULTILINE)
    assert len(values) == 1, output
    return values[0]


def staff_count() -> int:
    return int(db.session.scalar(select(func.count()).select_from(StaffUser)) or 0)


def staff(login: str) -> StaffUser:
    db.session.expire_all()  # the command committed in its own session use
    user = db.session.scalar(select(StaffUser).where(StaffUser.login == login))
    assert user is not None
    return user


def create(runner: FlaskCliRunner, login: str = "m.dupont", role: str = "staff") -> str:
    result = runner.invoke(args=["users", "create-staff", login, "--role", role])
    assert result.exit_code == 0, result.output
    return result.output


# --- create-staff ---------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["staff", "desk"])
def test_create_staff_prints_login_password_and_uri_once(
    runner: FlaskCliRunner, role: str
) -> None:
    # Given an account created on the command line
    output = create(runner, "m.dupont", role)

    # Then each one-time value is printed exactly once, and they work
    assert printed(output, "login") == "m.dupont"
    password = printed(output, "temporary password")
    uri = printed(output, "TOTP provisioning URI")
    assert output.count(password) == 1
    assert output.count(uri) == 1
    user = staff("m.dupont")
    assert user.role == role
    assert user.active and user.must_change_password
    assert verify_password(user.password_hash, password)
    assert uri.startswith("otpauth://totp/Relais:m.dupont?")
    secret = pyotp.parse_uri(uri).secret
    assert secret == totp_secret(user)
    assert verify_staff_totp(user, pyotp.TOTP(secret).now(), utcnow(), CLI)


def test_create_staff_never_writes_the_password_or_secret_to_the_audit(
    runner: FlaskCliRunner,
) -> None:
    output = create(runner)
    password = printed(output, "temporary password")
    uri = printed(output, "TOTP provisioning URI")
    secret = str(pyotp.parse_uri(uri).secret)
    trail = audit_text()
    assert '"staff.created"' in trail and "staff:m.dupont" in trail
    for value in (password, password.replace("-", ""), uri, secret, secret.lower()):
        assert value not in trail


@pytest.mark.parametrize("role", ["admin", "doctor", "STAFF", ""])
def test_create_staff_refuses_an_unknown_role_and_stores_nothing(
    runner: FlaskCliRunner, role: str
) -> None:
    result = runner.invoke(args=["users", "create-staff", "m.dupont", "--role", role])
    assert result.exit_code == 1
    assert "role" in result.output
    assert "temporary password" not in result.output
    assert staff_count() == 0
    assert audit_text() == ""


def test_create_staff_needs_a_role(runner: FlaskCliRunner) -> None:
    result = runner.invoke(args=["users", "create-staff", "m.dupont"])
    assert result.exit_code != 0
    assert staff_count() == 0


@pytest.mark.parametrize("login", ["ab", "M.Dupont", "m dupont", "x" * 65])
def test_create_staff_refuses_a_malformed_login(runner: FlaskCliRunner, login: str) -> None:
    result = runner.invoke(args=["users", "create-staff", login, "--role", "staff"])
    assert result.exit_code == 1
    assert "login" in result.output
    assert staff_count() == 0


def test_create_staff_refuses_a_login_already_taken(runner: FlaskCliRunner) -> None:
    # Given a staff account
    first = create(runner, "m.dupont", "staff")
    hash_before = staff("m.dupont").password_hash

    # When the same login is created again
    result = runner.invoke(args=["users", "create-staff", "m.dupont", "--role", "desk"])

    # Then it is refused with a clear message, and the first account is untouched
    assert result.exit_code == 1
    assert "already taken" in result.output
    assert "temporary password" not in result.output
    assert staff_count() == 1
    user = staff("m.dupont")
    assert user.role == "staff"
    assert user.password_hash == hash_before
    assert verify_password(user.password_hash, printed(first, "temporary password"))
    assert audit_text().count("staff.created") == 1


# --- deactivate -----------------------------------------------------------------------------


def test_deactivate_ends_the_account(runner: FlaskCliRunner) -> None:
    create(runner)
    result = runner.invoke(args=["users", "deactivate", "m.dupont"])
    assert result.exit_code == 0, result.output
    user = staff("m.dupont")
    assert user.active is False
    assert user.deactivated_at is not None
    assert '"staff.deactivated"' in audit_text()


def test_deactivate_an_unknown_login_exits_1(runner: FlaskCliRunner) -> None:
    result = runner.invoke(args=["users", "deactivate", "nobody"])
    assert result.exit_code == 1
    assert "no staff account" in result.output
    assert audit_text() == ""


# --- reset-totp -----------------------------------------------------------------------------


def test_reset_totp_prints_a_new_secret_and_clears_the_enrolment(
    runner: FlaskCliRunner,
) -> None:
    # Given an enrolled account whose last code was accepted, with recovery codes
    first_uri = printed(create(runner), "TOTP provisioning URI")
    user = staff("m.dupont")
    assert verify_staff_totp(user, pyotp.parse_uri(first_uri).now(), utcnow(), CLI)
    issue_recovery_codes(user, CLI)
    db.session.commit()
    assert user.totp_last_counter is not None

    # When the authenticator is reset on the command line
    result = runner.invoke(args=["users", "reset-totp", "m.dupont"])

    # Then a different secret is printed once, and the old enrolment is gone
    assert result.exit_code == 0, result.output
    new_uri = printed(result.output, "TOTP provisioning URI")
    new_secret = pyotp.parse_uri(new_uri).secret
    assert new_secret != pyotp.parse_uri(first_uri).secret
    user = staff("m.dupont")
    assert totp_secret(user) == new_secret
    assert user.totp_last_counter is None
    assert user.totp_confirmed_at is None
    assert db.session.scalars(select(RecoveryCode)).all() == []
    trail = audit_text()
    assert '"staff.totp_reset"' in trail
    assert str(new_secret) not in trail


def test_reset_totp_of_an_unknown_login_exits_1(runner: FlaskCliRunner) -> None:
    result = runner.invoke(args=["users", "reset-totp", "nobody"])
    assert result.exit_code == 1
    assert "TOTP provisioning URI" not in result.output


def test_reset_totp_of_a_deactivated_account_exits_1_and_keeps_the_secret(
    runner: FlaskCliRunner,
) -> None:
    create(runner)
    secret_before = totp_secret(staff("m.dupont"))
    assert runner.invoke(args=["users", "deactivate", "m.dupont"]).exit_code == 0

    result = runner.invoke(args=["users", "reset-totp", "m.dupont"])

    assert result.exit_code == 1
    assert "deactivated" in result.output
    assert totp_secret(staff("m.dupont")) == secret_before

