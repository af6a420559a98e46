"""The sign-in forms: each page's fields, their limits and their messages.

Built on :class:`app.web.forms.PostForm` (Flask-WTF: the CSRF token, checked by the global
``CSRFProtect`` before the view runs). A field is only read, never trusted for whom a limit
counts (:mod:`app.auth.limits` keys the second steps from the session). Too long input is
refused here, before any argon2 or code comparison is spent on it; the messages of a refused
sign-in stay the one generic message (:data:`SIGN_IN_FAILED`), whatever the cause. An extra
field that none of these forms declares is ignored.
"""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, EqualTo, InputRequired, Length
from wtforms.widgets import HiddenInput

from app.auth.passwords import MAX_LENGTH
from app.web.forms import PostForm

#: The longest password even looked at (argon2 would take more; nobody types this much).
MAX_TYPED_PASSWORD = 4 * MAX_LENGTH
#: No login is longer (the column holds 64 characters).
MAX_LOGIN = 64
#: Longer than any SMS code typed with spaces.
MAX_SMS_CODE = 32
#: Longer than any authenticator code or recovery code typed with spaces or dashes.
MAX_STAFF_CODE = 64

SIGN_IN_FAILED = _l("Identifiant ou mot de passe incorrect, ou compte indisponible.")
ENTER_BOTH = _l("Saisissez votre identifiant et votre mot de passe.")
CODE_WRONG = _l("Code incorrect.")
PASSWORD_WRONG = _l("Mot de passe incorrect.")
CURRENT_PASSWORD_WRONG = _l("Le mot de passe actuel est incorrect.")
PASSWORDS_DIFFER = _l("Les deux nouveaux mots de passe ne sont pas identiques.")


class LoginForm(PostForm):
    """The first step: login and password, and where to go afterwards."""

    login = StringField(_l("Identifiant"), validators=[
        DataRequired(message=ENTER_BOTH), Length(max=MAX_LOGIN, message=SIGN_IN_FAILED)])
    # InputRequired, not DataRequired: a password of spaces is a password like any other.
    password = PasswordField(_l("Mot de passe"), validators=[
        InputRequired(message=ENTER_BOTH),
        Length(max=MAX_TYPED_PASSWORD, message=SIGN_IN_FAILED)])
    #: Drawn by the template itself (``name`` before ``value``, as the tests and the bench read it).
    next = StringField(widget=HiddenInput())


class SmsCodeForm(PostForm):
    """The doctor's second step: the code received by SMS. An empty code is a wrong one."""

    code = StringField(_l("Code reçu par SMS"), validators=[
        Length(max=MAX_SMS_CODE, message=CODE_WRONG)])


class ResendForm(PostForm):
    """A new SMS code: nothing but the CSRF token."""


class StaffCodeForm(PostForm):
    """The staff's second step: the authenticator's code, or one recovery code."""

    code = StringField(_l("Code"), validators=[Length(max=MAX_STAFF_CODE, message=CODE_WRONG)])


class EnrolmentForm(PostForm):
    """The first code of a newly set-up authenticator."""

    code = StringField(_l("Code de l'application"), validators=[
        Length(max=MAX_STAFF_CODE, message=CODE_WRONG)])


class RecoveryCodesForm(PostForm):
    """New recovery codes, after the password is asked again."""

    password = PasswordField(_l("Mot de passe actuel"), validators=[
        InputRequired(message=PASSWORD_WRONG),
        Length(max=MAX_TYPED_PASSWORD, message=PASSWORD_WRONG)])


class PasswordChangeForm(PostForm):
    """A new password, twice; the current one too, unless the change is forced. The strength
    rules are :func:`app.auth.passwords.check_new_password`'s, checked by the view."""

    current_password = PasswordField(_l("Mot de passe actuel"), validators=[
        Length(max=MAX_TYPED_PASSWORD, message=CURRENT_PASSWORD_WRONG)])
    new_password = PasswordField(_l("Nouveau mot de passe"))
    confirm_password = PasswordField(_l("Confirmer le nouveau mot de passe"), validators=[
        EqualTo("new_password", message=PASSWORDS_DIFFER)])
