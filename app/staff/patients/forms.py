"""The forms of the staff's patient pages (Flask-WTF): the patient search, a consent, a new
patient with a consent,
(a revocation is ``app/staff/forms.py``'s ButtonForm).

A consent is checked by the DPI API's own rules (``app/staff/patients/consents.py`` reads the
form as the API's body): the form carries the fields, keeps what was typed, and shows each
refusal on its field (:meth:`ConsentForm.show_errors`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask_babel import lazy_gettext as _l
from wtforms import BooleanField, RadioField, StringField
from wtforms.fields.choices import SelectChoice

from app.staff.patients.messages import GIVEN_BY_LABELS
from app.web.forms import PostForm, QueryForm

#: Form values kept for showing them again (longer ones are refused anyway).
KEPT = 1000


def _kept(value: Any) -> Any:
    return value[:KEPT] if isinstance(value, str) else value


def _stripped(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def show_errors(form: Any, errors: Mapping[str, str]) -> None:
    """Each refusal on its field (one the form has no field for, above the form)."""
    for name, message in errors.items():
        if name in form._fields and name != "csrf_token":
            field = form._fields[name]
            field.errors = [*field.errors, message]
        else:
            form.form_errors.append(message)


class PatientSearchForm(QueryForm):
    """By name (and birth date), or by DPI id; checked by ``queries.search_patients``."""

    q = StringField(_l("Nom ou prénom"), filters=[_stripped])
    birth_date = StringField(_l("Date de naissance"), filters=[_stripped])
    dpi_id = StringField(_l("Identifiant DPI"), filters=[_stripped])

    def asked(self) -> tuple[str, str, str]:
        """The name words, the birth date and the DPI id, as typed (stripped)."""
        return (str(self.q.data or ""), str(self.birth_date.data or ""),
                str(self.dpi_id.data or ""))


class ConsentForm(PostForm):
    """A treating doctor designated by the patient, with or without electronic sending."""

    gln = StringField(_l("GLN du médecin"), filters=[_kept])
    # No default: a form that names neither is refused by the API's rules, as it says.
    electronic_sending = RadioField(
        _l("Envoi électronique des documents"), validate_choice=False, filters=[_kept],
        choices=[SelectChoice("yes", _l("Oui, le patient autorise l'envoi électronique")),
                 SelectChoice("no", _l("Non, pas d'envoi électronique"))],
    )
    given_by = RadioField(
        _l("Consentement donné par"), validate_choice=False, filters=[_kept],
        choices=[SelectChoice(value, label) for value, label in GIVEN_BY_LABELS.items()],
    )
    representative_name = StringField(_l("Nom du représentant"), filters=[_kept])
    minor_agreement = BooleanField(_l("Le jeune (12 à 15 ans) a signé son accord"))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        raw = self.minor_agreement.raw_data
        if raw:  # the box's value is "yes": anything else sent is not an agreement
            self.minor_agreement.data = raw[0] == "yes"

    def values(self) -> dict[str, str]:
        """The fields as text, as the API's body is built from them."""
        values = {name: str(field.data or "") for name, field in self._fields.items()
                  if name not in ("csrf_token", "minor_agreement")}
        values["minor_agreement"] = "yes" if self.minor_agreement.data else ""
        return values

    def show_errors(self, errors: Mapping[str, str]) -> None:
        """Each refusal on its field (one the form has no field for, above the form)."""
        show_errors(self, errors)


class NewPatientForm(ConsentForm):
    """A patient the DPI has not sent yet (the identity as in the DPI), and the consent."""

    dpi_id = StringField(_l("Identifiant DPI"), filters=[_kept])
    family_name = StringField(_l("Nom de famille"), filters=[_kept])
    given_name = StringField(_l("Prénom"), filters=[_kept])
    birth_date = StringField(_l("Date de naissance"), filters=[_kept])
