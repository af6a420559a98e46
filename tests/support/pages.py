"""What the tests read off a page: its CSRF token, and whether it keeps the security rules
every page keeps (no inline code, the security headers)."""

from __future__ import annotations

import re

from werkzeug.test import TestResponse


def csrf_token(response: TestResponse) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', response.get_data(as_text=True))
    assert match is not None, "the page carries no csrf_token field"
    return match.group(1)


def assert_no_inline_code(html: str) -> None:
    """The CSP forbids inline script and style: a page must not need them."""
    for tag in re.findall(r"<script\b[^>]*>", html, re.IGNORECASE):
        assert "src=" in tag, f"inline script: {tag}"
    assert not re.search(r"<style\b", html, re.IGNORECASE), "inline <style> block"
    assert not re.search(r"\sstyle\s*=", html, re.IGNORECASE), "style= attribute"
    assert not re.search(r"\son[a-z]+\s*=", html, re.IGNORECASE), "inline event handler"
    assert "javascript:" not in html.lower()


def assert_secure_headers(response: TestResponse) -> None:
    csp = response.headers.get("Content-Security-Policy", "")
    assert "default-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "object-src 'none'" in csp
    assert "unsafe-inline" not in csp
    assert "unsafe-eval" not in csp
    assert response.headers.get("X-Content-Type-Options") == "nosniff"
    assert response.headers.get("X-Frame-Options") == "DENY"
    assert response.headers.get("Referrer-Policy") == "same-origin"
    assert response.headers.get("Cache-Control") == "no-store"
    assert re.fullmatch(r"[A-Za-z0-9._-]{8,64}", response.headers.get("X-Request-ID", ""))
