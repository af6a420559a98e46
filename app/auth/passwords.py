"""Passwords: argon2id hashes, the rules a new password must meet, and temporary passwords.

No Flask here: ``check_new_password`` returns stable short codes, and views translate them
(``describe(code, locale)`` gives the French and English text).
"""

from __future__ import annotations

import functools
import re
import secrets
import threading
import unicodedata
from collections.abc import Sequence
from importlib import resources
from typing import Final

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from zxcvbn import zxcvbn as _zxcvbn  # type: ignore[import-untyped]

# argon2id with the RFC 9106 "second recommended" profile (64 MiB, 3 passes).
_hasher = PasswordHasher(time_cost=3, memory_cost=64 * 1024, parallelism=4, type=Type.ID)

# No look-alike characters: the doctor types this from a printed slip.
_ALPHABET = "abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"

MIN_LENGTH: Final = 12
MAX_LENGTH: Final = 128  # guards argon2 and zxcvbn against huge inputs
MIN_SCORE: Final = 3  # zxcvbn score, 0 (too guessable) to 4 (very unguessable)
MIN_PERSONAL_LENGTH: Final = 4  # shorter personal fragments are not looked for

TOO_SHORT: Final = "too_short"
TOO_LONG: Final = "too_long"
COMMON: Final = "common"
WEAK: Final = "weak"
CONTAINS_PERSONAL_DATA: Final = "contains_personal_data"

MESSAGES: Final[dict[str, dict[str, str]]] = {
    TOO_SHORT: {
        "en": f"The password must have at least {MIN_LENGTH} characters.",
        "fr": f"Le mot de passe doit compter au moins {MIN_LENGTH} caractères.",
    },
    TOO_LONG: {
        "en": f"The password must have at most {MAX_LENGTH} characters.",
        "fr": f"Le mot de passe doit compter au plus {MAX_LENGTH} caractères.",
    },
    COMMON: {
        "en": "This password is among the most common ones; choose another.",
        "fr": "Ce mot de passe fait partie des plus courants ; choisissez-en un autre.",
    },
    WEAK: {
        "en": "This password is too easy to guess; a few unrelated words make a strong one.",
        "fr": "Ce mot de passe est trop facile à deviner ; quelques mots sans lien entre eux "
        "en font un solide.",
    },
    CONTAINS_PERSONAL_DATA: {
        "en": "The password must not contain your login or your name.",
        "fr": "Le mot de passe ne doit contenir ni votre identifiant ni votre nom.",
    },
}
REASONS: Final = tuple(MESSAGES)
DEFAULT_LOCALE: Final = "fr"

_TRAILING = re.compile(r"[\d\W_]+$")
_LEADING = re.compile(r"^[\d\W_]+")
_SEPARATORS = re.compile(r"[\W_]+")

# zxcvbn keeps the user inputs in a module-level dictionary while it runs: not thread-safe.
_zxcvbn_lock = threading.Lock()


def hash_password(password: str) -> str:
    """The argon2id hash of the password's NFKC form, the form its rules were judged in: "é"
    typed composed on one keyboard and decomposed on another is the same password."""
    return _hasher.hash(normalize(password))


def verify_password(password_hash: str, password: str) -> bool:
    """True if ``password`` is the one hashed, in its NFKC form; or as typed, for the hashes
    made before passwords were normalised (only when the two forms differ)."""
    normalized = normalize(password)
    candidates = [normalized] if normalized == password else [normalized, password]
    for candidate in candidates:
        try:
            if _hasher.verify(password_hash, candidate):
                return True
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            continue
    return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


def temporary_password(length: int = 16) -> str:
    """A random password to be changed at first sign-in, grouped in fours for reading aloud.

    16 characters of a 55-symbol alphabet (about 92 bits); it always passes ``check_new_password``.
    """
    raw = "".join(secrets.choice(_ALPHABET) for _ in range(length))
    return "-".join(raw[i : i + 4] for i in range(0, length, 4))


def describe(code: str, locale: str | None = None) -> str:
    """The message for a refusal code in ``locale`` ("fr", "en", "fr_CH", "en-GB" ...).

    Unknown locales fall back to French; an unknown code raises ``KeyError``.
    """
    messages = MESSAGES[code]
    language = (locale or DEFAULT_LOCALE).replace("-", "_").split("_", 1)[0].lower()
    return messages.get(language, messages[DEFAULT_LOCALE])


def normalize(password: str) -> str:
    """NFKC, the form in which a password's length is measured."""
    return unicodedata.normalize("NFKC", password)


def _fold(text: str) -> str:
    """For comparisons: NFKC, no accents, case-folded ("Hôpital" and "HOPITAL" are equal)."""
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return unicodedata.normalize("NFKC", bare).casefold()


@functools.cache
def common_passwords() -> frozenset[str]:
    """The bundled list of common passwords (folded), read once per process."""
    text = (
        resources.files("app.auth")
        .joinpath("data", "common_passwords.txt")
        .read_text(encoding="utf-8")
    )
    return frozenset(w for line in text.splitlines() if (w := _fold(line.strip())))


def _is_common(folded: str) -> bool:
    """In the list as typed, or once trailing (and leading) digits and punctuation go."""
    trailing_stripped = _TRAILING.sub("", folded)
    candidates = {folded, trailing_stripped, _LEADING.sub("", trailing_stripped)}
    candidates.discard("")
    return not candidates.isdisjoint(common_passwords())


def _personal_fragments(user_inputs: Sequence[str]) -> set[str]:
    """Each input, and each word of it, folded; only the part before "@" of an email."""
    fragments: set[str] = set()
    for value in user_inputs:
        folded = _fold(value).strip()
        if "@" in folded:
            folded = folded.split("@", 1)[0]
        fragments.add(folded)
        fragments.update(_SEPARATORS.split(folded))
    return {f for f in fragments if len(f) >= MIN_PERSONAL_LENGTH}


def _contains_personal_data(folded: str, user_inputs: Sequence[str]) -> bool:
    squeezed = _SEPARATORS.sub("", folded)
    return any(
        fragment in folded or _SEPARATORS.sub("", fragment) in squeezed
        for fragment in _personal_fragments(user_inputs)
    )


def strength_score(password: str, user_inputs: Sequence[str] = ()) -> int:
    """zxcvbn's score (0 to 4), offline, with the user's own data as a dictionary."""
    if len(password) > MAX_LENGTH:
        raise ValueError(f"password longer than {MAX_LENGTH} characters")
    if not password:
        return 0  # zxcvbn fails on an empty string
    inputs = [_fold(v) for v in user_inputs if v]
    with _zxcvbn_lock:
        result = _zxcvbn(password, user_inputs=inputs, max_length=MAX_LENGTH)
    return int(result["score"])


def check_new_password(password: str, *, user_inputs: Sequence[str] = ()) -> list[str]:
    """The codes of the rules a new password breaks (see ``REASONS``); empty when accepted.

    ``user_inputs``: what an attacker knows of the user (login, first and family names, email,
    GLN). A password containing one of them (4 characters or more, case and accents ignored)
    is refused, and zxcvbn treats them as a dictionary when it scores the password.
    """
    normalized = normalize(password)
    if len(normalized) > MAX_LENGTH:
        return [TOO_LONG]  # nothing more is computed on an oversized input
    reasons: list[str] = []
    if len(normalized) < MIN_LENGTH:
        reasons.append(TOO_SHORT)
    folded = _fold(normalized)
    if _is_common(folded):
        reasons.append(COMMON)
    if _contains_personal_data(folded, user_inputs):
        reasons.append(CONTAINS_PERSONAL_DATA)
    if strength_score(normalized, user_inputs) < MIN_SCORE:
        reasons.append(WEAK)
    return reasons


#: A real argon2id hash of a random password, checked when the login is unknown, so that an
#: unknown login costs the same work as a known one (no account enumeration by timing).
_DUMMY_HASH: str | None = None


def burn_password_check(password: str) -> None:
    global _DUMMY_HASH
    if _DUMMY_HASH is None:
        _DUMMY_HASH = hash_password(temporary_password())
    verify_password(_DUMMY_HASH, password)
