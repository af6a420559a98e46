"""The forms of Mes documents and Mes patients (WTForms): the filter bar, the letters' actions.

A filter that does not parse is a bad request (400), never a silently ignored filter: the views
answer 400 when a filter form does not validate. Field names are the query string's (``q``,
``from``, ``to``...), so bookmarked lists keep working.
"""

from __future__ import annotations

from typing import Any

from flask_babel import format_date
from flask_babel import lazy_gettext as _l
from wtforms import (
    HiddenField,
    RadioField,
    SearchField,
    SelectChoice,
    SelectField,
    SelectMultipleField,
)

from app.inbox.patient_queries import SEARCH_MAX
from app.web.forms import DayField, PostForm, QueryForm, RowIdField, trimmed
from app.web.listing import BIGINT_ID_MAX, row_id

#: The longest search and the longest type or service a filter may name.
SEARCH_LONGEST = 200
CODE_LONGEST = 64


class DocumentFilters(QueryForm):
    """Mes documents' filter bar. ``view`` defaults to the doctor's preference (Mon profil)."""

    view = RadioField(_l("Afficher"), id="filter-view",
                      choices=[SelectChoice("all", _l("Tous")),
                               SelectChoice("unread", _l("Non lus"))])
    q = SearchField(_l("Rechercher (patient ou titre)"), id="filter-q",
                    filters=[trimmed(SEARCH_LONGEST)], render_kw={"maxlength": SEARCH_LONGEST})
    patient = RowIdField(_l("Patient"), id="filter-patient")
    type = SelectField(_l("Type"), id="filter-type", validate_choice=False,
                       filters=[trimmed(CODE_LONGEST)])
    service = SelectField(_l("Service"), id="filter-service", validate_choice=False,
                          filters=[trimmed(CODE_LONGEST)])
    date_from = DayField(_l("Reçu depuis le"), name="from", id="filter-from")
    date_to = DayField(_l("Reçu jusqu'au"), name="to", id="filter-to")

    def offer(self, choices: dict[str, list[Any]]) -> None:
        """Draw the selects from the doctor's own letters (``filter_choices``)."""
        self.patient.choices = [SelectChoice("", _l("Tous les patients"))] + [
            SelectChoice(str(p.id), f"{p.family_name} {p.given_name} "
                                    f"({format_date(p.birth_date, 'short')})")
            for p in choices["patients"]]
        self.type.choices = [SelectChoice("", _l("Tous les types"))] + [
            SelectChoice(code, label) for code, label in choices["types"]]
        self.service.choices = [SelectChoice("", _l("Tous les services"))] + [
            SelectChoice(code, code) for code in choices["services"]]


class PatientFilters(QueryForm):
    """Mes patients' view and search. An unknown view falls back to the doctor's preference
    (an old link keeps working); a search typed too long searches its start."""

    view = HiddenField()
    q = SearchField(_l("Rechercher un patient"), id="q", filters=[trimmed(SEARCH_MAX)],
                    render_kw={"maxlength": SEARCH_MAX, "autocomplete": "off"})


class BackToList(PostForm):
    """A letter's action from the list (read, unread): back to the list as it was."""

    next = HiddenField()


class NotMyPatient(PostForm):
    """The confirmation that a letter concerns someone who is not the doctor's patient."""


class ZipSelection(PostForm):
    """The letters ticked for one ZIP: delivery ids, each one a BIGINT the database holds."""

    ids = SelectMultipleField(validate_choice=False)

    def chosen(self) -> list[int] | None:
        """The ids, sorted and once each; None when one is missing or not an id."""
        found = [row_id(value, BIGINT_ID_MAX) for value in self.ids.data or []]
        if not found or any(value is None for value in found):
            return None
        return sorted({value for value in found if value is not None})
