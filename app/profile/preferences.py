"""Mon profil's preferences, declared once: ``PREFERENCES`` draws the form
(``app/profile/forms.py``), checks what is posted (each one's ``parse``) and saves what passes.
Each one's default is the Doctor column's (app/models/doctor.py), so a new account and the form
agree; the landing page (``landing_path``) is one of them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from flask_babel import LazyString
from flask_babel import lazy_gettext as _l

from app.audit import Actor, record
from app.extensions import db
from app.labels import SPECIALTIES
from app.models import Doctor
from app.models.base import utcnow
from app.notify.outbox import drop_open_arrivals


@dataclass(frozen=True)
class Preference:
    """One preference: a Doctor attribute, its type, its allowed values and its default."""

    name: str
    label: LazyString
    kind: Literal["choice", "int", "multi"]
    section: str
    choices: Callable[[], tuple[tuple[str, LazyString | str], ...]] = lambda: ()
    minimum: int = 0
    maximum: int = 0
    hint: LazyString | None = None
    shown_with: tuple[str, str] | None = field(default=None)

    @property
    def default(self) -> Any:
        """A new account's value: the model column's default, stated once in app/models/doctor.py
        (the specialties, a list of rows, start empty)."""
        if self.kind == "multi":
            return []
        return Doctor.__table__.c[self.name].default.arg

    def parse(self, form: Mapping[str, list[str]]) -> Any:
        """The typed value posted for this preference; ValueError when it is not allowed."""
        values = form.get(self.name, [])
        allowed = {code for code, _ in self.choices()}
        if self.kind == "multi":
            if any(v not in allowed for v in values):
                raise ValueError(_l("Choisissez dans la liste proposée."))
            return sorted(set(values))
        raw = values[0].strip() if values else ""
        if self.kind == "int":
            if not raw.isdigit() or not self.minimum <= int(raw) <= self.maximum:
                raise ValueError(_l("Indiquez un nombre entre %(low)d et %(high)d.",
                                    low=self.minimum, high=self.maximum))
            return int(raw)
        if raw not in allowed:
            raise ValueError(_l("Choisissez dans la liste proposée."))
        return raw


def _hours() -> tuple[tuple[str, str], ...]:
    return tuple((str(h), f"{h:02d}:00") for h in range(24))


PREFERENCES: tuple[Preference, ...] = (
    Preference("notification_mode", _l("Notification par e-mail des nouveaux documents"),
               "choice", "notifications",
               choices=lambda: (("none", _l("Aucune")), ("immediate", _l("À chaque arrivée")),
                                ("digest", _l("Un résumé par jour")))),
    Preference("digest_hour", _l("Heure du résumé quotidien"), "int", "notifications",
               choices=_hours, minimum=0, maximum=23, hint=_l("Heure de Genève.")),
    Preference("specialties", _l("Spécialités (titres de spécialiste FMH)"), "multi",
               "specialties", choices=lambda: tuple(SPECIALTIES.items()),
               hint=_l("Le personnel de l'hôpital s'en sert pour choisir le destinataire.")),
    Preference("patients_view", _l("Patients affichés dans « Mes patients »"), "choice", "lists",
               choices=lambda: (("all", _l("Tous mes patients")),
                                ("recent", _l("Ceux qui ont un document récent")),
                                ("unread", _l("Ceux qui ont des documents non lus")))),
    Preference("patients_recent_months", _l("« Récent » : nombre de mois"), "int", "lists",
               minimum=1, maximum=120),
    Preference("documents_view", _l("Documents affichés dans « Mes documents »"), "choice",
               "lists",
               choices=lambda: (("all", _l("Tous les documents")),
                                ("unread", _l("Les documents non lus")))),
    Preference("landing_page", _l("Page d'accueil après la connexion"), "choice", "general",
               choices=lambda: (("documents", _l("Mes documents")),
                                ("patients", _l("Mes patients")), ("profile", _l("Mon profil")))),
    Preference("language", _l("Langue"), "choice", "general",
               choices=lambda: (("fr", "Français"), ("en", "English"))),
)

SECTIONS: tuple[tuple[str, LazyString], ...] = (
    ("notifications", _l("Notifications")),
    ("specialties", _l("Spécialités")),
    ("lists", _l("Mes listes")),
    ("general", _l("Accueil et langue")),
)

#: The page each landing_page value opens (literal paths: bookmarks and emails point at them).
LANDING_PATHS = {"documents": "/documents", "patients": "/patients", "profile": "/profile"}


def landing_path(doctor: Doctor) -> str:
    """Mon profil (e): where a signed-in doctor goes first."""
    return LANDING_PATHS.get(doctor.landing_page, "/documents")


def current_values(doctor: Doctor) -> dict[str, Any]:
    return {p.name: getattr(doctor, p.name) for p in PREFERENCES}


def update_preferences(doctor: Doctor, values: Mapping[str, Any], actor: Actor) -> list[str]:
    """Save the validated values; audit the names of the fields that changed. No commit."""
    changed = [p.name for p in PREFERENCES if getattr(doctor, p.name) != values[p.name]]
    if not changed:
        return []
    if "notification_mode" in changed:
        if doctor.notification_mode == "immediate":
            drop_open_arrivals(doctor)
        if values["notification_mode"] == "digest":
            doctor.last_digest_at = utcnow()  # the first digest counts from now
    for name in changed:
        setattr(doctor, name, values[name])
    db.session.flush()
    record(actor, "profile.updated", target=f"doctor:{doctor.gln}", details={"fields": changed})
    return changed
