"""Who is signed in, with which role, for how long: the one gate every page goes through.

Closed by default: a view is reachable only if it says so, with :func:`public` (anyone) or
:func:`requires` (signed in with one of the roles). A view that says nothing answers 404 to
everyone, and ``tests/web/test_access.py`` walks ``app.url_map`` to prove no route forgets.
The DPI API (blueprint ``api``) is the exception: it checks its own bearer tokens.

Sessions live in Flask's signed cookie and hold only the user's kind, id and *epoch*, and a
random session id: bumping the epoch in the database ("sign out everywhere", deactivation, a desk
reset) ends every older session at its next request; signing out writes the session id's hash to
``ended_sessions``, so a copy of the cookie kept from before is refused too. A session ends after
15 minutes idle or 10 hours in all.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar, cast
from urllib.parse import urlencode

from flask import (
    Flask,
    abort,
    current_app,
    flash,
    g,
    redirect,
    request,
    session,
    url_for,
)
from flask_babel import lazy_gettext as _l
from flask_login import LoginManager, UserMixin, current_user, login_user, logout_user
from sqlalchemy import delete, func, select, update
from werkzeug.wrappers import Response as BaseResponse

from app.audit import Actor, record
from app.auth.passwords import burn_password_check, verify_password
from app.extensions import db
from app.models import Doctor, EndedSession, StaffUser
from app.models.base import utcnow
from app.web.listing import row_id
from app.web.paths import local_path

Role = Literal["doctor", "staff", "desk"]
ROLES: tuple[Role, ...] = ("doctor", "staff", "desk")


#: Blueprints that authenticate every call themselves (bearer tokens), outside this gate.
TOKEN_BLUEPRINTS = frozenset({"api"})

#: Endpoints a signed-in user with a temporary password may still use.
DURING_PASSWORD_CHANGE = frozenset({"auth.change_password", "auth.logout", "web.set_language",
                                    "static"})

login_manager = LoginManager()

F = TypeVar("F", bound=Callable[..., Any])

User = Doctor | StaffUser


@dataclass(eq=False)
class Principal(UserMixin):  # type: ignore[misc]
    """The signed-in person, rebuilt from the database at every request."""

    kind: Literal["doctor", "staff"]
    user: User
    role: Role
    epoch: int
    extra: dict[str, Any] = field(default_factory=dict)

    def get_id(self) -> str:
        return f"{self.kind}:{self.user.id}:{self.epoch}"

    @property
    def id(self) -> int:
        return self.user.id

    @property
    def actor(self) -> Actor:
        return actor_for(self.user)

    @property
    def must_change_password(self) -> bool:
        return bool(self.user.must_change_password)

    @property
    def display_name(self) -> str:
        if isinstance(self.user, Doctor):
            return self.user.display_name or (self.user.login or self.user.gln)
        return self.user.login

    @property
    def doctor(self) -> Doctor:
        if not isinstance(self.user, Doctor):
            raise TypeError("not a doctor")
        return self.user

    @property
    def staff(self) -> StaffUser:
        if not isinstance(self.user, StaffUser):
            raise TypeError("not a staff user")
        return self.user


def actor_for(user: User) -> Actor:
    """The audit actor for a person: doctors by GLN, staff and desk by login."""
    if isinstance(user, Doctor):
        return Actor("doctor", user.gln)
    return Actor(user.role, user.login)


def role_of(user: User) -> Role:
    return "doctor" if isinstance(user, Doctor) else cast(Role, user.role)


def may_sign_in(user: User) -> bool:
    """Whether the account itself allows sign-in (a lockout is checked separately)."""
    if isinstance(user, Doctor):
        return user.state != "deactivated"
    return user.active


def principal_for(user: User) -> Principal:
    kind: Literal["doctor", "staff"] = "doctor" if isinstance(user, Doctor) else "staff"
    return Principal(kind=kind, user=user, role=role_of(user), epoch=user.session_epoch)


def _named_account(account: str) -> tuple[type[Doctor] | type[StaffUser], int] | None:
    """The table and row id ``"doctor:<id>"`` or ``"staff:<id>"`` names; None for anything else,
    an id no row can hold included."""
    kind, _, raw_id = account.partition(":")
    model = Doctor if kind == "doctor" else StaffUser if kind == "staff" else None
    account_id = row_id(raw_id)
    if model is None or account_id is None:
        return None
    return model, account_id


def account_user(account: str) -> User | None:
    """The user named by ``"doctor:<id>"`` or ``"staff:<id>"`` who may still sign in."""
    named = _named_account(account)
    if named is None:
        return None
    user = cast("User | None", db.session.get(*named))
    if user is None or not may_sign_in(user):
        return None
    return user


def account_of(user: User) -> str:
    """``"doctor:<id>"`` or ``"staff:<id>"``: how a pending sign-in and a rate-limit bucket
    name an account."""
    return f"doctor:{user.id}" if isinstance(user, Doctor) else f"staff:{user.id}"


def accounts_for_login(login: str) -> list[User]:
    """The accounts a typed login names: doctors and staff share one login namespace, compared
    without case and surrounding spaces."""
    folded = login.strip().casefold()
    # No login holds a NUL (PostgreSQL cannot even compare one: it would be a 500).
    if not folded or len(folded) > 64 or "\x00" in folded:
        return []
    found: list[User] = list(
        db.session.scalars(select(Doctor).where(func.lower(Doctor.login) == folded))
    )
    found.extend(db.session.scalars(select(StaffUser).where(func.lower(StaffUser.login) == folded)))
    return found


def _session_id_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def _load(user_id: str) -> Principal | None:
    """The principal of the session cookie, in one round trip: the account, read only if this
    session was not ended (signed out already: a kept copy of the cookie is refused), then
    checked as every sign-in is (``may_sign_in``) and against the account's epoch."""
    session_id = session.get("sid")
    if not isinstance(session_id, str):
        return None  # not made by start_session
    account, _, raw_epoch = user_id.rpartition(":")
    named = _named_account(account)
    if named is None or not raw_epoch.isdigit():
        return None
    model, account_id = named
    ended = select(EndedSession.id_hash).where(
        EndedSession.id_hash == _session_id_hash(session_id)).exists()
    user = cast("User | None", db.session.scalar(
        select(model).where(model.id == account_id, ~ended)))
    if user is None or not may_sign_in(user) or user.session_epoch != int(raw_epoch):
        return None
    return principal_for(user)


# --- access declarations --------------------------------------------------------------------


def public(view: F) -> F:
    """Anyone may reach this view, signed in or not."""
    view.relais_access = "public"  # type: ignore[attr-defined]
    return view


def requires(*roles: Role) -> Callable[[F], F]:
    """Only a signed-in user with one of ``roles`` may reach this view."""
    if not roles or any(role not in ROLES for role in roles):
        raise ValueError(f"roles must be among {ROLES}")

    def mark(view: F) -> F:
        view.relais_access = frozenset(roles)  # type: ignore[attr-defined]
        return view

    return mark


def access_of(app: Flask, endpoint: str) -> str | frozenset[str] | None:
    """``"public"``, ``"token"`` (the API), a set of roles, or None (undeclared: closed)."""
    if endpoint == "static":
        return "public"
    view = app.view_functions.get(endpoint)
    declared: str | frozenset[str] | None = getattr(view, "relais_access", None)
    if declared is None and endpoint.partition(".")[0] in TOKEN_BLUEPRINTS:
        return "token"
    return declared


def signed_in() -> Principal | None:
    user = current_user
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    return cast(Principal, user._get_current_object())


def current_principal() -> Principal:
    """The signed-in principal of a view that :func:`requires` a role."""
    principal = signed_in()
    if principal is None:
        abort(401)
    return principal


# --- starting and ending sessions --------------------------------------------------------------


def start_session(user: User, *, method: str, details: dict[str, Any] | None = None) -> None:
    """Sign ``user`` in: a new session (never the one from before sign-in), audited.

    The caller has checked every factor; it commits afterwards.
    """
    lang = session.get("lang")
    session.clear()  # session fixation: nothing from before sign-in survives
    if lang:
        session["lang"] = lang
    elif isinstance(user, Doctor) and user.language:
        # Mon profil: the doctor's language, unless they just chose one on the sign-in pages.
        session["lang"] = user.language
    now = time.time()
    session["sid"] = secrets.token_urlsafe(32)
    session["signed_in_at"] = now
    session["seen_at"] = now
    session.permanent = True
    user.failed_sign_ins = 0
    user.sign_in_locked_at = None
    if isinstance(user, Doctor):
        user.sign_in_locked = False
    user.last_sign_in_at = utcnow()
    login_user(principal_for(user), fresh=True)
    record(actor_for(user), "auth.signed_in", target=target_of(user),
           details={"method": method, **(details or {})})


def end_session(*, reason: str = "signed_out") -> None:
    """Ends this session for good: even a copy of its cookie is refused from now on.

    The caller commits.
    """
    principal = signed_in()
    if principal is not None:
        record(principal.actor, "auth.signed_out", target=target_of(principal.user),
               details={"reason": reason})
        session_id = session.get("sid")
        if isinstance(session_id, str):
            _remember_ended(session_id)
    logout_user()
    lang = session.get("lang")
    session.clear()
    if lang:
        session["lang"] = lang


def _remember_ended(session_id: str) -> None:
    """Refuse ``session_id`` until it would have expired anyway; forget those past that time."""
    now = utcnow()
    try:
        started = float(session.get("signed_in_at", 0))
    except (TypeError, ValueError):
        started = 0.0
    absolute = timedelta(hours=current_app.config["SESSION_ABSOLUTE_HOURS"])
    # A copy of the cookie dies at the absolute limit anyway: until then, it must be refused.
    expires_at = (datetime.fromtimestamp(started, UTC) if started > 0 else now) + absolute
    db.session.execute(delete(EndedSession).where(EndedSession.expires_at < now))
    id_hash = _session_id_hash(session_id)
    if db.session.get(EndedSession, id_hash) is None:
        db.session.add(EndedSession(id_hash=id_hash, expires_at=expires_at))


def end_every_session(user: User) -> None:
    """Ends every session of ``user``, on every device (the epoch moves on)."""
    model = type(user)
    db.session.execute(
        update(model).where(model.id == user.id).values(session_epoch=model.session_epoch + 1)
    )
    db.session.refresh(user)


def target_of(user: User) -> str:
    if isinstance(user, Doctor):
        return f"doctor:{user.gln}"
    return f"staff:{user.login}"


# --- the gate ----------------------------------------------------------------------------------

SESSION_EXPIRED = _l("Votre session a expiré. Veuillez vous reconnecter.")


def login_url(next_path: str | None = None) -> str:
    base = url_for("auth.login")
    if next_path and next_path != "/":
        return f"{base}?{urlencode({'next': next_path})}"
    return base


def _expired(now: float) -> bool:
    idle = timedelta(minutes=current_app.config["SESSION_IDLE_MINUTES"]).total_seconds()
    absolute = timedelta(hours=current_app.config["SESSION_ABSOLUTE_HOURS"]).total_seconds()
    try:
        started = float(session.get("signed_in_at", 0))
        seen = float(session.get("seen_at", 0))
    except (TypeError, ValueError):
        return True
    return now - seen > idle or now - started > absolute


def _gate() -> BaseResponse | None:
    endpoint = request.endpoint
    if endpoint is None:
        return None  # no such route: 404 or 405 follows
    access = access_of(current_app, endpoint)
    if access == "token":
        return None

    principal = signed_in()
    if principal is not None:
        now = time.time()
        if _expired(now):
            end_session(reason="expired")
            db.session.commit()
            if access == "public":
                return None
            flash(str(SESSION_EXPIRED), "info")
            return redirect(login_url(request.full_path.rstrip("?")), code=303)
        session["seen_at"] = now
        g.principal = principal

    if access == "public":
        return None
    if access is None:
        abort(404)  # closed by default: a view that declares nothing is nobody's
    if principal is None:
        if request.method == "GET":
            return redirect(login_url(request.full_path.rstrip("?")), code=303)
        abort(401)
    if not isinstance(access, frozenset) or principal.role not in access:
        abort(403)
    if principal.must_change_password and endpoint not in DURING_PASSWORD_CHANGE:
        return redirect(url_for("auth.change_password"), code=303)
    return None


def init_session(app: Flask) -> None:
    login_manager.user_loader(_load)
    login_manager.init_app(app)
    # The gate below handles anonymous users; Flask-Login's own redirect is not used.
    login_manager.session_protection = None
    app.before_request(_gate)

    @app.context_processor
    def _principal() -> dict[str, Any]:
        return {"principal": signed_in()}


def requires_fresh_password_check(user: User, password: str) -> bool:
    """Re-checks ``user``'s password (for sensitive changes), with the same cost when absent."""
    if not user.password_hash:
        burn_password_check(password)
        return False
    return verify_password(user.password_hash, password)


def safe_next(target: str | None) -> str:
    """``target`` when it is a path of ours, else ``/``: never an open redirect."""
    return local_path(target)
