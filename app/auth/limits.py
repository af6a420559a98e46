"""Rate limits on the sign-in routes: per address and route, and per account (Flask-Limiter).

The per-account budget is one bucket per account, shared by every step of its sign-in. Its key
comes from the server's side: the account the typed login names (password step), then the
pending sign-in or the signed-in user kept in the signed session, never a form field.

Storage is Redis when ``REDIS_URL`` is set, so that every app server counts the same attempts;
otherwise memory (one process only, a laptop). A storage failure is not swallowed: sign-in
fails closed rather than skip a limit. While the storage is unreachable every limited route
answers 503 with a page saying that sign-in is temporarily unavailable, and the API's budget
for calls without a valid token answers a 503 problem (``app/dispatch/api.py``). The view never
runs, so no password is checked, no code consumed and no session started. The limiter's Redis
client reconnects by itself on the next request once Redis is back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar, cast

from flask import Flask, Response, current_app, g, render_template, request, session
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from limits import parse_many
from limits.errors import StorageError

from app.auth.session import account_of, accounts_for_login, signed_in
from app.web.problems import problem_response

F = TypeVar("F", bound=Callable[..., Any])

log = logging.getLogger(__name__)

#: What a storage failure raises: the ``limits`` library wraps its backend's own errors
#: (``redis.exceptions.RedisError`` for Redis) in it (``wrap_exceptions``, set below), so that
#: only the limiter's failures are caught here, never another use of Redis.
LimitStorageError = StorageError

#: Seconds a client is asked to wait before trying again while the storage is away.
RETRY_AFTER_SECONDS = 120

limiter = Limiter(key_func=get_remote_address, strategy="moving-window")


def _address_limit() -> str:
    return str(current_app.config["RATELIMIT_SIGNIN_PER_ADDRESS"])


def _account_limit() -> str:
    return str(current_app.config["RATELIMIT_SIGNIN_PER_ACCOUNT"])


def account_key() -> str:
    """The account a second step (code, resend, authenticator, recovery code, a password asked
    again) is about: the signed-in user, else the pending sign-in, both from the signed session
    that the server wrote. Never a form field: an extra ``login=`` would otherwise move each post
    into a new bucket. Without either, the address (the step then refuses anyway).
    """
    principal = signed_in()
    if principal is not None:
        return "account:" + account_of(principal.user)
    pending = session.get("pending")
    if isinstance(pending, dict) and isinstance(pending.get("account"), str):
        return "account:" + str(pending["account"])
    return "address:" + (get_remote_address() or "unknown")


def login_key() -> str:
    """The account the password step is about: the one the typed login names (the same bucket
    as its later steps, whatever the case or spaces typed), else the folded login itself.

    Computed once per request (the limiter asks once per limit).
    """
    cached = g.get("signin_login_key")
    if isinstance(cached, str):
        return cached
    typed = request.form.get("login", "")
    accounts = accounts_for_login(typed)
    if len(accounts) == 1:
        key = "account:" + account_of(accounts[0])
    else:
        key = "login:" + typed.strip().casefold()[:64]
    g.signin_login_key = key
    return key


def _limited(view: F, key_func: Callable[[], str]) -> F:
    limited = limiter.limit(_address_limit, methods=["POST"], scope="signin-address")(view)
    # One budget per account over every step (shared): the password, each code, each resend,
    # the authenticator, a password asked again all draw on it, whichever route they post to.
    limited = limiter.shared_limit(
        _account_limit, scope="signin-account", key_func=key_func, methods=["POST"]
    )(limited)
    return cast(F, limited)


def sign_in_limits(view: F) -> F:
    """Per address and per account limits on the POSTs of a step after the password."""
    return _limited(view, account_key)


def password_step_limits(view: F) -> F:
    """Per address and per account limits on the password step (``/auth/login``)."""
    return _limited(view, login_key)


def address_limit(view: F) -> F:
    """Per address limit only (the ACS: the account is known only after the signature check)."""
    return cast(F, limiter.limit(_address_limit, methods=["POST"], scope="signin-address")(view))


def within_unauthenticated_api_budget() -> bool:
    """Count one API call without a valid token against this address's budget
    (``RATELIMIT_API_UNAUTHENTICATED``); False once it is spent.

    Each refused call is an audit event: without a budget, anyone could grow the trail at will.
    Calls with a valid token never count, so the DPI is never slowed by someone else's probing.
    Raises :data:`LimitStorageError` when the budget cannot be counted: the caller refuses the
    call (:func:`unavailable_problem`) rather than skip the count.
    """
    address = get_remote_address() or "unknown"
    allowed = True
    for item in parse_many(str(current_app.config["RATELIMIT_API_UNAUTHENTICATED"])):
        allowed = limiter.limiter.hit(item, "api-unauthenticated", address) and allowed
    return allowed


def _log_outage(error: StorageError) -> None:
    # The backend's error type only: its message names the storage's address, and nothing of
    # the request (login, password, code) belongs in this line.
    log.warning("sign-in refused: rate-limit storage unreachable (%s, request %s)",
                type(error.storage_error).__name__, g.get("request_id"))


def unavailable_problem(error: StorageError) -> Response:
    """The API's answer when its budget cannot be counted: 503, retry later."""
    _log_outage(error)
    response = problem_response(
        503, "Authentication is temporarily unavailable; retry in a few minutes.", None)
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def _storage_unavailable(error: StorageError) -> Response | tuple[str, int, dict[str, str]]:
    """A limited route while the storage is away: refuse (the view never ran), say so."""
    _log_outage(error)
    return (render_template("errors/signin_unavailable.html", request_id=g.get("request_id")),
            503, {"Retry-After": str(RETRY_AFTER_SECONDS)})


def init_limits(app: Flask) -> None:
    config = app.config
    config.setdefault("RATELIMIT_STORAGE_URI", config.get("REDIS_URL") or "memory://")
    config.setdefault("RATELIMIT_KEY_PREFIX", "relais")
    config.setdefault("RATELIMIT_HEADERS_ENABLED", False)
    config.setdefault("RATELIMIT_SWALLOW_ERRORS", False)
    # Backend errors arrive as limits' StorageError, caught below and nowhere else (whatever
    # other storage options an instance sets).
    config["RATELIMIT_STORAGE_OPTIONS"] = {**(config.get("RATELIMIT_STORAGE_OPTIONS") or {}),
                                           "wrap_exceptions": True}
    config.setdefault("RATELIMIT_SIGNIN_PER_ADDRESS", "30 per minute;300 per hour")
    config.setdefault("RATELIMIT_SIGNIN_PER_ACCOUNT", "20 per 15 minutes;60 per day")
    config.setdefault("RATELIMIT_API_UNAUTHENTICATED", "30 per minute;300 per hour")
    limiter.init_app(app)
    app.register_error_handler(StorageError, _storage_unavailable)
