"""Sign-in pages for doctors (login, password, SMS code) and staff (password, TOTP), sign-out,
the forced and the voluntary password change, and staff recovery codes: one module a page.

A sign-in runs in two steps. The password step (:mod:`.login`), when right, does not sign
anyone in: it starts a *pending* sign-in (:mod:`.pending`) in a fresh session. The second
factor (:mod:`.sms_code`, or the staff authenticator in :mod:`.staff_totp`) then signs in. What
each step decides is :mod:`app.auth.sign_in`'s; these pages show its refusals as one message.
"""

from __future__ import annotations

# Each page module adds its routes to the blueprint as it is imported.
from app.auth.views import (  # noqa: F401
    login,
    password_change,
    recovery_codes,
    sign_out,
    sms_code,
    staff_totp,
)
from app.auth.views.blueprint import bp

__all__ = ["bp"]
