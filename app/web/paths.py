"""Redirect targets: only paths of this site, never an open redirect."""

from __future__ import annotations

import re

#: A path on this site: one leading slash, then no slash or backslash right after it, and no
#: whitespace or control character anywhere (browsers drop tabs and newlines from URLs, so
#: ``/<TAB>/evil.example`` would become ``//evil.example``, another site).
_LOCAL_PATH = re.compile(r"/(?![/\\])[^\\\s\x00-\x1f\x7f]*")


def local_path(target: str | None, default: str = "/") -> str:
    """``target`` when it is a path of ours, else ``default``."""
    if target and len(target) <= 2000 and _LOCAL_PATH.fullmatch(target):
        return target
    return default
