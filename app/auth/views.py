"""Sign-in pages for doctors (login, password, SMS code) and staff (password, TOTP), sign-out,
the forced and the voluntary password change, and staff recovery codes.

A sign-in runs in two steps. The password step, when right, does not sign anyone in: it starts
a *pending* sign-in in a fresh session (``session["pending"]``: the account, the next step, where
to go afterwards, the SMS attempt's handle, the time; 10 minutes at most). The second factor
(the SMS code, or the staff authenticator) then calls :func:`start_session`, which makes yet
another fresh session. Every failure shows the same message, whatever its cause.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import time
from typing import Any, Literal, cast
from urllib.parse import urlencode

import segno
from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import login_user, logout_user
from sqlalchemy import func, select
from werkzeug.wrappers import Response as BaseResponse

from app.audit import Actor, record
from app.auth import codes, totp
from app.auth.limits import password_step_limits, sign_in_limits
from app.auth.passwords import (
    MAX_LENGTH,
    check_new_password,
    describe,
    hash_password,
    needs_rehash,
    verify_password,
)
from app.auth.session import (
    ROLES,
    Attempt,
    User,
    account_of,
    account_user,
    accounts_for_login,
    actor_for,
    attempt_failed,
    attempt_released,
    begin_attempt,
    burn_password_check,
    current_principal,
    end_every_session,
    end_session,
    is_locked,
    may_sign_in,
    principal_for,
    public,
    requires,
    requires_fresh_password_check,
    safe_next,
    signed_in,
    start_session,
    target_of,
)
from app.auth.sms import SmsError, mask_phone
from app.auth.staff_factors import (
    issue_recovery_codes,
    totp_secret,
    use_recovery_code,
    verify_staff_totp,
)
from app.crypto import ContentIntegrityError, Sealed, key_ring
from app.extensions import db
from app.models import Doctor, RecoveryCode, StaffUser
from app.models.base import utcnow

log = logging.getLogger(__name__)

bp = Blueprint("auth", __name__, url_prefix="/auth")

Stage = Literal["code", "totp", "totp_enrol"]

#: How long a pending sign-in (right password, second factor still to come) lasts.
PENDING_LIFETIME_SECONDS = 10 * 60
#: The longest password even looked at (argon2 would take more; nobody types this much).
MAX_TYPED_PASSWORD = 4 * MAX_LENGTH
#: The HIN sign-in (app/auth/hin.py): a literal path, so that this page does not depend on it.
HIN_LOGIN_PATH = "/auth/hin/login"

SIGN_IN_FAILED = _l("Identifiant ou mot de passe incorrect, ou compte indisponible.")
ATTEMPT_EXPIRED = _l("Votre tentative de connexion a expiré. Recommencez la connexion.")
SMS_FAILED = _l("L'envoi du SMS a échoué. Réessayez dans un instant.")
CODE_WRONG = _l("Code incorrect.")


# --- the pending sign-in -------------------------------------------------------------------


def _forget_csrf_token() -> None:
    """After the session was cleared: the CSRF token Flask-WTF cached for this request (on
    ``g``) belongs to the old session, so a form rendered from here on must get a new one."""
    g.pop(current_app.config.get("WTF_CSRF_FIELD_NAME", "csrf_token"), None)


def _fresh_session() -> None:
    """Nothing from before survives (session fixation), except the chosen language."""
    lang = session.get("lang")
    logout_user()
    session.clear()
    _forget_csrf_token()
    if lang:
        session["lang"] = lang


def _begin_pending(user: User, stage: Stage, next_path: str, handle: str | None = None) -> None:
    _fresh_session()
    session["pending"] = {
        "account": account_of(user),
        "stage": stage,
        "next": next_path,
        "handle": handle,
        "at": time.time(),
    }


def _pending(stage: Stage) -> tuple[dict[str, Any], User] | None:
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


def _restart(message: Any = ATTEMPT_EXPIRED, next_path: str | None = None) -> BaseResponse:
    """Back to the first step, with a message; the pending sign-in is dropped."""
    pending = session.pop("pending", None)
    if next_path is None and isinstance(pending, dict):
        next_path = safe_next(pending.get("next"))
    flash(str(message), "error")
    target = url_for("auth.login")
    if next_path and next_path != "/":
        target += "?" + urlencode({"next": next_path})
    return redirect(target, code=303)


_STEP_ENDPOINTS: dict[str, str] = {"code": "auth.code", "totp": "auth.totp",
                                   "totp_enrol": "auth.totp_enrol"}


def _no_such_step() -> BaseResponse:
    """A step that is not the pending sign-in's: go to its step, or start again."""
    pending = session.get("pending")
    stage = pending.get("stage") if isinstance(pending, dict) else None
    if stage in _STEP_ENDPOINTS and _pending(cast(Stage, stage)) is not None:
        return redirect(url_for(_STEP_ENDPOINTS[stage]), code=303)
    return _restart()


def _finish(user: User, next_path: str, *, method: str, note: str | None = None) -> BaseResponse:
    """Every factor checked: sign in, commit, and go on."""
    start_session(user, method=method)
    _forget_csrf_token()
    if note:
        flash(note, "info")  # after start_session, which starts an empty session
    if user.must_change_password:
        session["after_password"] = next_path
        db.session.commit()
        return redirect(url_for("auth.change_password"), code=303)
    db.session.commit()
    return redirect(next_path, code=303)


def _refuse(user: User, reason: str, stage: str) -> None:
    record(actor_for(user), "auth.refused", target=target_of(user), outcome="rejected",
           details={"stage": stage, "reason": reason})


def _count_attempt(user: User, stage: str) -> Attempt | None:
    """Counts this attempt as a failure before its factor is looked at, committed at once (see
    :func:`begin_attempt`); None, audited, when sign-in is locked: nothing is then checked."""
    attempt = begin_attempt(user)
    if attempt is None:
        _refuse(user, "locked", stage)
    db.session.commit()
    return attempt


# --- step 1: login and password ------------------------------------------------------------


def _login_page(error: Any = None, login: str = "", next_path: str = "/",
                status: int = 200) -> tuple[str, int]:
    hin = HIN_LOGIN_PATH
    if next_path != "/":
        hin += "?" + urlencode({"next": next_path})
    return render_template("auth/login.html", error=error, login=login, next_path=next_path,
                           hin_url=hin), status


@bp.route("/login", methods=["GET", "POST"])
@public
@password_step_limits
def login() -> BaseResponse | tuple[str, int]:
    if request.method == "GET":
        next_path = safe_next(request.args.get("next"))
        if signed_in() is not None:
            return redirect(next_path, code=303)
        return _login_page(next_path=next_path)

    typed_login = request.form.get("login", "")
    password = request.form.get("password", "")
    next_path = safe_next(request.form.get("next"))
    shown_login = typed_login.strip()[:64]
    if not typed_login.strip() or not password:
        return _login_page(_("Saisissez votre identifiant et votre mot de passe."),
                           shown_login, next_path)
    password = password[:MAX_TYPED_PASSWORD]

    accounts = accounts_for_login(typed_login)
    if len(accounts) != 1:
        # Unknown (or, by a data error, ambiguous) login: the same argon2 work as a known one.
        burn_password_check(password)
        if accounts:
            log.warning("sign-in refused: login shared by %d accounts", len(accounts))
        record(Actor("anonymous"), "auth.failed", outcome="failure",
               details={"stage": "password", "reason": "unknown_login"})
        db.session.commit()
        return _login_page(SIGN_IN_FAILED, shown_login, next_path)

    user = accounts[0]
    refusal = None
    if not may_sign_in(user):
        refusal = "deactivated"
    elif is_locked(user):
        refusal = "locked"
    elif not user.password_hash:
        refusal = "no_password"
    if refusal is not None:
        burn_password_check(password)  # same work; the real password is never checked
        _refuse(user, refusal, "password")
        db.session.commit()
        return _login_page(SIGN_IN_FAILED, shown_login, next_path)

    attempt = _count_attempt(user, "password")
    if attempt is None:  # locked since the check above
        burn_password_check(password)
        return _login_page(SIGN_IN_FAILED, shown_login, next_path)
    assert user.password_hash is not None  # noqa: S101 - checked just above
    if not verify_password(user.password_hash, password):
        attempt_failed(attempt, stage="password")
        db.session.commit()
        return _login_page(SIGN_IN_FAILED, shown_login, next_path)
    # The right password is no failure; the second factor decides the sign-in.
    attempt_released(attempt)

    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)

    if isinstance(user, Doctor):
        if not user.mobile or not user.login:
            _refuse(user, "no_mobile", "password")
            db.session.commit()
            return _login_page(SIGN_IN_FAILED, shown_login, next_path)
        issued = codes.issue("sign_in", user.mobile, doctor_id=user.id)
        _begin_pending(user, "code", next_path, handle=issued.challenge.handle)
        db.session.commit()  # the code exists before it can reach a phone
        _send_code(user, issued)
        return redirect(url_for("auth.code"), code=303)

    stage: Stage = "totp_enrol" if user.totp_pending else "totp"
    _begin_pending(user, stage, next_path)
    db.session.commit()
    return redirect(url_for("auth.totp_enrol" if stage == "totp_enrol" else "auth.totp"),
                    code=303)


# --- step 2 for doctors: the SMS code --------------------------------------------------------


def _send_code(doctor: Doctor, issued: codes.Issued) -> bool:
    """Send the code (the attempt is committed); on failure keep the attempt open for a retry."""
    challenge = issued.challenge
    body = _("Relais : votre code de connexion est %(code)s. Il est valable %(minutes)s minutes.",
             code=issued.code, minutes=int(codes.CODE_LIFETIME.total_seconds() // 60))
    try:
        codes.send(issued, body)
    except SmsError as error:
        record(actor_for(doctor), "auth.sms_failed", target=target_of(doctor), outcome="failure",
               details={"reason": error.reason, "phone": mask_phone(challenge.phone)})
        db.session.commit()
        _note_sms_failed(True)
        flash(str(SMS_FAILED), "error")
        return False
    _note_sms_failed(False)
    return True


def _note_sms_failed(failed: bool) -> None:
    """Whether the last SMS of the pending sign-in failed: the code page must not then say
    that a code was sent."""
    pending = session.get("pending")
    if isinstance(pending, dict) and bool(pending.get("sms_failed")) != failed:
        session["pending"] = {**pending, "sms_failed": failed}


def _code_page(challenge: Any, error: Any = None, restart: bool = False,
               status: int = 200) -> tuple[str, int]:
    wait = int(codes.wait_before_resend(challenge).total_seconds() + 0.999)
    pending = session.get("pending")
    sms_failed = isinstance(pending, dict) and bool(pending.get("sms_failed"))
    return render_template(
        "auth/code.html", error=error, restart=restart, phone=mask_phone(challenge.phone),
        wait=wait, can_resend=codes.resends_left(challenge) > 0 and challenge.used_at is None,
        sms_failed=sms_failed,
    ), status


@bp.route("/code", methods=["GET", "POST"])
@public
@sign_in_limits
def code() -> BaseResponse | tuple[str, int]:
    found = _pending("code")
    if found is None:
        return _no_such_step()
    pending, user = found
    doctor = cast(Doctor, user)
    challenge = codes.find(pending.get("handle"), "sign_in")
    if challenge is None or challenge.doctor_id != doctor.id:
        return _restart()
    if request.method == "GET":
        return _code_page(challenge)

    # The code's own try first, then the account's place before the lockout: both counted
    # (and committed) before the code is compared, so that neither can be outrun.
    outcome = codes.take_try(challenge)
    attempt = None
    if outcome is None:
        attempt = _count_attempt(doctor, "code")
        if attempt is None:
            return _restart(SIGN_IN_FAILED)
        outcome = codes.compare(challenge, request.form.get("code", "")[:32])
    if outcome is codes.Check.OK:
        return _finish(doctor, safe_next(pending.get("next")), method="sms")
    if outcome is codes.Check.WRONG and attempt is not None:
        attempt_failed(attempt, stage="code")
        db.session.commit()
        if attempt.locked_at is not None:
            return _restart(SIGN_IN_FAILED)
        return _code_page(challenge, CODE_WRONG)
    if attempt is not None:  # the right code, spent meanwhile by another request: no failure
        attempt_released(attempt)
    db.session.commit()
    if outcome is codes.Check.EXPIRED:
        return _code_page(challenge, _("Ce code a expiré. Demandez un nouveau code, ou "
                                       "recommencez la connexion."))
    if outcome is codes.Check.USED:
        return _restart(_("Ce code a déjà été utilisé. Recommencez la connexion."))
    return _restart(_("Trop de codes incorrects. Recommencez la connexion."))


@bp.post("/code/resend")
@public
@sign_in_limits
def resend_code() -> BaseResponse:
    found = _pending("code")
    if found is None:
        return _no_such_step()
    pending, user = found
    doctor = cast(Doctor, user)
    challenge = codes.find(pending.get("handle"), "sign_in")
    if challenge is None or challenge.doctor_id != doctor.id:
        return _restart()
    if is_locked(doctor):
        _refuse(doctor, "locked", "code")
        db.session.commit()
        return _restart(SIGN_IN_FAILED)
    try:
        issued = codes.resend(challenge)
    except codes.ResendRefused as refused:
        db.session.rollback()
        if refused.reason == "too_early":
            seconds = int((refused.wait.total_seconds() if refused.wait else 30) + 0.999)
            flash(_("Vous pourrez demander un nouveau code dans %(seconds)s secondes.",
                    seconds=seconds), "info")
            return redirect(url_for("auth.code"), code=303)
        if refused.reason == "too_many_sends":
            return _restart(_("Vous avez demandé trop de codes. Recommencez la connexion."))
        return _restart()
    record(actor_for(doctor), "auth.code_resent", target=target_of(doctor),
           details={"phone": mask_phone(challenge.phone)})
    db.session.commit()
    if _send_code(doctor, issued):
        flash(_("Un nouveau code vous a été envoyé."), "info")
    return redirect(url_for("auth.code"), code=303)


# --- step 2 for staff: the authenticator app ---------------------------------------------


@bp.route("/totp", methods=["GET", "POST"], endpoint="totp")
@public
@sign_in_limits
def totp_check() -> BaseResponse | tuple[str, int]:
    found = _pending("totp")
    if found is None:
        return _no_such_step()
    pending, user = found
    staff = cast(StaffUser, user)
    if staff.totp_pending:  # the desk reset the authenticator meanwhile
        return _restart()
    if request.method == "GET":
        return render_template("auth/totp.html", error=None), 200

    attempt = _count_attempt(staff, "totp")
    if attempt is None:
        return _restart(SIGN_IN_FAILED)
    typed = request.form.get("code", "")[:64]
    actor = actor_for(staff)
    now = utcnow()
    if totp.normalize_recovery_code(typed) is not None:
        if use_recovery_code(staff, typed, now, actor):
            left = db.session.scalar(
                select(func.count()).select_from(RecoveryCode).where(
                    RecoveryCode.staff_user_id == staff.id, RecoveryCode.used_at.is_(None))
            ) or 0
            note = _("Vous avez utilisé un code de secours ; il vous en reste %(count)s.",
                     count=left)
            return _finish(staff, safe_next(pending.get("next")), method="recovery_code",
                           note=note)
    elif verify_staff_totp(staff, typed, now, actor):
        return _finish(staff, safe_next(pending.get("next")), method="totp")
    attempt_failed(attempt, stage="totp")
    db.session.commit()
    if attempt.locked_at is not None:
        return _restart(SIGN_IN_FAILED)
    return render_template("auth/totp.html", error=CODE_WRONG), 200


def _qr_svg(uri: str) -> str:
    """The provisioning URI as an inline SVG (drawn here: no external service, no script)."""
    qr = segno.make(uri, error="m")
    svg: str = qr.svg_inline(scale=5, border=4, dark="#000", light="#fff", svgclass="qr-code",
                             title=_("Code QR à scanner avec votre application"))
    return svg


def _grouped(secret: str) -> str:
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


@bp.route("/totp/enrol", methods=["GET", "POST"])
@public
@sign_in_limits
def totp_enrol() -> BaseResponse | tuple[str, int]:
    found = _pending("totp_enrol")
    if found is None:
        return _no_such_step()
    pending, user = found
    staff = cast(StaffUser, user)
    if not staff.totp_pending:
        return _restart()
    error = None
    if request.method == "POST":
        attempt = _count_attempt(staff, "totp_enrol")
        if attempt is None:
            return _restart(SIGN_IN_FAILED)
        actor = actor_for(staff)
        if verify_staff_totp(staff, request.form.get("code", "")[:64], utcnow(), actor):
            recovery = issue_recovery_codes(staff, actor)
            next_path = safe_next(pending.get("next"))
            start_session(staff, method="totp_enrolment")
            _forget_csrf_token()
            _keep_recovery_codes(staff, recovery, next_path)
            db.session.commit()
            return redirect(url_for("auth.recovery_codes"), code=303)
        attempt_failed(attempt, stage="totp_enrol")
        db.session.commit()
        if attempt.locked_at is not None:
            return _restart(SIGN_IN_FAILED)
        error = CODE_WRONG
    secret = totp_secret(staff)
    return render_template(
        "auth/totp_enrol.html", error=error,
        qr_svg=_qr_svg(totp.provisioning_uri(secret, staff.login)),
        secret=_grouped(secret),
    ), 200


def _password_again(user: User, password: str) -> bool:
    """The signed-in user's password, asked again before a sensitive change. Counted like a
    sign-in attempt: a wrong one towards the lockout, and a locked account's is not checked."""
    attempt = _count_attempt(user, "reauth")
    if attempt is None:
        burn_password_check(password)  # the same work as a check
        return False
    if requires_fresh_password_check(user, password):
        attempt_released(attempt)
        return True
    attempt_failed(attempt, stage="reauth")
    db.session.commit()
    return False


# --- recovery codes: shown once ------------------------------------------------------------
#
# Flask's session is a signed cookie, readable by whoever holds it. The fresh recovery codes
# travel in it sealed (AES-GCM under DOCUMENT_KEYS, bound to the account) only until the page
# that shows them is rendered, which removes them.

_RECOVERY_KEY = "recovery_codes"


def _recovery_aad(user: StaffUser) -> bytes:
    return f"relais-recovery-codes:{user.id}:{user.login}".encode()


def _keep_recovery_codes(user: StaffUser, recovery: list[str], next_path: str) -> None:
    payload = json.dumps({"codes": recovery, "next": next_path}).encode()
    sealed = key_ring().seal(payload, _recovery_aad(user))
    session[_RECOVERY_KEY] = {
        "key_id": sealed.key_id,
        "nonce": base64.b64encode(sealed.nonce).decode(),
        "ciphertext": base64.b64encode(sealed.ciphertext).decode(),
    }


def _take_recovery_codes(user: StaffUser) -> tuple[list[str], str] | None:
    """The codes waiting to be shown (removed from the session), if still the current ones."""
    kept = session.pop(_RECOVERY_KEY, None)
    if not isinstance(kept, dict):
        return None
    try:
        sealed = Sealed(str(kept["key_id"]), base64.b64decode(kept["nonce"]),
                        base64.b64decode(kept["ciphertext"]))
        data = json.loads(key_ring().unseal(sealed, _recovery_aad(user)))
        recovery = [str(c) for c in data["codes"]]
        next_path = safe_next(data.get("next"))
    except (KeyError, TypeError, ValueError, binascii.Error, ContentIntegrityError):
        return None
    unused = set(db.session.scalars(
        select(RecoveryCode.code_hash).where(RecoveryCode.staff_user_id == user.id,
                                             RecoveryCode.used_at.is_(None))
    ))
    if not recovery or any(totp.recovery_code_hash(c) not in unused for c in recovery):
        return None  # replaced or reset meanwhile: these codes no longer work
    return recovery, next_path


@bp.get("/recovery-codes")
@requires("staff", "desk")
def recovery_codes() -> tuple[str, int]:
    staff = current_principal().staff
    taken = _take_recovery_codes(staff)
    if taken is None:
        return render_template("auth/recovery_codes.html", codes=None, error=None,
                               next_path="/"), 200
    recovery, next_path = taken
    return render_template("auth/recovery_codes.html", codes=recovery, error=None,
                           next_path=next_path), 200


@bp.post("/recovery-codes")
@requires("staff", "desk")
@sign_in_limits
def regenerate_recovery_codes() -> BaseResponse | tuple[str, int]:
    """New recovery codes (the old ones stop working), after the password is asked again."""
    staff = current_principal().staff
    password = request.form.get("password", "")[:MAX_TYPED_PASSWORD]
    if not password or not _password_again(staff, password):
        return render_template("auth/recovery_codes.html", codes=None, next_path="/",
                               error=_("Mot de passe incorrect.")), 200
    recovery = issue_recovery_codes(staff, actor_for(staff))
    _keep_recovery_codes(staff, recovery, "/")
    db.session.commit()
    return redirect(url_for("auth.recovery_codes"), code=303)


# --- password change -----------------------------------------------------------------------


def _personal_inputs(user: User) -> list[str]:
    if isinstance(user, Doctor):
        values = [user.login, user.given_name, user.family_name, user.email, user.gln]
    else:
        values = [user.login]
    return [v for v in values if v]


@bp.route("/password", methods=["GET", "POST"])
@requires(*ROLES)
@sign_in_limits
def change_password() -> BaseResponse | tuple[str, int]:
    """The forced change of a temporary password, and the voluntary change.

    Forced (``must_change_password``, right after sign-in): the current password is not asked
    again. This session proved it minutes ago together with the second factor, and it can do
    nothing but come here; asking for a 16-character temporary password twice only invites
    errors. A voluntary change asks for it: a session left open must not let a passer-by take
    the account over.
    """
    principal = current_principal()
    user = principal.user
    if not user.password_hash:
        # A HIN doctor has no Relais password: HIN manages it. (Letting the form run would
        # count every attempt as a failed sign-in, up to a lockout.)
        abort(404)
    forced = principal.must_change_password
    if request.method == "GET":
        return render_template("auth/password.html", forced=forced, errors=[]), 200

    current = request.form.get("current_password", "")[:MAX_TYPED_PASSWORD]
    new = request.form.get("new_password", "")
    confirm = request.form.get("confirm_password", "")
    errors: list[str] = []
    if not forced and not _password_again(user, current):
        errors.append(_("Le mot de passe actuel est incorrect."))
        return render_template("auth/password.html", forced=forced, errors=errors), 200
    if new != confirm:
        errors.append(_("Les deux nouveaux mots de passe ne sont pas identiques."))
    else:
        locale = str(get_locale() or "fr")
        errors.extend(describe(reason, locale)
                      for reason in check_new_password(new, user_inputs=_personal_inputs(user)))
        if not errors and user.password_hash and verify_password(user.password_hash, new):
            errors.append(_("Choisissez un mot de passe différent de l'actuel."))
    if errors:
        return render_template("auth/password.html", forced=forced, errors=errors), 200

    user.password_hash = hash_password(new)
    user.must_change_password = False
    db.session.flush()
    # Every other session of this account ends; this one carries on under the new epoch.
    end_every_session(user)
    login_user(principal_for(user), fresh=True)
    record(actor_for(user), "auth.password_changed", target=target_of(user),
           details={"forced": forced})
    db.session.commit()
    flash(_("Votre mot de passe a été changé."), "info")
    if _RECOVERY_KEY in session:
        return redirect(url_for("auth.recovery_codes"), code=303)
    return redirect(safe_next(session.pop("after_password", None)), code=303)


# --- sign-out ------------------------------------------------------------------------------


@bp.post("/logout")
@requires(*ROLES)
def logout() -> BaseResponse:
    end_session()
    _forget_csrf_token()
    db.session.commit()
    flash(_("Vous êtes déconnecté."), "info")
    return redirect(url_for("web.index"), code=303)


@bp.post("/logout-everywhere")
@requires(*ROLES)
def logout_everywhere() -> BaseResponse:
    """Ends this session and every other one of this account, on every device."""
    principal = current_principal()
    user = principal.user
    end_every_session(user)
    end_session(reason="signed_out_everywhere")
    _forget_csrf_token()
    db.session.commit()
    flash(_("Vous êtes déconnecté de tous vos appareils."), "info")
    return redirect(url_for("web.index"), code=303)
