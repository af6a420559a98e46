"""``/auth/login``: the first step, login and password, for doctors and staff alike.

Right, it starts the pending sign-in at its second step: a code by SMS for a doctor, the
authenticator for staff (or its set-up, the first time). Wrong for whatever reason, the page
says one thing: :data:`app.auth.forms.SIGN_IN_FAILED`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from flask import redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from app.auth import codes
from app.auth.forms import SIGN_IN_FAILED, LoginForm
from app.auth.limits import password_step_limits
from app.auth.session import public, safe_next, signed_in
from app.auth.sign_in import SignInRefused, check_password
from app.auth.views import pending
from app.auth.views.blueprint import bp
from app.auth.views.sms_code import send_code
from app.extensions import db
from app.models import Doctor
from app.web.forms import first_errors

#: The HIN sign-in (app/auth/hin.py): a literal path, so that this page does not depend on it.
HIN_LOGIN_PATH = "/auth/hin/login"


def _login_page(form: LoginForm, error: Any = None, next_path: str = "/",
                status: int = 200) -> tuple[str, int]:
    hin = HIN_LOGIN_PATH
    if next_path != "/":
        hin += "?" + urlencode({"next": next_path})
    return render_template("auth/login.html", form=form, error=error, next_path=next_path,
                           hin_url=hin), status


@bp.route("/login", methods=["GET", "POST"])
@public
@password_step_limits
def login() -> BaseResponse | tuple[str, int]:
    form = LoginForm()
    if request.method == "GET":
        next_path = safe_next(request.args.get("next"))
        if signed_in() is not None:
            return redirect(next_path, code=303)
        return _login_page(form, next_path=next_path)

    next_path = safe_next(form.next.data)
    typed_login = form.login.data or ""
    valid = form.validate()
    form.login.data = typed_login.strip()[:64]  # shown again as typed, never a huge echo
    if not valid:
        errors = first_errors(form)
        return _login_page(form, errors.get("login") or errors.get("password")
                           or SIGN_IN_FAILED, next_path)

    try:
        user = check_password(typed_login, form.password.data or "")
    except SignInRefused:
        return _login_page(form, SIGN_IN_FAILED, next_path)

    if isinstance(user, Doctor):
        assert user.mobile is not None  # noqa: S101 - check_password refused her otherwise
        issued = codes.issue("sign_in", user.mobile, doctor_id=user.id)
        pending.begin(user, "code", next_path, handle=issued.challenge.handle)
        db.session.commit()  # the code exists before it can reach a phone
        send_code(user, issued)
        return redirect(url_for("auth.code"), code=303)

    stage: pending.Stage = "totp_enrol" if user.totp_pending else "totp"
    pending.begin(user, stage, next_path)
    db.session.commit()
    return redirect(url_for("auth.totp_enrol" if stage == "totp_enrol" else "auth.totp"),
                    code=303)
