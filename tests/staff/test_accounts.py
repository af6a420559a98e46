"""Staff and desk accounts (issue 3): creation, the sealed TOTP secret, replay, recovery codes.

Each test runs on SQLite and, with TEST_DATABASE_URL, on PostgreSQL.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pyotp
import pytest
from flask import Flask
from sqlalchemy import select, text, update
from sqlalchemy.exc import IntegrityError

from app.audit import CLI, Actor, verify
from app.auth.passwords import verify_password
from app.auth.staff_factors import (
    issue_recovery_codes,
    totp_secret,
    use_recovery_code,
    verify_staff_totp,
)
from app.crypto import ContentIntegrityError
from app.extensions import db
from app.models import AuditEvent, Doctor, RecoveryCode, StaffUser
from app.staff.accounts import StaffError, create_staff, deactivate_staff, reset_totp
from tests.support.trail import events

NOW = datetime(2026, 11, 22, 8, 0, 15, tzinfo=UTC)
STEP = timedelta(seconds=30)
ME = Actor("staff", "m.dupont")


def code(user: StaffUser, when: datetime = NOW) -> str:
    return pyotp.TOTP(totp_secret(user)).at(when)


def uri_secret(uri: str) -> str:
    return str(pyotp.parse_uri(uri).secret)


def audit_text() -> str:
    events = db.session.scalars(select(AuditEvent).order_by(AuditEvent.id)).all()
    return "\n".join(
        json.dumps([e.actor, e.action, e.target, e.outcome, e.rule, e.details]) for e in events
    )


@pytest.fixture()
def created(app: Flask) -> tuple[StaffUser, str, str]:
    user, password, uri = create_staff("m.dupont", "staff", CLI)
    db.session.commit()
    return user, password, uri


@pytest.fixture()
def user(created: tuple[StaffUser, str, str]) -> StaffUser:
    return created[0]


# --- creation -----------------------------------------------------------------------------


def test_create_staff_makes_a_pending_account_with_a_temporary_password(
    created: tuple[StaffUser, str, str],
) -> None:
    user, password, uri = created
    stored = db.session.scalar(select(StaffUser).where(StaffUser.login == "m.dupont"))
    assert stored is user
    assert user.role == "staff"
    assert user.active is True
    assert user.must_change_password is True
    assert user.password_hash.startswith("$argon2id$")
    assert verify_password(user.password_hash, password)
    assert user.totp_pending and user.totp_confirmed_at is None
    assert user.totp_last_counter is None
    assert uri.startswith("otpauth://totp/Relais:m.dupont?")
    assert uri_secret(uri) == totp_secret(user)


@pytest.mark.parametrize("login", ["ab", "x" * 65, "M.Dupont", "m dupont", "m@dupont", "é.t"])
def test_create_staff_refuses_a_malformed_login(app: Flask, login: str) -> None:
    with pytest.raises(StaffError, match="login"):
        create_staff(login, "staff", CLI)
    assert db.session.scalars(select(StaffUser)).all() == []


@pytest.mark.parametrize("role", ["admin", "doctor", "", "Staff"])
def test_create_staff_refuses_an_unknown_role(app: Flask, role: str) -> None:
    with pytest.raises(StaffError, match="role"):
        create_staff("m.dupont", role, CLI)
    assert db.session.scalars(select(StaffUser)).all() == []


def test_the_database_refuses_an_unknown_role_too(user: StaffUser) -> None:
    with pytest.raises(IntegrityError, match=r"(?i)check constraint"):
        db.session.execute(update(StaffUser).values(role="admin"))
        db.session.flush()
    db.session.rollback()


def test_create_staff_refuses_a_login_already_taken(user: StaffUser) -> None:
    with pytest.raises(StaffError, match="already taken"):
        create_staff("m.dupont", "desk", CLI)
    db.session.rollback()
    assert db.session.scalars(select(StaffUser.role)).all() == ["staff"]


def test_create_staff_refuses_a_doctor_login(app: Flask) -> None:
    # One sign-in page for everyone: a staff login equal to a doctor's would make one of them
    # unreachable (or, worse, let one account's password open the other's).
    db.session.add(Doctor(gln="7601000000019", login="cmuller", state="active"))
    db.session.commit()
    with pytest.raises(StaffError, match="already taken"):
        create_staff("cmuller", "desk", CLI)
    db.session.rollback()
    assert db.session.scalars(select(StaffUser.id)).all() == []


def test_create_staff_is_audited_without_password_or_secret(
    created: tuple[StaffUser, str, str],
) -> None:
    _, password, uri = created
    [event] = events("staff.created")
    assert event.actor == "cli"
    assert event.target == "staff:m.dupont"
    assert event.details == {"role": "staff"}
    trail = audit_text()
    for secret in (password, password.replace("-", ""), uri, uri_secret(uri)):
        assert secret not in trail
    assert verify() is None


# --- the secret at rest ---------------------------------------------------------------------


def test_the_totp_secret_is_not_stored_in_clear(created: tuple[StaffUser, str, str]) -> None:
    _, password, uri = created
    secret = uri_secret(uri)
    with db.engine.connect() as conn:
        row = conn.execute(text("SELECT * FROM staff_users")).mappings().one()
    blob = b" ".join(
        value if isinstance(value, bytes) else str(value).encode() for value in row.values()
    )
    assert secret.encode() not in blob
    assert secret.lower().encode() not in blob
    assert password.encode() not in blob
    assert row["totp_key_id"] == "test1"
    assert len(bytes(row["totp_nonce"])) == 12


def test_a_secret_copied_onto_another_account_does_not_open(app: Flask) -> None:
    # Given two accounts
    first, _, _ = create_staff("first", "staff", CLI)
    second, _, _ = create_staff("second", "desk", CLI)
    db.session.commit()

    # When an attacker with database access copies the first's sealed secret onto the second
    second.totp_key_id, second.totp_nonce, second.totp_ciphertext = (
        first.totp_key_id, first.totp_nonce, first.totp_ciphertext
    )
    db.session.commit()

    # Then it fails authentication instead of giving the second account a known secret
    with pytest.raises(ContentIntegrityError):
        totp_secret(second)


def test_a_modified_ciphertext_does_not_open(user: StaffUser) -> None:
    assert user.totp_ciphertext is not None
    user.totp_ciphertext = bytes([user.totp_ciphertext[0] ^ 1]) + user.totp_ciphertext[1:]
    with pytest.raises(ContentIntegrityError):
        totp_secret(user)


# --- codes ----------------------------------------------------------------------------------


def test_a_right_code_confirms_enrolment_and_is_remembered(user: StaffUser) -> None:
    assert verify_staff_totp(user, code(user), NOW, ME) is True
    db.session.commit()

    assert user.totp_confirmed_at == NOW
    assert not user.totp_pending
    assert user.totp_last_counter == int(NOW.timestamp()) // 30
    [event] = events("staff.totp_checked")
    assert (event.actor, event.outcome, event.details) == (
        "staff:m.dupont", "success", {"enrolment_confirmed": True}
    )


def test_the_same_code_is_refused_the_second_time(user: StaffUser) -> None:
    typed = code(user)
    assert verify_staff_totp(user, typed, NOW, ME) is True
    db.session.commit()

    assert verify_staff_totp(user, typed, NOW + timedelta(seconds=10), ME) is False
    assert [e.outcome for e in events("staff.totp_checked")] == ["success", "rejected"]


def test_an_older_code_is_refused_after_a_newer_one(user: StaffUser) -> None:
    assert verify_staff_totp(user, code(user, NOW + STEP), NOW, ME) is True
    db.session.commit()
    assert verify_staff_totp(user, code(user, NOW), NOW, ME) is False
    assert verify_staff_totp(user, code(user, NOW + 2 * STEP), NOW + STEP, ME) is True


def test_a_replay_is_refused_even_when_the_loaded_row_is_stale(user: StaffUser) -> None:
    # Given a second request that loaded the account before the first one accepted the code
    typed = code(user)
    counter = int(NOW.timestamp()) // 30
    db.session.execute(
        update(StaffUser).where(StaffUser.id == user.id).values(totp_last_counter=counter),
        execution_options={"synchronize_session": False},
    )
    assert user.totp_last_counter is None  # what the second request still sees

    # Then the database-side check refuses the same step
    assert verify_staff_totp(user, typed, NOW, ME) is False


def test_a_wrong_code_is_refused_and_audited_without_the_code(user: StaffUser) -> None:
    right = code(user)
    wrong = f"{(int(right) + 500_000) % 1_000_000:06d}"
    assert verify_staff_totp(user, wrong, NOW, ME) is False
    assert user.totp_last_counter is None
    assert user.totp_pending
    [event] = events("staff.totp_checked")
    assert event.outcome == "rejected"
    trail = audit_text()
    assert wrong not in trail and right not in trail


def test_a_deactivated_account_cannot_use_a_right_code(user: StaffUser) -> None:
    deactivate_staff("m.dupont", CLI)
    db.session.commit()
    assert verify_staff_totp(user, code(user), NOW, ME) is False


# --- deactivation and reset -----------------------------------------------------------------


def test_deactivate_ends_the_account_once(user: StaffUser) -> None:
    deactivate_staff("m.dupont", CLI)
    deactivate_staff("m.dupont", CLI)
    db.session.commit()
    assert user.active is False
    assert user.deactivated_at is not None
    assert [e.target for e in events("staff.deactivated")] == ["staff:m.dupont"]


def test_deactivate_an_unknown_login_is_an_error(app: Flask) -> None:
    with pytest.raises(StaffError, match="no staff account"):
        deactivate_staff("nobody", CLI)


def test_reset_totp_gives_a_new_pending_secret_and_voids_the_old_codes(
    created: tuple[StaffUser, str, str],
) -> None:
    # Given an enrolled user with recovery codes
    user, _, first_uri = created
    old_code = code(user, NOW + STEP)
    assert verify_staff_totp(user, code(user), NOW, ME)
    recovery = issue_recovery_codes(user, ME)
    db.session.commit()

    # When the authenticator is reset
    new_uri = reset_totp("m.dupont", CLI)
    db.session.commit()

    # Then the secret is new, enrolment pending again, the counter and recovery codes gone
    assert uri_secret(new_uri) != uri_secret(first_uri)
    assert uri_secret(new_uri) == totp_secret(user)
    assert user.totp_pending
    assert user.totp_last_counter is None
    assert db.session.scalars(select(RecoveryCode)).all() == []
    assert verify_staff_totp(user, old_code, NOW + STEP, ME) is False
    assert use_recovery_code(user, recovery[0], NOW, ME) is False
    assert verify_staff_totp(user, code(user), NOW, ME) is True
    [event] = events("staff.totp_reset")
    assert event.target == "staff:m.dupont"
    trail = audit_text()
    assert uri_secret(new_uri) not in trail and uri_secret(first_uri) not in trail


def test_reset_totp_refuses_a_deactivated_account(user: StaffUser) -> None:
    deactivate_staff("m.dupont", CLI)
    with pytest.raises(StaffError, match="deactivated"):
        reset_totp("m.dupont", CLI)


# --- recovery codes -------------------------------------------------------------------------


def test_recovery_codes_are_stored_hashed_and_work_once(user: StaffUser) -> None:
    codes = issue_recovery_codes(user, ME)
    db.session.commit()
    hashes = set(db.session.scalars(select(RecoveryCode.code_hash)))
    assert len(hashes) == 10
    stored = " ".join(hashes)
    assert not any(c in stored or c.replace("-", "") in stored for c in codes)

    assert use_recovery_code(user, codes[3].upper(), NOW, ME) is True
    assert use_recovery_code(user, codes[3], NOW, ME) is False
    assert use_recovery_code(user, codes[4], NOW, ME) is True
    assert use_recovery_code(user, "2222-2222-2222-2222", NOW, ME) is False
    assert [e.outcome for e in events("staff.recovery_code_used")] == [
        "success", "rejected", "success", "rejected"
    ]
    trail = audit_text()
    assert not any(c in trail or c.replace("-", "") in trail for c in codes)


def test_a_recovery_code_of_another_account_is_refused(user: StaffUser) -> None:
    other, _, _ = create_staff("desk1", "desk", CLI)
    theirs = issue_recovery_codes(other, CLI)
    db.session.commit()
    assert use_recovery_code(user, theirs[0], NOW, ME) is False
    assert use_recovery_code(other, theirs[0], NOW, CLI) is True


def test_issuing_recovery_codes_again_voids_the_previous_ones(user: StaffUser) -> None:
    first = issue_recovery_codes(user, ME)
    second = issue_recovery_codes(user, ME)
    db.session.commit()
    assert db.session.query(RecoveryCode).count() == 10
    assert use_recovery_code(user, first[0], NOW, ME) is False
    assert use_recovery_code(user, second[0], NOW, ME) is True
