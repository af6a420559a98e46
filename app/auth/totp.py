"""Time-based one-time passwords (RFC 6238) for staff and desk, and their recovery codes.

No Flask here. Codes are 6 digits over 30-second steps (what every authenticator app shows by
default); a code is accepted one step early or late for clock drift, and only for a step later
than the last one accepted, so a code seen over a shoulder cannot be used a second time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import datetime
from typing import Final

import pyotp

STEP_SECONDS: Final = 30
DIGITS: Final = 6
WINDOW: Final = 1  # steps accepted either side of now
SECRET_BYTES: Final = 20  # 160 bits, RFC 4226's recommended length for HMAC-SHA1

_CODE = re.compile(r"[0-9]{6}")  # ASCII only: ``\d`` would take other scripts' digits too
_SPACES = re.compile(r"[\s-]+")

# No look-alikes (0/o, 1/i/l): a recovery code is typed from a printed sheet.
RECOVERY_ALPHABET: Final = "23456789abcdefghjkmnpqrstuvwxyz"
RECOVERY_GROUPS: Final = 4
RECOVERY_GROUP_LENGTH: Final = 4
_RECOVERY = re.compile(f"[{RECOVERY_ALPHABET}]{{{RECOVERY_GROUPS * RECOVERY_GROUP_LENGTH}}}")


def new_secret() -> str:
    """A fresh base32 secret of 160 bits (32 characters, no padding)."""
    return pyotp.random_base32(length=SECRET_BYTES * 8 // 5)


def provisioning_uri(secret: str, login: str, issuer: str = "Relais") -> str:
    """The ``otpauth://totp/...`` URI an authenticator app reads (from a QR code)."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).provisioning_uri(
        name=login, issuer_name=issuer
    )


def counter_at(now: datetime) -> int:
    if now.tzinfo is None:
        raise ValueError("TOTP needs an aware datetime")
    return int(now.timestamp()) // STEP_SECONDS


def code_at(secret: str, counter: int) -> str:
    """The code for one time step (for tests and for the enrolment page's self-check)."""
    return pyotp.HOTP(secret, digits=DIGITS).at(counter)


def verify(secret: str, code: str, last_counter: int | None, now: datetime) -> int | None:
    """The time step ``code`` belongs to, or None when it is wrong, malformed or replayed.

    Spaces and dashes are ignored ("123 456"); anything else than 6 ASCII digits is refused.
    A step not greater than ``last_counter`` is refused even when its code is right.
    """
    current = counter_at(now)
    typed = _SPACES.sub("", code)
    if not _CODE.fullmatch(typed):
        return None
    accepted: int | None = None
    # Every candidate is computed and compared, so timing does not tell which step matched.
    for counter in range(current - WINDOW, current + WINDOW + 1):
        if hmac.compare_digest(code_at(secret, counter), typed) and accepted is None:
            accepted = counter
    if accepted is None or (last_counter is not None and accepted <= last_counter):
        return None
    return accepted


def recovery_codes(n: int = 10) -> list[str]:
    """``n`` codes like ``7kq2-m9xd-4hfp-wz3c``: 16 symbols of 31, about 79 random bits each."""
    codes: list[str] = []
    for _ in range(n):
        raw = "".join(
            secrets.choice(RECOVERY_ALPHABET)
            for _ in range(RECOVERY_GROUPS * RECOVERY_GROUP_LENGTH)
        )
        codes.append(
            "-".join(
                raw[i : i + RECOVERY_GROUP_LENGTH]
                for i in range(0, len(raw), RECOVERY_GROUP_LENGTH)
            )
        )
    return codes


def normalize_recovery_code(code: str) -> str | None:
    """The code without spaces or dashes, lower case; None when it cannot be a recovery code."""
    typed = _SPACES.sub("", code).lower()
    return typed if _RECOVERY.fullmatch(typed) else None


def recovery_code_hash(code: str) -> str:
    """SHA-256 of the normalised code (see ``RecoveryCode.code_hash`` for why not argon2)."""
    normalized = normalize_recovery_code(code)
    if normalized is None:
        raise ValueError("not a recovery code")
    return hashlib.sha256(normalized.encode("ascii")).hexdigest()
