"""Rate limits on the sign-in routes: per address and per login (Flask-Limiter).

Storage is Redis when ``REDIS_URL`` is set, so that every app server counts the same attempts;
otherwise memory (one process only, a laptop). A storage failure is not swallowed: sign-in
fails closed rather than skip a limit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

from flask import Flask, current_app, request, session
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from limits import parse_many

F = TypeVar("F", bound=Callable[..., Any])

limiter = Limiter(key_func=get_remote_address, strategy="moving-window")


def _address_limit() -> str:
    return str(current_app.config["RATELIMIT_SIGNIN_PER_ADDRESS"])


def _account_limit() -> str:
    return str(current_app.config["RATELIMIT_SIGNIN_PER_ACCOUNT"])


def account_key() -> str:
    """The account an attempt is about: the typed login, else the pending sign-in's account.

    Logins are folded to lower case so that ``Dupont`` and ``dupont`` share one budget.
    """
    login = request.form.get("login")
    if login is not None:
        return "login:" + login.strip().casefold()[:64]
    pending = session.get("pending")
    if isinstance(pending, dict) and "account" in pending:
        return "account:" + str(pending["account"])
    return "address:" + (get_remote_address() or "unknown")


def sign_in_limits(view: F) -> F:
    """Per address and per account limits on the POSTs of a sign-in step."""
    limited = limiter.limit(_address_limit, methods=["POST"], scope="signin-address")(view)
    limited = limiter.limit(
        _account_limit, key_func=account_key, methods=["POST"], scope="signin-account"
    )(limited)
    return cast(F, limited)


def address_limit(view: F) -> F:
    """Per address limit only (the ACS: the account is known only after the signature check)."""
    return cast(F, limiter.limit(_address_limit, methods=["POST"], scope="signin-address")(view))


def within_unauthenticated_api_budget() -> bool:
    """Count one API call without a valid token against this address's budget
    (``RATELIMIT_API_UNAUTHENTICATED``); False once it is spent.

    Each refused call is an audit event: without a budget, anyone could grow the trail at will.
    Calls with a valid token never count, so the DPI is never slowed by someone else's probing.
    """
    address = get_remote_address() or "unknown"
    allowed = True
    for item in parse_many(str(current_app.config["RATELIMIT_API_UNAUTHENTICATED"])):
        allowed = limiter.limiter.hit(item, "api-unauthenticated", address) and allowed
    return allowed


def init_limits(app: Flask) -> None:
    config = app.config
    config.setdefault("RATELIMIT_STORAGE_URI", config.get("REDIS_URL") or "memory://")
    config.setdefault("RATELIMIT_KEY_PREFIX", "relais")
    config.setdefault("RATELIMIT_HEADERS_ENABLED", False)
    config.setdefault("RATELIMIT_SWALLOW_ERRORS", False)
    config.setdefault("RATELIMIT_SIGNIN_PER_ADDRESS", "30 per minute;300 per hour")
    config.setdefault("RATELIMIT_SIGNIN_PER_ACCOUNT", "20 per 15 minutes;60 per day")
    config.setdefault("RATELIMIT_API_UNAUTHENTICATED", "30 per minute;300 per hour")
    limiter.init_app(app)
