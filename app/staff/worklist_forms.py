"""The worklist's handling forms (Flask-WTF): send to the right doctor, no action with a note,
(the one-button handlings, by post and re-examine, are ``app/staff/forms.py``'s ButtonForm).

The rules of a handling (a note required, at most ``HANDLING_NOTE_MAX`` characters; a doctor
the patient consented to) live in the dispatch service; the forms carry the fields and show the
service's refusal on its field.
"""

from __future__ import annotations

from collections.abc import Iterable

from flask_babel import lazy_gettext as _l
from wtforms import SelectField, TextAreaField
from wtforms.fields.choices import SelectChoice

from app.models import Doctor
from app.web.forms import PostForm

#: Longest note kept for showing it again (longer ones are refused by the service).
NOTE_KEPT = 2000


def _gln(value: object) -> object:
    return value.strip()[:13] if isinstance(value, str) else value


def _kept_note(value: object) -> object:
    return value[:NOTE_KEPT] if isinstance(value, str) else value


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
