"""DPI API clients: bearer tokens shown once, stored hashed, compared in constant time; the
scopes each client holds (``app/scopes.py``) and the check of a call against them."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Collection

from sqlalchemy import select
from sqlalchemy.orm import joinedload

from app.audit import Actor, record
from app.extensions import db
from app.models import ApiClient, ApiClientScope
from app.models.base import utcnow
from app.scopes import DEFAULT_SCOPES, Scope, UnknownScope, parse_scopes

_TOKEN = re.compile(r"rl_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class ClientError(Exception):
    pass


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def create_client(
    name: str, actor: Actor, scopes: Collection[str] | None = None
) -> tuple[ApiClient, str]:
    """Create a client holding ``scopes`` (None: the DPI's set); returns it with its token,
    which is never shown or stored again. An unknown scope creates nothing."""
    if not _NAME.fullmatch(name):
        raise ClientError("a client name is 1-64 letters, digits, dots, dashes or underscores")
    try:
        held = DEFAULT_SCOPES if scopes is None else parse_scopes(scopes)
    except UnknownScope as error:
        raise ClientError(str(error)) from None
    if db.session.scalar(select(ApiClient).where(ApiClient.name == name)) is not None:
        raise ClientError(f"an API client named {name!r} already exists")
    token_id = secrets.token_hex(8)
    token = f"rl_{token_id}_{secrets.token_urlsafe(32)}"
    client = ApiClient(name=name, token_id=token_id, token_hash=_digest(token))
    client.scope_links = [ApiClientScope(scope=s.value) for s in sorted(held)]
    db.session.add(client)
    db.session.flush()
    record(actor, "api_client.created", target=f"api_client:{name}",
           details={"scopes": sorted(client.scopes)})
    return client, token


def revoke_client(name: str, actor: Actor) -> ApiClient:
    client = db.session.scalar(select(ApiClient).where(ApiClient.name == name))
    if client is None:
        raise ClientError(f"no API client named {name!r}")
    if client.revoked_at is None:
        client.revoked_at = utcnow()
        db.session.flush()
        record(actor, "api_client.revoked", target=f"api_client:{name}")
    return client


def authenticate(token: str) -> ApiClient | None:
    """The live client this token belongs to, or None. Says nothing about why."""
    match = _TOKEN.fullmatch(token)
    if match is None:
        return None
    client = db.session.scalars(
        select(ApiClient).where(ApiClient.token_id == match.group(1))
        # Its scopes come in the same query: every call checks them.
        .options(joinedload(ApiClient.scope_links))
    ).unique().one_or_none()
    # Compare even when there is no client, so timing does not tell which ids exist.
    expected = client.token_hash if client is not None else "0" * 64
    if not hmac.compare_digest(_digest(token), expected) or client is None:
        return None
    if client.revoked_at is not None:
        return None
    return client


def missing_scope(client: ApiClient, accepted: Collection[Scope]) -> Scope | None:
    """THE scope check of a call: None when the client holds one of the ``accepted`` scopes,
    otherwise the one it should have been given (the first)."""
    if any(client.holds(scope) for scope in accepted):
        return None
    return next(iter(accepted))
