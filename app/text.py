"""THE control-character check for text people or systems send us.

Control characters (C0 and DEL) in a name, a title or a search are never meant: a line break in
a name splits a log line or a CSV cell, a NUL truncates it in C. Every field refuses them,
through :func:`has_control`; text that may span lines (the DPI's free text) may keep tab and
line feed, and nothing else (the DPI API, INTERFACES.md).
"""

from __future__ import annotations

import re

#: C0 controls and DEL.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: The same, but tab and line feed are allowed (multi-line text from the DPI).
_CONTROL_BUT_LINES = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def has_control(text: str, *, lines: bool = False) -> bool:
    """Whether ``text`` holds a control character; with ``lines``, tab and line feed are not
    counted (text that may span lines)."""
    return (_CONTROL_BUT_LINES if lines else _CONTROL).search(text) is not None


def without_control(text: str, replacement: str = "?") -> str:
    """``text`` with each control character replaced, for echoing a name back in an error."""
    return _CONTROL.sub(replacement, text)
