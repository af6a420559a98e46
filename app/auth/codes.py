"""One-time codes sent by SMS: 6 digits, 5 minutes, single use, 5 tries, 3 resends after 30 s.

A code is bound to one attempt (a random *handle* kept in the browser's session) and stored
only as an HMAC under ``SECRET_KEY``; the code itself is never stored, logged or audited.
Every check counts its try in one conditional UPDATE before the code is compared, so two servers
or 30 racing requests can neither use a code twice nor compare more than 5 guesses between them.

Services flush; the caller commits (and sends the SMS only after the commit succeeded, so that
a code that reached a phone always exists in the database).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import CursorResult, select, update

from app.auth.sms import SmsError, sender_from_config
from app.extensions import db
from app.models import OneTimeCode
from app.models.base import utcnow

CODE_DIGITS = 6
CODE_LIFETIME = timedelta(minutes=5)
MAX_TRIES = 5
RESEND_AFTER = timedelta(seconds=30)
#: Sends in all for one attempt: the first one and 3 resends.
MAX_SENDS = 4


class Check(enum.Enum):
    OK = "ok"
    WRONG = "wrong"
    EXPIRED = "expired"
    USED = "used"
    TOO_MANY_TRIES = "too_many_tries"
    UNKNOWN = "unknown"


class ResendRefused(Exception):
    """A resend came too early or once too often; ``wait`` says how long until it is allowed."""

    def __init__(self, reason: str, wait: timedelta | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.wait = wait


@dataclass(frozen=True)
class Issued:
    """A code to send: the row (already flushed) and the plain code, shown to nobody else."""

    challenge: OneTimeCode
    code: str


def _new_code() -> str:
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def code_hash(handle: str, code: str) -> str:
    key = current_app.config["SECRET_KEY"].encode()
    return hmac.new(key, f"{handle}:{code}".encode(), hashlib.sha256).hexdigest()


def issue(
    purpose: str,
    phone: str,
    *,
    doctor_id: int | None = None,
    staff_user_id: int | None = None,
    now: datetime | None = None,
) -> Issued:
    """A new attempt with its first code."""
    now = now or utcnow()
    handle = secrets.token_urlsafe(32)
    code = _new_code()
    challenge = OneTimeCode(
        handle=handle, purpose=purpose, phone=phone, doctor_id=doctor_id,
        staff_user_id=staff_user_id, code_hash=code_hash(handle, code), created_at=now,
        sent_at=now, expires_at=now + CODE_LIFETIME, sends=1, tries=0,
    )
    db.session.add(challenge)
    db.session.flush()
    return Issued(challenge, code)


def find(handle: str | None, purpose: str) -> OneTimeCode | None:
    if not handle or not isinstance(handle, str) or len(handle) > 64:
        return None
    return db.session.scalar(
        select(OneTimeCode).where(OneTimeCode.handle == handle, OneTimeCode.purpose == purpose)
    )


def resend(challenge: OneTimeCode, *, now: datetime | None = None) -> Issued:
    """A fresh code for the same attempt (the previous one stops working). Tries carry over."""
    now = now or utcnow()
    if challenge.used_at is not None:
        raise ResendRefused("used")
    if challenge.tries >= MAX_TRIES:
        raise ResendRefused("too_many_tries")
    if challenge.sends >= MAX_SENDS:
        raise ResendRefused("too_many_sends")
    ready = challenge.sent_at + RESEND_AFTER
    if now < ready:
        raise ResendRefused("too_early", wait=ready - now)
    code = _new_code()
    result = db.session.execute(
        update(OneTimeCode)
        .where(
            OneTimeCode.id == challenge.id,
            OneTimeCode.sends == challenge.sends,  # a concurrent resend wins, this one fails
            OneTimeCode.used_at.is_(None),
        )
        .values(
            code_hash=code_hash(challenge.handle, code), sent_at=now,
            expires_at=now + CODE_LIFETIME, sends=OneTimeCode.sends + 1,
        )
    )
    if not isinstance(result, CursorResult) or result.rowcount != 1:
        raise ResendRefused("too_early", wait=RESEND_AFTER)
    db.session.refresh(challenge)
    return Issued(challenge, code)


def send_failed(challenge: OneTimeCode, *, now: datetime | None = None) -> None:
    """The SMS of the current code did not go out (the provider failed or timed out).

    The attempt stays valid and nothing is stuck: a retry (:func:`resend`) is allowed at once,
    and the failed send does not count among the 3 resends (the rate limits still bound
    retries). The code itself stays valid too: after a timeout it may have reached the phone.
    """
    now = now or utcnow()
    db.session.execute(
        update(OneTimeCode)
        .where(
            OneTimeCode.id == challenge.id,
            OneTimeCode.sends == challenge.sends,  # a resend that came in between stays counted
            OneTimeCode.sends > 0,
            OneTimeCode.used_at.is_(None),
        )
        .values(sent_at=now - RESEND_AFTER, sends=OneTimeCode.sends - 1)
    )
    db.session.refresh(challenge)


def send(issued: Issued, body: str) -> None:
    """Send ``body`` (which carries the code) to the attempt's phone, through the configured
    sender. Call it after the commit. On failure the attempt stays open for an immediate retry
    (:func:`send_failed`) and the :class:`SmsError` goes to the caller, who tells the person
    and audits it."""
    try:
        sender_from_config(current_app.config).send(issued.challenge.phone, body)
    except SmsError:
        send_failed(issued.challenge)
        raise


def wait_before_resend(challenge: OneTimeCode, *, now: datetime | None = None) -> timedelta:
    now = now or utcnow()
    return max(timedelta(0), challenge.sent_at + RESEND_AFTER - now)


def resends_left(challenge: OneTimeCode) -> int:
    return max(0, MAX_SENDS - challenge.sends)


def _matches(challenge: OneTimeCode, typed: str) -> bool:
    """Whether ``typed`` is the attempt's current code: the one place a code is compared."""
    return (
        len(typed) == CODE_DIGITS
        and typed.isascii()
        and typed.isdigit()
        and hmac.compare_digest(code_hash(challenge.handle, typed), challenge.code_hash)
    )


def take_try(challenge: OneTimeCode, *, now: datetime | None = None) -> Check | None:
    """Counts one try of the attempt's code, before anything is compared; None when the code may
    now be compared (:func:`compare`), else why not (used, out of tries, expired).

    One conditional UPDATE checks and counts: 30 requests at the same instant get at most 5
    tries between them, whatever their order.
    """
    now = now or utcnow()
    table = OneTimeCode
    counted = db.session.execute(
        update(table)
        .where(table.id == challenge.id, table.used_at.is_(None), table.tries < MAX_TRIES,
               table.expires_at > now)
        .values(tries=table.tries + 1)
        .execution_options(synchronize_session=False)
    )
    db.session.refresh(challenge)
    if isinstance(counted, CursorResult) and counted.rowcount == 1:
        return None
    if challenge.used_at is not None:
        return Check.USED
    if challenge.tries >= MAX_TRIES:
        return Check.TOO_MANY_TRIES
    return Check.EXPIRED


def compare(challenge: OneTimeCode, typed: str, *, now: datetime | None = None) -> Check:
    """Compares ``typed`` with the code, once its try was taken (:func:`take_try`); the first
    right answer spends the code (OK), a later one finds it USED."""
    now = now or utcnow()
    typed = "".join(typed.split())  # people type "123 456"
    if not _matches(challenge, typed):
        return Check.WRONG
    table = OneTimeCode
    spent = db.session.execute(
        update(table)
        .where(table.id == challenge.id, table.used_at.is_(None),
               table.code_hash == challenge.code_hash)
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    db.session.refresh(challenge)
    if isinstance(spent, CursorResult) and spent.rowcount == 1:
        return Check.OK
    # Another request spent it first, or a resend replaced it meanwhile.
    return Check.USED if challenge.used_at is not None else Check.WRONG


def check(challenge: OneTimeCode, typed: str, *, now: datetime | None = None) -> Check:
    """Checks ``typed`` against the attempt's current code and records the outcome: a try is
    counted first (the right answer spends one too), then the code is compared."""
    refused = take_try(challenge, now=now)
    if refused is not None:
        return refused
    return compare(challenge, typed, now=now)
