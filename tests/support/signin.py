"""Signing a test client in as a given account, for tests of the pages behind the gate.

The sign-in flows themselves are tested end to end in ``tests/auth/`` and in the browser;
tests of other pages start from a session shaped exactly as ``start_session`` shapes it.
"""

from __future__ import annotations

import secrets
import time

from flask.testing import FlaskClient

from app.auth.session import User, principal_for


def sign_in_as(client: FlaskClient, user: User) -> None:
    """Give ``client`` a signed-in session for ``user`` (committed in the database)."""
    principal = principal_for(user)
    now = time.time()
    with client.session_transaction() as session:
        session.clear()
        session["_user_id"] = principal.get_id()
        session["_fresh"] = True
        session["sid"] = secrets.token_urlsafe(32)
        session["signed_in_at"] = now
        session["seen_at"] = now
        session.permanent = True
