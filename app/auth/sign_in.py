"""The sign-in decisions: each step returns who signs in, or raises why not.

SecureDrop-style (``Journalist.login``): every check of a factor is a function here that either
returns (the user, the method used, the recovery codes issued) or raises one
:class:`SignInRefused` subclass that names the precise reason. The audit trail is written
here, as it always was: ``auth.refused`` with the reason for an account that may not go on,
``auth.failed`` with the step (and ``auth.locked``) for a wrong factor, ``auth.failed`` with
``unknown_login`` for a login nobody has. The views (:mod:`app.auth.views`) catch the refusal
and show the one generic message, whatever its cause.

Each factor is counted as a failure *before* it is looked at (:func:`begin_attempt`), and that
count is committed at once: so these functions commit, where the lockout needs it, before and
after the comparison. An unknown login, or an account that may not sign in, costs the same
argon2 work as a wrong password (no enumeration by timing).
"""

from __future__ import annotations

import logging
from typing import ClassVar

from app.audit import Actor, record
from app.auth import codes, totp
from app.auth.lockout import Attempt, attempt_failed, attempt_released, begin_attempt, is_locked
from app.auth.passwords import burn_password_check, hash_password, needs_rehash, verify_password
from app.auth.session import (
    User,
    accounts_for_login,
    actor_for,
    may_sign_in,
    requires_fresh_password_check,
    target_of,
)
from app.auth.staff_factors import issue_recovery_codes, use_recovery_code, verify_staff_totp
from app.extensions import db
from app.models import Doctor, OneTimeCode, StaffUser
from app.models.base import utcnow

log = logging.getLogger(__name__)


class SignInRefused(Exception):
    """A sign-in step that does not go on; ``reason`` is what the audit trail records."""

    reason: ClassVar[str] = "refused"

    def __init__(self, user: User | None = None) -> None:
        super().__init__(self.reason)
        #: The account the step was about, when one was found.
        self.user = user


class UnknownLogin(SignInRefused):
    """No account (or, by a data error, more than one) has this login."""

    reason = "unknown_login"


class AccountDeactivated(SignInRefused):
    """The account was deactivated (a doctor) or is not active (staff)."""

    reason = "deactivated"


class AccountLocked(SignInRefused):
    """Too many failures: sign-in is locked; the factor was not even looked at."""

    reason = "locked"


class NoPassword(SignInRefused):
    """The account has no Relais password (a HIN doctor): only HIN signs her in."""

    reason = "no_password"


class NoMobile(SignInRefused):
    """A doctor without a mobile number (or login) can receive no code."""

    reason = "no_mobile"


class WrongPassword(SignInRefused):
    """The password was wrong (counted towards the lockout)."""

    reason = "wrong_password"


class WrongCode(SignInRefused):
    """The SMS code, authenticator code or recovery code was wrong (counted)."""

    reason = "wrong_code"

    def __init__(self, user: User | None = None, *, now_locked: bool = False) -> None:
        super().__init__(user)
        #: This failure took the last place before the lockout.
        self.now_locked = now_locked


class CodeExpired(SignInRefused):
    """The SMS code's five minutes are over."""

    reason = "code_expired"


class CodeUsed(SignInRefused):
    """The SMS code was already spent (by another request, or an earlier sign-in)."""

    reason = "code_used"


class TooManyCodes(SignInRefused):
    """The SMS code has had all its tries."""

    reason = "too_many_tries"


def refused(user: User, reason: str, stage: str) -> None:
    """Audits a step refused before its factor was checked (the caller commits)."""
    record(actor_for(user), "auth.refused", target=target_of(user), outcome="rejected",
           details={"stage": stage, "reason": reason})


def count_attempt(user: User, stage: str) -> Attempt:
    """Counts this attempt as a failure before its factor is looked at, committed at once (see
    :func:`begin_attempt`); :class:`AccountLocked`, audited, when sign-in is locked."""
    attempt = begin_attempt(user)
    if attempt is None:
        refused(user, AccountLocked.reason, stage)
    db.session.commit()
    if attempt is None:
        raise AccountLocked(user)
    return attempt


def _failed(attempt: Attempt, stage: str) -> WrongCode:
    attempt_failed(attempt, stage=stage)
    db.session.commit()
    return WrongCode(attempt.user, now_locked=attempt.locked_at is not None)


# --- the password step -----------------------------------------------------------------------


def check_password(typed_login: str, password: str) -> User:
    """The account whose login and password these are, its second factor still to come.

    Raises :class:`UnknownLogin`, :class:`AccountDeactivated`, :class:`AccountLocked`,
    :class:`NoPassword`, :class:`WrongPassword` or :class:`NoMobile`, each audited and committed.
    """
    accounts = accounts_for_login(typed_login)
    if len(accounts) != 1:
        # Unknown (or, by a data error, ambiguous) login: the same argon2 work as a known one.
        burn_password_check(password)
        if accounts:
            log.warning("sign-in refused: login shared by %d accounts", len(accounts))
        record(Actor("anonymous"), "auth.failed", outcome="failure",
               details={"stage": "password", "reason": UnknownLogin.reason})
        db.session.commit()
        raise UnknownLogin()

    user = accounts[0]
    refusal: type[SignInRefused] | None = None
    if not may_sign_in(user):
        refusal = AccountDeactivated
    elif is_locked(user):
        refusal = AccountLocked
    elif not user.password_hash:
        refusal = NoPassword
    if refusal is not None:
        burn_password_check(password)  # same work; the real password is never checked
        refused(user, refusal.reason, "password")
        db.session.commit()
        raise refusal(user)

    try:
        attempt = count_attempt(user, "password")
    except AccountLocked:  # locked since the check above
        burn_password_check(password)
        raise
    assert user.password_hash is not None  # noqa: S101 - checked just above
    if not verify_password(user.password_hash, password):
        attempt_failed(attempt, stage="password")
        db.session.commit()
        raise WrongPassword(user)
    # The right password is no failure; the second factor decides the sign-in.
    attempt_released(attempt)

    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)

    if isinstance(user, Doctor) and (not user.mobile or not user.login):
        refused(user, NoMobile.reason, "password")
        db.session.commit()
        raise NoMobile(user)
    return user


def confirm_password(user: User, password: str) -> None:
    """The signed-in user's password, asked again before a sensitive change. Counted like a
    sign-in attempt: a wrong one towards the lockout, and a locked account's is not checked.

    Raises :class:`AccountLocked` or :class:`WrongPassword`.
    """
    try:
        attempt = count_attempt(user, "reauth")
    except AccountLocked:
        burn_password_check(password)  # the same work as a check
        raise
    if requires_fresh_password_check(user, password):
        attempt_released(attempt)
        return
    attempt_failed(attempt, stage="reauth")
    db.session.commit()
    raise WrongPassword(user)


# --- the SMS code ----------------------------------------------------------------------------


def check_sms_code(doctor: Doctor, challenge: OneTimeCode, typed: str) -> None:
    """Returns when ``typed`` is the pending sign-in's code (now spent); the caller signs in.

    The code's own try first, then the account's place before the lockout: both counted (and
    committed) before the code is compared, so that neither can be outrun. Raises
    :class:`AccountLocked`, :class:`WrongCode`, :class:`CodeExpired`, :class:`CodeUsed` or
    :class:`TooManyCodes`.
    """
    outcome = codes.take_try(challenge)
    attempt = None
    if outcome is None:
        attempt = count_attempt(doctor, "code")
        outcome = codes.compare(challenge, typed)
    if outcome is codes.Check.OK:
        return
    if outcome is codes.Check.WRONG and attempt is not None:
        raise _failed(attempt, "code")
    if attempt is not None:  # the right code, spent meanwhile by another request: no failure
        attempt_released(attempt)
    db.session.commit()
    if outcome is codes.Check.EXPIRED:
        raise CodeExpired(doctor)
    if outcome is codes.Check.USED:
        raise CodeUsed(doctor)
    raise TooManyCodes(doctor)


def check_resend(doctor: Doctor) -> None:
    """A new code may be asked for only while sign-in is not locked (:class:`AccountLocked`)."""
    if is_locked(doctor):
        refused(doctor, AccountLocked.reason, "code")
        db.session.commit()
        raise AccountLocked(doctor)


# --- the staff's authenticator -----------------------------------------------------------------


def check_staff_code(staff: StaffUser, typed: str) -> str:
    """The sign-in method when ``typed`` is the authenticator's code (``"totp"``) or an unused
    recovery code (``"recovery_code"``, now spent). Raises :class:`AccountLocked` or
    :class:`WrongCode`."""
    attempt = count_attempt(staff, "totp")
    actor = actor_for(staff)
    now = utcnow()
    if totp.normalize_recovery_code(typed) is not None:
        if use_recovery_code(staff, typed, now, actor):
            return "recovery_code"
    elif verify_staff_totp(staff, typed, now, actor):
        return "totp"
    raise _failed(attempt, "totp")


def confirm_enrolment(staff: StaffUser, typed: str) -> list[str]:
    """The first code of a newly set-up authenticator: right, the staff member's fresh recovery
    codes (to be shown once). Raises :class:`AccountLocked` or :class:`WrongCode`."""
    attempt = count_attempt(staff, "totp_enrol")
    actor = actor_for(staff)
    if verify_staff_totp(staff, typed, utcnow(), actor):
        return issue_recovery_codes(staff, actor)
    raise _failed(attempt, "totp_enrol")
