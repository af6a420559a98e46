"""The desk's forms (Flask-WTF): the doctor search, enrolment, the code read from the phone, a
new mobile, and the account actions (reset, unlock, deactivate, reactivate).

A field is checked by the very function of ``app/staff/enrolment.py`` that the services use
(:func:`checked_by`): the form keeps the normalised value and shows the service's refusal in the
desk's words (``ERRORS``). What a request may still refuse after the form (a GLN enrolled
meanwhile, the separation of duties) is said on the field by the view (:func:`refuse`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask_babel import lazy_gettext as _l
from wtforms import Field, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import ValidationError

from app.dispatch.directory import MAX_QUERY
from app.staff.desk.common import ERRORS, ID_DOCUMENT_LABELS
from app.staff.enrolment import (
    INVALID_ID_LAST4,
    EnrolmentError,
    check_email,
    check_gln,
    check_id_document,
    check_name,
    normalise_mobile,
)
from app.web.forms import PostForm, QueryForm

#: Longest value kept from any field of the desk (longer ones are refused anyway).
KEPT = 400
#: Longest code read (a code is 6 digits; anything longer is simply wrong).
MAX_CODE = 32


def _kept(size: int) -> Callable[[Any], Any]:
    def cut(value: Any) -> Any:
        return value[:size] if isinstance(value, str) else value
    return cut


def _stripped(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def checked_by(check: Callable[[str], str]) -> Callable[[CheckedForm, Field], None]:
    """A validator running a check of ``app/staff/enrolment.py``: the form keeps the value it
    returns (normalised), or the field shows the desk's message for the code it refuses with."""
    def validate(form: CheckedForm, field: Field) -> None:
        try:
            form.checked[field.name] = check(field.data or "")
        except EnrolmentError as error:
            raise ValidationError(str(ERRORS[error.code])) from None
    return validate


def refuse(field: Field, message: str) -> None:
    """Show a refusal that came after the form was valid on ``field``."""
    field.errors = [*field.errors, message]


class CheckedForm(PostForm):
    """A form whose fields are checked by the services: ``checked`` holds their normalised
    values once :meth:`validate` passed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.checked: dict[str, str] = {}


class DoctorSearchForm(QueryForm):
    """``/staff/desk?q=``: a name, GLN or login; cut to its longest, never refused."""

    q = StringField(_l("Nom, GLN ou identifiant"), filters=[_stripped, _kept(MAX_QUERY)])

    @property
    def query(self) -> str:
        return str(self.q.data or "")


class EnrolForm(CheckedForm):
    """Enrolment, step 1: the doctor, and the identity document seen at the desk."""

    gln = StringField(_l("GLN"), filters=[_kept(KEPT)], validators=[checked_by(check_gln)])
    family_name = StringField(_l("Nom de famille"), filters=[_kept(KEPT)],
                              validators=[checked_by(check_name)])
    given_name = StringField(_l("Prénom"), filters=[_kept(KEPT)],
                             validators=[checked_by(check_name)])
    email = StringField(_l("Adresse e-mail"), filters=[_kept(KEPT)],
                        validators=[checked_by(check_email)])
    mobile = StringField(_l("Téléphone mobile"), filters=[_kept(KEPT)],
                         validators=[checked_by(normalise_mobile)])
    # Checked with id_last4 in validate() (the list of ID_DOCUMENTS, by the service).
    id_document = SelectField(
        _l("Type de pièce"), validate_choice=False, filters=[_kept(KEPT)],
        choices=[SelectChoice("", _l("— Choisir —")),
                 *(SelectChoice(kind, label) for kind, label in ID_DOCUMENT_LABELS.items())],
    )
    id_last4 = StringField(_l("4 derniers caractères du numéro de la pièce"),
                           filters=[_kept(KEPT)])

    def validate(self, extra_validators: Any = None) -> bool:
        valid = bool(super().validate(extra_validators))
        try:
            document = check_id_document(self.id_document.data or "", self.id_last4.data)
        except EnrolmentError as error:
            field = self.id_last4 if error.code == INVALID_ID_LAST4 else self.id_document
            refuse(field, str(ERRORS[error.code]))
            return False
        self.checked["id_document"] = document.kind
        self.checked["id_last4"] = document.last4 or ""
        return valid


class CodeForm(PostForm):
    """The code the doctor reads from the phone (enrolment and mobile change, step 2)."""

    code = StringField(_l("Code reçu par SMS"), filters=[_stripped, _kept(MAX_CODE)])


class MobileForm(CheckedForm):
    """A doctor's new mobile (step 1 of the change): a code goes to it."""

    mobile = StringField(_l("Nouveau numéro de mobile"), filters=[_kept(KEPT)],
                         validators=[checked_by(normalise_mobile)])
