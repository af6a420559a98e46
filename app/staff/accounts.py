"""Staff and desk accounts: creation, deactivation, the authenticator secret, recovery codes.

Services flush and audit; the caller (the CLI, a view) commits. Nothing here writes a password,
a TOTP secret, a code or a recovery code to the audit trail: the caller shows them once.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CursorResult, func, or_, select, update

from app.audit import Actor, record
from app.auth import totp
from app.auth.passwords import hash_password, temporary_password
from app.crypto import ContentIntegrityError, Sealed, key_ring
from app.extensions import db
from app.models import Doctor, RecoveryCode, StaffUser
from app.models.base import utcnow
from app.models.staff import LOGIN_PATTERN, STAFF_ROLES


class StaffError(ValueError):
    """A staff account operation was refused; the message is safe to show an administrator."""


def _target(user: StaffUser) -> str:
    return f"staff:{user.login}"


def _associated(user: StaffUser) -> bytes:
    # Binds the ciphertext to its row: a secret copied onto another account fails to open.
    return f"relais-staff-totp:{user.id}:{user.login}".encode()


def _find(login: str) -> StaffUser:
    user = db.session.scalar(select(StaffUser).where(StaffUser.login == login))
    if user is None:
        raise StaffError(f"no staff account with login {login!r}")
    return user


def _seal_secret(user: StaffUser, secret: str) -> None:
    sealed = key_ring().seal(secret.encode("ascii"), _associated(user))
    user.totp_key_id, user.totp_nonce, user.totp_ciphertext = (
        sealed.key_id, sealed.nonce, sealed.ciphertext
    )


def _set_new_secret(user: StaffUser) -> str:
    """Seal a new pending secret on ``user`` (which has an id) and return its URI."""
    secret = totp.new_secret()
    _seal_secret(user, secret)
    user.totp_confirmed_at = None
    user.totp_last_counter = None
    return totp.provisioning_uri(secret, user.login)


def totp_secret(user: StaffUser) -> str:
    """The user's TOTP secret, unsealed. Raises ContentIntegrityError if it was tampered with."""
    if user.totp_key_id is None or user.totp_nonce is None or user.totp_ciphertext is None:
        raise ContentIntegrityError("this staff account has no authenticator secret")
    sealed = Sealed(user.totp_key_id, user.totp_nonce, user.totp_ciphertext)
    return key_ring().unseal(sealed, _associated(user)).decode("ascii")


def rotate_totp_keys(actor: Actor) -> int:
    """Re-seal every staff TOTP secret under the first key of DOCUMENT_KEYS (key rotation),
    so that an old key can be retired without breaking anyone's authenticator."""
    current = key_ring().current_key_id
    users = db.session.scalars(
        select(StaffUser).where(
            StaffUser.totp_key_id.is_not(None), StaffUser.totp_key_id != current
        )
    ).all()
    for user in users:
        _seal_secret(user, totp_secret(user))
    db.session.flush()
    if users:
        record(
            actor, "staff.totp_keys_rotated", details={"accounts": len(users), "key_id": current}
        )
    return len(users)


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
    uri = _set_new_secret(user)
    db.session.flush()
    record(actor, "staff.created", target=_target(user), details={"role": role})
    return user, password, uri


def deactivate_staff(login: str, actor: Actor) -> StaffUser:
    """End an account at once (idempotent: a second call changes and records nothing)."""
    user = _find(login)
    if user.active:
        user.active = False
        user.deactivated_at = utcnow()
        db.session.flush()
        record(actor, "staff.deactivated", target=_target(user))
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
    record(actor, "staff.reactivated", target=_target(user))
    return True


def reset_totp(login: str, actor: Actor) -> str:
    """Force a new authenticator enrolment: a new pending secret, the old codes and recovery
    codes void. Returns the new provisioning URI, to be shown once."""
    user = _find(login)
    if not user.active:
        raise StaffError(f"the staff account {login!r} is deactivated")
    uri = _set_new_secret(user)
    user.recovery_codes.clear()
    db.session.flush()
    record(actor, "staff.totp_reset", target=_target(user))
    return uri


def verify_staff_totp(user: StaffUser, code: str, now: datetime, actor: Actor) -> bool:
    """Check a code from the user's authenticator; on success remember its time step (so it
    cannot be used again) and confirm a pending enrolment. Audited either way, without the code.
    """
    counter = None
    if user.active:
        counter = totp.verify(totp_secret(user), code, user.totp_last_counter, now)
    if counter is None:
        record(actor, "staff.totp_checked", target=_target(user), outcome="rejected")
        return False
    # A conditional update, so two requests racing with the same code cannot both succeed.
    claimed = db.session.execute(
        update(StaffUser)
        .where(
            StaffUser.id == user.id,
            or_(StaffUser.totp_last_counter.is_(None), StaffUser.totp_last_counter < counter),
        )
        .values(totp_last_counter=counter)
    )
    if not isinstance(claimed, CursorResult) or claimed.rowcount != 1:
        record(actor, "staff.totp_checked", target=_target(user), outcome="rejected")
        return False
    first = user.totp_confirmed_at is None
    if first:
        user.totp_confirmed_at = now
    db.session.flush()
    record(
        actor, "staff.totp_checked", target=_target(user), details={"enrolment_confirmed": first}
    )
    return True


def issue_recovery_codes(user: StaffUser, actor: Actor) -> list[str]:
    """Replace the user's recovery codes with new ones, returned once and stored hashed."""
    codes = totp.recovery_codes()
    user.recovery_codes.clear()
    db.session.flush()  # delete the old rows before the new ones are inserted
    user.recovery_codes.extend(RecoveryCode(code_hash=totp.recovery_code_hash(c)) for c in codes)
    db.session.flush()
    record(actor, "staff.recovery_codes_issued", target=_target(user),
           details={"count": len(codes)})
    return codes


def use_recovery_code(user: StaffUser, code: str, now: datetime, actor: Actor) -> bool:
    """Spend one unused recovery code of this user's; audited either way, without the code."""
    normalized = totp.normalize_recovery_code(code)
    spent = 0
    if user.active and normalized is not None:
        # Spend it in one conditional update: a code raced twice is accepted once.
        result = db.session.execute(
            update(RecoveryCode)
            .where(
                RecoveryCode.staff_user_id == user.id,
                RecoveryCode.code_hash == totp.recovery_code_hash(normalized),
                RecoveryCode.used_at.is_(None),
            )
            .values(used_at=now)
        )
        spent = result.rowcount if isinstance(result, CursorResult) else 0
    if spent != 1:
        record(actor, "staff.recovery_code_used", target=_target(user), outcome="rejected")
        return False
    record(actor, "staff.recovery_code_used", target=_target(user))
    return True
