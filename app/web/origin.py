"""Whether a request was sent by one of our own pages, for GETs that record something.

A GET must never change state on another site's behalf. The session cookie is ``SameSite=Lax``,
so a link on another site, followed by a signed-in doctor or staff member, arrives with it: if
opening a letter's content marked it read, another site could tell the DPI "read" for a letter
nobody read; if opening a patient's page wrote ``patient.viewed``, it could put accesses under a
staff member's name. The GETs that record something (the first reading, an access to a patient's
data, a search, an export) therefore do so only for a request of our own pages, and otherwise
lead to the page from which the user can ask for it themselves.

Modern browsers say where a request comes from in ``Sec-Fetch-Site``; a page cannot forge it.
Without it (an older browser), the ``Referer`` must name our own origin: the pages send it to
our own origin only (``Referrer-Policy``), and another site cannot make a browser send ours.
A request with neither (a link opened from a mail program, a bookmark, a script) is not ours.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import request

#: ``Sec-Fetch-Site`` of a request made by one of our pages (fetch, link, form).
SAME_ORIGIN = "same-origin"


def _origin(url: str) -> tuple[str, str] | None:
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if not parts.scheme or not parts.netloc:
        return None
    return parts.scheme.lower(), parts.netloc.lower()


def from_our_pages() -> bool:
    """True when the browser says this request was made by a page of our own origin."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        return site.strip().lower() == SAME_ORIGIN
    referer = request.headers.get("Referer")
    if not referer:
        return False
    ours = _origin(request.host_url)
    return ours is not None and _origin(referer) == ours
