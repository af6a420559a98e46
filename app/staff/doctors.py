"""Recipient lookup for hospital staff (/staff/doctors): the same doctors as GET /api/v1/doctors.

The search is :func:`app.dispatch.directory.find_doctors`, the API's own, and each result is
shown from the API's representation of a doctor (:func:`doctor_out`): staff see what the DPI
sees. Opened from a patient's page (``?for=<dpi id>``), each result links back to that
patient's consent form with the GLN filled in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, render_template, request
from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from wtforms import SelectField, StringField
from wtforms.fields.choices import SelectChoice

from app.auth.session import requires
from app.dispatch import directory
from app.dispatch.representations import doctor_out
from app.dispatch.validation import PATIENT_ID_MAX, is_valid_id
from app.extensions import db
from app.labels import SPECIALTIES, specialty_label
from app.models import Patient
from app.web.forms import QueryForm

bp = Blueprint("staff_doctors", __name__, url_prefix="/staff/doctors")

#: Results shown; one more is fetched to know that the search should be refined.
SHOWN = 50

FIELD_ERRORS = {
    "too_long": _l("%(size)s caractères au plus."),
    "control": _l("Sans caractères de contrôle (retours à la ligne, tabulations)."),
    "specialty": _l("Choisissez une spécialité de la liste."),
}


def _stripped(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


class DoctorLookupForm(QueryForm):
    """Name or GLN, specialty, locality: checked by :func:`lookup` as the API checks them."""

    q = StringField(_l("Nom ou GLN"), filters=[_stripped],
                    render_kw={"type": "search", "maxlength": directory.MAX_QUERY,
                               "autocomplete": "off"})
    specialty = SelectField(_l("Spécialité"), validate_choice=False, filters=[_stripped])
    locality = StringField(_l("Localité"), filters=[_stripped],
                           render_kw={"type": "search", "maxlength": directory.MAX_LOCALITY,
                                      "autocomplete": "off"})

    def __init__(self) -> None:
        super().__init__()
        specialties = sorted(((code, specialty_label(code)) for code in SPECIALTIES),
                             key=lambda item: item[1].casefold())
        self.specialty.choices = [SelectChoice("", _l("Toutes les spécialités")),
                                  *(SelectChoice(code, label) for code, label in specialties)]

    def asked(self) -> tuple[str, str, str]:
        return (str(self.q.data or ""), str(self.specialty.data or ""),
                str(self.locality.data or ""))

    def show(self, errors: dict[str, str]) -> None:
        for name, message in errors.items():
            self[name].errors = [message]


@dataclass
class Lookup:
    """What was asked, what is wrong with it, and what was found."""

    q: str = ""
    specialty: str = ""
    locality: str = ""
    errors: dict[str, str] = field(default_factory=dict)
    doctors: list[dict[str, Any]] = field(default_factory=list)
    more: bool = False

    @property
    def asked(self) -> bool:
        return bool(self.q or self.specialty or self.locality)


def _field_error(message: str, size: int) -> str:
    if message.startswith("must be at most"):
        return str(FIELD_ERRORS["too_long"]) % {"size": size}
    return str(FIELD_ERRORS["control"])


def lookup(q: str, specialty: str, locality: str) -> Lookup:
    """Check the three fields as the API checks its own, then search (nothing when invalid)."""
    found = Lookup(q=q, specialty=specialty, locality=locality)
    sizes = {"q": directory.MAX_QUERY, "specialty": directory.MAX_SPECIALTY,
             "locality": directory.MAX_LOCALITY}
    for error in directory.search_errors(*((name, value, sizes[name]) for name, value in
                                           (("q", q), ("specialty", specialty),
                                            ("locality", locality)))):
        found.errors[error["field"]] = _field_error(error["message"], sizes[error["field"]])
    if specialty and "specialty" not in found.errors and specialty not in SPECIALTIES:
        found.errors["specialty"] = str(FIELD_ERRORS["specialty"])
    if found.errors or not found.asked:
        return found
    doctors = directory.find_doctors(q, specialty, locality or None, limit=SHOWN + 1)
    found.doctors = [doctor_out(d) for d in doctors[:SHOWN]]
    found.more = len(doctors) > SHOWN
    return found


def patient_for(raw: str | None) -> Patient | None:
    """The patient named by ``?for=``, when it is a known DPI id."""
    if not raw or not is_valid_id(raw, PATIENT_ID_MAX):
        return None
    patient: Patient | None = db.session.scalar(select(Patient).where(Patient.dpi_id == raw))
    return patient


@bp.get("")
@requires("staff", "desk")
def index() -> tuple[str, int]:
    form = DoctorLookupForm()
    found = lookup(*form.asked())
    form.show(found.errors)
    patient = patient_for(request.args.get("for"))
    return render_template(
        "staff/doctors/index.html", form=form, found=found, patient=patient,
        specialty_label=specialty_label,
    ), 422 if found.errors else 200
