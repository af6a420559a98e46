"""The pending sign-in: the right password is known, the second factor still to come.

The password step starts it in a fresh session (``session["pending"]``: the account, the next
step, where to go afterwards, the SMS attempt's handle, the time; 10 minutes at most). The
second factor then calls :func:`finish`, which signs in through :func:`start_session` (yet
another fresh session). A step that finds no valid pending sign-in starts again from the login.
"""

from __future__ import annotations

import time
from typing import Any, Literal, cast
from urllib.parse import urlencode

from flask import current_app, flash, g, redirect, session, url_for
from flask_babel import lazy_gettext as _l
from flask_login import logout_user
from werkzeug.wrappers import Response as BaseResponse

from app.auth.session import User, account_of, account_user, safe_next, start_session
from app.extensions import db

Stage = Literal["code", "totp", "totp_enrol"]

#: How long a pending sign-in (right password, second factor still to come) lasts.
PENDING_LIFETIME_SECONDS = 10 * 60

ATTEMPT_EXPIRED = _l("Votre tentative de connexion a expiré. Recommencez la connexion.")

_STEP_ENDPOINTS: dict[str, str] = {"code": "auth.code", "totp": "auth.totp",
                                   "totp_enrol": "auth.totp_enrol"}


def forget_csrf_token() -> None:
    """After the session was cleared: the CSRF token Flask-WTF cached for this request (on
    ``g``) belongs to the old session, so a form rendered from here on must get a new one."""
    g.pop(current_app.config.get("WTF_CSRF_FIELD_NAME", "csrf_token"), None)


def fresh_session() -> None:
    """Nothing from before survives (session fixation), except the chosen language."""
    lang = session.get("lang")
    logout_user()
    session.clear()
    forget_csrf_token()
    if lang:
        session["lang"] = lang


def begin(user: User, stage: Stage, next_path: str, handle: str | None = None) -> None:
    """Starts the pending sign-in of ``user`` at ``stage``, in a fresh session."""
    fresh_session()
    session["pending"] = {
        "account": account_of(user),
        "stage": stage,
        "next": next_path,
        "handle": handle,
        "at": time.time(),
    }


def pending_at(stage: Stage) -> tuple[dict[str, Any], User] | None:
    """The pending sign-in at ``stage`` and its account, when still valid."""
    pending = session.get("pending")
    if not isinstance(pending, dict) or pending.get("stage") != stage:
        return None
    try:
        started = float(pending.get("at", 0))
    except (TypeError, ValueError):
        return None
    if not 0 <= time.time() - started <= PENDING_LIFETIME_SECONDS:
        return None
    user = account_user(str(pending.get("account", "")))
    if user is None:
        return None
    return pending, user


def restart(message: Any = ATTEMPT_EXPIRED, next_path: str | None = None) -> BaseResponse:
    """Back to the first step, with a message; the pending sign-in is dropped."""
    pending = session.pop("pending", None)
    if next_path is None and isinstance(pending, dict):
        next_path = safe_next(pending.get("next"))
    flash(str(message), "error")
    target = url_for("auth.login")
    if next_path and next_path != "/":
        target += "?" + urlencode({"next": next_path})
    return redirect(target, code=303)


def no_such_step() -> BaseResponse:
    """A step that is not the pending sign-in's: go to its step, or start again."""
    pending = session.get("pending")
    stage = pending.get("stage") if isinstance(pending, dict) else None
    if stage in _STEP_ENDPOINTS and pending_at(cast(Stage, stage)) is not None:
        return redirect(url_for(_STEP_ENDPOINTS[stage]), code=303)
    return restart()


def finish(user: User, next_path: str, *, method: str, note: str | None = None) -> BaseResponse:
    """Every factor checked: sign in, commit, and go on."""
    start_session(user, method=method)
    forget_csrf_token()
    if note:
        flash(note, "info")  # after start_session, which starts an empty session
    if user.must_change_password:
        session["after_password"] = next_path
        db.session.commit()
        return redirect(url_for("auth.change_password"), code=303)
    db.session.commit()
    return redirect(next_path, code=303)
