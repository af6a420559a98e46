"""``/auth/password``: the forced change of a temporary password, and the voluntary change."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, session, url_for
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_login import login_user
from werkzeug.wrappers import Response as BaseResponse

from app.audit import record
from app.auth.forms import CURRENT_PASSWORD_WRONG, PasswordChangeForm
from app.auth.limits import sign_in_limits
from app.auth.passwords import check_new_password, describe, hash_password, verify_password
from app.auth.session import (
    ROLES,
    User,
    actor_for,
    current_principal,
    end_every_session,
    principal_for,
    requires,
    safe_next,
    target_of,
)
from app.auth.sign_in import SignInRefused, confirm_password
from app.auth.views.blueprint import bp
from app.auth.views.recovery_codes import RECOVERY_KEY
from app.extensions import db
from app.models import Doctor


def _personal_inputs(user: User) -> list[str]:
    if isinstance(user, Doctor):
        values = [user.login, user.given_name, user.family_name, user.email, user.gln]
    else:
        values = [user.login]
    return [v for v in values if v]


def _current_password_confirmed(user: User, form: PasswordChangeForm) -> bool:
    """The current password, asked again (counted like a sign-in attempt)."""
    if form.current_password.errors:  # too long: refused without a check
        return False
    try:
        confirm_password(user, form.current_password.data or "")
    except SignInRefused:
        return False
    return True


def _page(form: PasswordChangeForm, forced: bool, errors: list[str]) -> tuple[str, int]:
    return render_template("auth/password.html", form=form, forced=forced, errors=errors), 200


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
    form = PasswordChangeForm()
    if request.method == "GET":
        return _page(form, forced, [])

    form.validate()
    if not forced and not _current_password_confirmed(user, form):
        return _page(form, forced, [str(CURRENT_PASSWORD_WRONG)])
    new = form.new_password.data or ""
    errors: list[str] = [str(message) for message in form.confirm_password.errors[:1]]
    if not errors:
        locale = str(get_locale() or "fr")
        errors.extend(describe(reason, locale)
                      for reason in check_new_password(new, user_inputs=_personal_inputs(user)))
        if not errors and user.password_hash and verify_password(user.password_hash, new):
            errors.append(_("Choisissez un mot de passe différent de l'actuel."))
    if errors:
        return _page(form, forced, errors)

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
    if RECOVERY_KEY in session:
        return redirect(url_for("auth.recovery_codes"), code=303)
    return redirect(safe_next(session.pop("after_password", None)), code=303)
