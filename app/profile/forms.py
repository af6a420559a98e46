"""Mon profil's form (WTForms), drawn from ``PREFERENCES``: one field per preference, and the
email address.

The fields come from the declarations in ``app/profile/preferences.py`` and each is checked by
its own preference's ``parse`` (the one rule of what it accepts), so the form, the check and
the save cannot disagree. A field's kind gives its widget: radios for a few choices, a select
for many, checkboxes for several, a number otherwise.
"""

from __future__ import annotations

from typing import Any

from flask_babel import lazy_gettext as _l
from wtforms import EmailField, Field, RadioField, SelectChoice, SelectField, StringField
from wtforms.validators import ValidationError
from wtforms.widgets import NumberInput

from app.email_address import MAX_LENGTH, is_email_address
from app.profile.preferences import PREFERENCES, Preference
from app.web.forms import MultiCheckboxField, PostForm, trimmed

#: Up to this many choices are radios; more are a select.
RADIOS_UP_TO = 3


class _Checked:
    """A field's check: its preference's own ``parse``; the typed value is kept on the form."""

    def __init__(self, preference: Preference) -> None:
        self.preference = preference

    def __call__(self, form: ProfileBase, field: Field) -> None:
        try:
            form.parsed[self.preference.name] = self.preference.parse(
                {self.preference.name: list(field.raw_data or [])})
        except ValueError as error:
            raise ValidationError(str(error.args[0])) from None


def _valid_email(form: ProfileBase, field: Field) -> None:
    if field.data and not is_email_address(field.data):
        raise ValidationError(_l("Indiquez une adresse e-mail valable."))


def _field(preference: Preference) -> Field:
    choices = [SelectChoice(code, label) for code, label in preference.choices()]
    common: dict[str, Any] = {"id": f"field-{preference.name}",
                              "validators": [_Checked(preference)]}
    if preference.kind == "multi":
        return MultiCheckboxField(preference.label, choices=choices, validate_choice=False,
                                  **common)
    if choices and len(choices) <= RADIOS_UP_TO:
        return RadioField(preference.label, choices=choices, validate_choice=False, **common)
    if choices:
        return SelectField(preference.label, choices=choices, validate_choice=False, **common)
    return StringField(preference.label, widget=NumberInput(min=preference.minimum,
                                                            max=preference.maximum),
                       render_kw={"inputmode": "numeric"}, **common)


class ProfileBase(PostForm):
    email = EmailField(_l("Adresse e-mail"), id="field-email", filters=[trimmed(MAX_LENGTH + 1)],
                       validators=[_valid_email],
                       render_kw={"autocomplete": "email", "maxlength": MAX_LENGTH})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Each preference's value as its ``parse`` typed it, once the form validated.
        self.parsed: dict[str, Any] = {}


#: Mon profil's form: the email address, then one field per preference, in PREFERENCES' order.
ProfileForm: type[ProfileBase] = type(
    "ProfileForm", (ProfileBase,), {p.name: _field(p) for p in PREFERENCES})
