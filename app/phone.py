"""Phone numbers in E.164 form."""

from __future__ import annotations

import re

_E164 = re.compile(r"\+[1-9][0-9]{7,14}")


def is_e164(value: object) -> bool:
    return isinstance(value, str) and _E164.fullmatch(value) is not None
