"""A staff member's second factor: the authenticator (TOTP) secret sealed at rest, the check of
its codes, and the recovery codes.

Sign-in (``app/auth/sign_in.py``) checks codes here; the staff accounts (``app/staff/accounts.py``)
create and reset secrets through here. Every check is audited, never with the code typed.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CursorResult, or_, select, update

from app.audit import Actor, record
from app.auth import totp
from app.crypto import ContentIntegrityError, Sealed, key_ring
from app.extensions import db
from app.models import RecoveryCode, StaffUser


def staff_target(user: StaffUser) -> str:
    """The audit target of a staff account."""
    return f"staff:{user.login}"


def _associated(user: StaffUser) -> bytes:
    # Binds the ciphertext to its row: a secret copied onto another account fails to open.
    return f"relais-staff-totp:{user.id}:{user.login}".encode()


def seal_secret(user: StaffUser, secret: str) -> None:
    sealed = key_ring().seal(secret.encode("ascii"), _associated(user))
    user.totp_key_id, user.totp_nonce, user.totp_ciphertext = (
        sealed.key_id, sealed.nonce, sealed.ciphertext
    )


def set_new_secret(user: StaffUser) -> str:
    """Seal a new pending secret on ``user`` (which has an id) and return its URI."""
    secret = totp.new_secret()
    seal_secret(user, secret)
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
        seal_secret(user, totp_secret(user))
    db.session.flush()
    if users:
        record(
            actor, "staff.totp_keys_rotated", details={"accounts": len(users), "key_id": current}
        )
    return len(users)


def verify_staff_totp(user: StaffUser, code: str, now: datetime, actor: Actor) -> bool:
    """Check a code from the user's authenticator; on success remember its time step (so it
    cannot be used again) and confirm a pending enrolment. Audited either way, without the code.
    """
    counter = None
    if user.active:
        counter = totp.verify(totp_secret(user), code, user.totp_last_counter, now)
    if counter is None:
        record(actor, "staff.totp_checked", target=staff_target(user), outcome="rejected")
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
        record(actor, "staff.totp_checked", target=staff_target(user), outcome="rejected")
        return False
    first = user.totp_confirmed_at is None
    if first:
        user.totp_confirmed_at = now
    db.session.flush()
    record(actor, "staff.totp_checked", target=staff_target(user),
           details={"enrolment_confirmed": first})
    return True


def issue_recovery_codes(user: StaffUser, actor: Actor) -> list[str]:
    """Replace the user's recovery codes with new ones, returned once and stored hashed."""
    codes = totp.recovery_codes()
    user.recovery_codes.clear()
    db.session.flush()  # delete the old rows before the new ones are inserted
    user.recovery_codes.extend(RecoveryCode(code_hash=totp.recovery_code_hash(c)) for c in codes)
    db.session.flush()
    record(actor, "staff.recovery_codes_issued", target=staff_target(user),
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
        record(actor, "staff.recovery_code_used", target=staff_target(user), outcome="rejected")
        return False
    record(actor, "staff.recovery_code_used", target=staff_target(user))
    return True
