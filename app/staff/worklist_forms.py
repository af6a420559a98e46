"""The worklist's forms (Flask-WTF): the filter bar, and the handlings: send to the right doctor,
no action with a note,
(the one-button handlings, by post and re-examine, are ``app/staff/forms.py``'s ButtonForm).

The rules of a handling (a note required, at most ``HANDLING_NOTE_MAX`` characters; a doctor
the patient consented to) live in app/dispatch/handling.py; the forms carry the fields and show
its refusal on its field.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from flask_babel import lazy_gettext as _l
from wtforms import RadioField, SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice

from app.models import Doctor
from app.web.forms import PostForm, QueryForm

#: Longest note kept for showing it again (longer ones are refused by the service).
NOTE_KEPT = 2000


def _gln(value: object) -> object:
    return value.strip()[:13] if isinstance(value, str) else value


def _kept_note(value: object) -> object:
    return value[:NOTE_KEPT] if isinstance(value, str) else value


class WorklistFilterForm(QueryForm):
    """What the list shows: open or handled, the reason, the service, the days received. The
    worklist's ``parse_filters`` checks them (a 400 for a value that is not one)."""

    state = RadioField(_l("Afficher"), validate_choice=False,
                       choices=[SelectChoice("open", _l("À traiter")),
                                SelectChoice("handled", _l("Traités"))])
    kind = SelectField(_l("Motif"), id="filter-kind", validate_choice=False)
    service = SelectField(_l("Service"), id="filter-service", validate_choice=False)
    date_from = StringField(_l("Reçu depuis le"), name="from", id="filter-from",
                            render_kw={"type": "date"})
    date_to = StringField(_l("Reçu jusqu'au"), name="to", id="filter-to",
                          render_kw={"type": "date"})

    def offer(self, kinds: Mapping[str, object], services: Iterable[str]) -> None:
        """The reasons and the services to choose from."""
        self.kind.choices = [SelectChoice("", _l("Tous les motifs")),
                             *(SelectChoice(code, str(label)) for code, label in kinds.items())]
        self.service.choices = [SelectChoice("", _l("Tous les services")),
                                *(SelectChoice(code, code) for code in services)]

    def fill(self, state: str, kind: str, service: str, days: tuple[str, str]) -> None:
        """Each field as the parsed filters have it."""
        self.state.data, self.kind.data, self.service.data = state, kind, service
        self.date_from.data, self.date_to.data = days


class RedirectForm(PostForm):
    """Send the letter to another doctor the patient designated."""

    gln = SelectField(_l("Médecin"), id="redirect-gln", validate_choice=False, filters=[_gln])

    def offer(self, candidates: Iterable[Doctor], already: set[str], has_it: str) -> None:
        """The doctors to choose from; ``has_it`` marks one who has the document already."""
        self.gln.choices = [
            SelectChoice(doctor.gln, f"{doctor.family_name} {doctor.given_name} "
                                     f"(GLN {doctor.gln})"
                                     + (f" — {has_it}" if doctor.gln in already else ""))
            for doctor in candidates
        ]


class NoActionForm(PostForm):
    """No action is needed: the note says why."""

    note = TextAreaField(_l("Pourquoi aucune action n'est nécessaire"), filters=[_kept_note])

    @property
    def text(self) -> str:
        return str(self.note.data or "")
