"""THE email-address check, beside ``app/gln.py`` and ``app/phone.py``.

Deliberately loose (one ``@``, a dot in the domain, no spaces, at most 320 characters, a local
part of at most 64): the address is proven by the confirmation link sent to it, not by a regex.
"""

from __future__ import annotations

import re

from app.text import has_control

#: RFC 5321's limits: 64 for the local part, 320 in all (64 + "@" + 255).
MAX_LENGTH = 320
_ADDRESS = re.compile(r"[^@\s]{1,64}@[^@\s]+\.[^@\s]+")


def is_email_address(value: str) -> bool:
    """Whether ``value`` looks like an email address (no control character, no space)."""
    return (len(value) <= MAX_LENGTH and not has_control(value)
            and _ADDRESS.fullmatch(value) is not None)
