"""Signing a test client in as a given account, for tests of the pages behind the gate.

The sign-in flows themselves are tested end to end in ``tests/auth/`` and in the browser;
tests of other pages start from a session shaped exactly as ``start_session`` shapes it.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from app.auth.session import User, principal_for


def session_values(user: User) -> dict[str, Any]:
    """The session ``start_session`` gives ``user`` (committed in the database)."""
    now = time.time()
    return {"_user_id": principal_for(user).get_id(), "_fresh": True, "_permanent": True,
            "sid": secrets.token_urlsafe(32), "signed_in_at": now, "seen_at": now}


def signed_session_cookie(app: Flask, user: User, **extra: Any) -> str:
    """The value of a session cookie signed in as ``user``, for a browser context."""
    serializer = app.session_interface.get_signing_serializer(app)  # type: ignore[attr-defined]
    value: str = serializer.dumps({**session_values(user), **extra})
    return value


def sign_in_as(client: FlaskClient, user: User) -> None:
    """Give ``client`` a signed-in session for ``user`` (committed in the database)."""
    with client.session_transaction() as session:
        session.clear()
        session.update(session_values(user))
        session.permanent = True
