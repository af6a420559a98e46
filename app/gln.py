"""GLN (Global Location Number): the 13-digit Swiss identifier of health professionals."""

from __future__ import annotations

import re

_GLN = re.compile(r"[0-9]{13}")


def gs1_check_digit(digits: str) -> int:
    """The GS1 check digit of the first 12 digits (weights 1, 3, 1, 3 ... from the left)."""
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(digits[:12]))
    return (10 - total % 10) % 10


def is_valid_gln(value: object) -> bool:
    """True for 13 digits whose last one is the GS1 check digit of the others."""
    return (
        isinstance(value, str)
        and _GLN.fullmatch(value) is not None
        and gs1_check_digit(value) == int(value[12])
    )


def make_gln(prefix12: str) -> str:
    """Complete 12 digits with their check digit (demo data and tests)."""
    if not re.fullmatch(r"[0-9]{12}", prefix12):
        raise ValueError("a GLN prefix is 12 digits")
    return prefix12 + str(gs1_check_digit(prefix12))
