"""Staff and desk accounts: creation, deactivation, the authenticator secret, recovery codes.

Services flush and audit; the caller (the CLI, a view) commits. Nothing here writes a password,
a TOTP secret, a code or a recovery code to the audit trail: the caller shows them once.
"""

from __future__ import annotations

from sqlalchemy import CursorResult, func, select, update

from app.audit import Actor, record
from app.auth.passwords import hash_password, temporary_password
from app.auth.staff_factors import set_new_secret, staff_target
from app.extensions import db
from app.models import Doctor, StaffUser
from app.models.base import utcnow
from app.models.staff import LOGIN_PATTERN, STAFF_ROLES


class StaffError(ValueError):
    """A staff account operation was refused; the message is safe to show an administrator."""


def _find(login: str) -> StaffUser:
    user = db.session.scalar(select(StaffUser).where(StaffUser.login == login))
    if user is None:
        raise StaffError(f"no staff account with login {login!r}")
    return user


def create_staff(login: str, role: str, actor: Actor) -> tuple[StaffUser, str, str]:
    """Create an account; returns it with a temporary password and the TOTP provisioning URI,
    which the caller shows once and which are never stored in clear nor audited."""
    if not LOGIN_PATTERN.fullmatch(login):
        raise StaffError("a staff login is 3-64 characters of a-z, 0-9, '.', '_' or '-'")
    if role not in STAFF_ROLES:
        raise StaffError(f"the role must be one of: {', '.join(STAFF_ROLES)}")
    # One namespace for every sign-in at /auth/login: a staff login never equals a doctor's.
    taken = db.session.scalar(select(StaffUser.id).where(StaffUser.login == login)) or (
        db.session.scalar(select(Doctor.id).where(func.lower(Doctor.login) == login))
    )
    if taken is not None:
        raise StaffError(f"the login {login!r} is already taken")
    password = temporary_password()
    user = StaffUser(
        login=login, role=role, password_hash=hash_password(password), must_change_password=True
    )
    db.session.add(user)
    db.session.flush()  # the id is part of the secret's associated data
    uri = set_new_secret(user)
    db.session.flush()
    record(actor, "staff.created", target=staff_target(user), details={"role": role})
    return user, password, uri


def deactivate_staff(login: str, actor: Actor) -> StaffUser:
    """End an account at once (idempotent: a second call changes and records nothing)."""
    user = _find(login)
    if user.active:
        user.active = False
        user.deactivated_at = utcnow()
        db.session.flush()
        record(actor, "staff.deactivated", target=staff_target(user))
    return user


#: Why the desk may not change an account from its page.
SELF = "self"
LAST_DESK = "last_desk"
TOTP_PENDING = "totp_pending"


class DeskRefusal(StaffError):
    """The desk's page refuses this change; ``code`` says why (shown translated)."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def active_desk_count() -> int:
    return db.session.scalar(
        select(func.count(StaffUser.id)).where(StaffUser.role == "desk",
                                               StaffUser.active.is_(True))
    ) or 0


def desk_deactivation_refusal(user: StaffUser, by: StaffUser) -> str | None:
    """Why a desk user may not deactivate ``user`` from the desk's page, or None."""
    if user.id == by.id:
        return SELF
    if user.active and user.role == "desk" and active_desk_count() <= 1:
        return LAST_DESK
    return None


def deactivate_staff_at_desk(user: StaffUser, by: StaffUser, actor: Actor) -> bool:
    """The desk ends ``user``'s account: never their own, never the last active desk account.

    The active desk rows are locked first (PostgreSQL), so two desks deactivating each other at
    once cannot leave none: the second one counts again after the first commits. Returns
    whether anything changed (a second click changes nothing). Caller commits.
    """
    db.session.execute(
        select(StaffUser.id).where(StaffUser.role == "desk", StaffUser.active.is_(True))
        .with_for_update()
    ).all()
    db.session.refresh(user)
    refusal = desk_deactivation_refusal(user, by)
    if refusal is not None:
        raise DeskRefusal(refusal)
    was_active = user.active
    deactivate_staff(user.login, actor)
    return was_active


def reactivation_refusal(user: StaffUser) -> str | None:
    """A reactivated account keeps its password and authenticator: it must have one."""
    if user.totp_pending:
        return TOTP_PENDING
    return None


def reactivate_staff(user: StaffUser, actor: Actor) -> bool:
    """Open a deactivated account again, with the same password and authenticator.

    Sessions from before the deactivation stay ended (the epoch moves on). Refused while the
    authenticator enrolment is pending: create a new account with the CLI instead. Returns
    whether anything changed (idempotent). Caller commits.
    """
    if user.active:
        return False
    refusal = reactivation_refusal(user)
    if refusal is not None:
        raise DeskRefusal(refusal)
    claimed = db.session.execute(
        update(StaffUser).where(StaffUser.id == user.id, StaffUser.active.is_(False))
        .values(active=True, deactivated_at=None, session_epoch=StaffUser.session_epoch + 1)
        .execution_options(synchronize_session=False)
    )
    db.session.refresh(user)
    if not isinstance(claimed, CursorResult) or claimed.rowcount != 1:
        return False
    record(actor, "staff.reactivated", target=staff_target(user))
    return True


def reset_totp(login: str, actor: Actor) -> str:
    """Force a new authenticator enrolment: a new pending secret, the old codes and recovery
    codes void. Returns the new provisioning URI, to be shown once."""
    user = _find(login)
    if not user.active:
        raise StaffError(f"the staff account {login!r} is deactivated")
    uri = set_new_secret(user)
    user.recovery_codes.clear()
    db.session.flush()
    record(actor, "staff.totp_reset", target=staff_target(user))
    return uri


