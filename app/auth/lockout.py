"""The sign-in lockout: 10 consecutive failures lock an account's sign-in for 15 minutes, or
until the desk unlocks it. Letters never stop for a lockout (it is not a doctor's state).

Every evaluation of a factor is counted as a failure *before* the factor is looked at, in one
conditional UPDATE (:func:`begin_attempt`), so that concurrent requests cannot evaluate more
factors than the lockout allows; a right factor gives its place back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, false, literal, null, or_, true, update

from app.audit import Actor, record
from app.auth.session import User, actor_for, target_of
from app.extensions import db
from app.models import Doctor
from app.models.base import utcnow

#: Consecutive failures that lock sign-in, and for how long.
LOCKOUT_FAILURES = 10
LOCKOUT_DURATION = timedelta(minutes=15)


def is_locked(user: User) -> bool:
    """Locked after 10 consecutive failures, for 15 minutes or until the desk unlocks."""
    locked_at = user.sign_in_locked_at
    if locked_at is None:
        return False
    return utcnow() < locked_at + LOCKOUT_DURATION


@dataclass(frozen=True)
class Attempt:
    """One evaluation of a factor (a password, an SMS or TOTP code, a recovery code), counted
    as a failure *before* the factor is looked at (:func:`begin_attempt`)."""

    user: User
    #: Consecutive failures of the account, this attempt included.
    consecutive: int
    #: When this attempt took the last place before the lockout (it locked sign-in as it was
    #: counted), else None.
    locked_at: datetime | None


def begin_attempt(user: User) -> Attempt | None:
    """Counts one attempt of ``user``'s as a failure in advance; None when sign-in is locked.

    The check and the count are one conditional UPDATE: two servers, or 30 requests at the
    same instant, cannot both pass the check and then count, so no more factors are ever
    evaluated than the lockout allows. The attempt that takes the 10th place locks sign-in in
    that same statement, before its factor is checked. After a lockout has expired, each
    attempt locks again as it is counted, so one at a time is evaluated. The caller commits at
    once (a counted attempt stays counted, whatever happens to the request), then evaluates,
    then calls :func:`attempt_failed`, :func:`attempt_released` or (the last factor)
    :func:`start_session`.
    """
    now = utcnow()
    model = type(user)
    consecutive = model.failed_sign_ins + 1
    locks = consecutive >= LOCKOUT_FAILURES
    lock_time = literal(now, model.sign_in_locked_at.type)
    values: dict[str, Any] = {
        "failed_sign_ins": consecutive,
        "sign_in_locked_at": case((locks, lock_time), else_=null()),
    }
    if model is Doctor:
        values["sign_in_locked"] = case((locks, true()), else_=false())
    counted = db.session.execute(
        update(model)
        .where(model.id == user.id,
               or_(model.sign_in_locked_at.is_(None),
                   model.sign_in_locked_at <= now - LOCKOUT_DURATION))
        .values(**values)
        .returning(model.failed_sign_ins)
        .execution_options(synchronize_session=False)
    ).first()
    db.session.refresh(user)
    if counted is None:
        return None
    count = int(counted[0])
    return Attempt(user, count, now if count >= LOCKOUT_FAILURES else None)


def attempt_failed(attempt: Attempt, *, stage: str) -> None:
    """The factor of a counted attempt was wrong: audited (and the lockout it caused)."""
    user = attempt.user
    record(actor_for(user), "auth.failed", target=target_of(user), outcome="failure",
           details={"stage": stage, "consecutive": attempt.consecutive})
    if attempt.locked_at is not None:
        db.session.refresh(user)
        if is_locked(user):  # not lifted meanwhile (the desk, or a right factor)
            record(actor_for(user), "auth.locked", target=target_of(user), outcome="failure",
                   details={"minutes": int(LOCKOUT_DURATION.total_seconds() // 60)})


def attempt_released(attempt: Attempt) -> None:
    """A counted attempt that was no failure after all (a right password with a second factor
    still to come, or a code that could not be checked): its place is given back, and the
    lockout it set, if any, lifted. The caller commits."""
    user = attempt.user
    model = type(user)
    db.session.execute(
        update(model).where(model.id == user.id, model.failed_sign_ins > 0)
        .values(failed_sign_ins=model.failed_sign_ins - 1)
        .execution_options(synchronize_session=False)
    )
    if attempt.locked_at is not None:
        values: dict[str, Any] = {"sign_in_locked_at": None}
        if model is Doctor:
            values["sign_in_locked"] = False
        # Only this attempt's own lock: never one set later by another attempt.
        db.session.execute(
            update(model)
            .where(model.id == user.id, model.sign_in_locked_at == attempt.locked_at)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
    db.session.refresh(user)


def unlock(user: User, actor: Actor) -> None:
    """The desk lifts a lockout (letters never stopped). Audited; the caller commits."""
    user.failed_sign_ins = 0
    user.sign_in_locked_at = None
    if isinstance(user, Doctor):
        user.sign_in_locked = False
    record(actor, "auth.unlocked", target=target_of(user))
