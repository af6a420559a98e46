"""Mon profil: the doctor's preferences, declared once, and the change of email address.

``PREFERENCES`` is the one list: the form is drawn from it, what is posted is checked against
it, and what passes is saved from it. A new email address works only once the link sent to it
has been followed (24 hours, single use, only its hash is stored); the old address is told.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

from flask import Blueprint, abort, flash, redirect, render_template, request, session, url_for
from flask_babel import LazyString
from flask_babel import lazy_gettext as _l
from sqlalchemy import select, update
from werkzeug.wrappers import Response as BaseResponse

from app.audit import Actor, record
from app.auth.session import current_principal, requires
from app.extensions import db
from app.models import Doctor, EmailChange
from app.models.base import utcnow
from app.notify.outbox import drop_open_arrivals, queue_email
from app.workspace.specialties import SPECIALTIES

bp = Blueprint("profile", __name__)

EMAIL_TOKEN_LIFETIME = timedelta(hours=24)
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]+\.[^@\s]+")


@dataclass(frozen=True)
class Preference:
    """One preference: a Doctor attribute, its type, its allowed values and its default."""

    name: str
    label: LazyString
    kind: Literal["choice", "int", "multi"]
    default: Any
    section: str
    choices: Callable[[], tuple[tuple[str, LazyString | str], ...]] = lambda: ()
    minimum: int = 0
    maximum: int = 0
    hint: LazyString | None = None
    shown_with: tuple[str, str] | None = field(default=None)

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
               "choice", "none", "notifications",
               choices=lambda: (("none", _l("Aucune")), ("immediate", _l("À chaque arrivée")),
                                ("digest", _l("Un résumé par jour")))),
    Preference("digest_hour", _l("Heure du résumé quotidien"), "int", 7, "notifications",
               choices=_hours, minimum=0, maximum=23, hint=_l("Heure de Genève.")),
    Preference("specialties", _l("Spécialités (titres de spécialiste FMH)"), "multi", [],
               "specialties", choices=lambda: tuple(SPECIALTIES.items()),
               hint=_l("Le personnel de l'hôpital s'en sert pour choisir le destinataire.")),
    Preference("patients_view", _l("Patients affichés dans « Mes patients »"), "choice", "all",
               "lists",
               choices=lambda: (("all", _l("Tous mes patients")),
                                ("recent", _l("Ceux qui ont un document récent")),
                                ("unread", _l("Ceux qui ont des documents non lus")))),
    Preference("patients_recent_months", _l("« Récent » : nombre de mois"), "int", 12, "lists",
               minimum=1, maximum=120),
    Preference("documents_view", _l("Documents affichés dans « Mes documents »"), "choice",
               "all", "lists",
               choices=lambda: (("all", _l("Tous les documents")),
                                ("unread", _l("Les documents non lus")))),
    Preference("landing_page", _l("Page d'accueil après la connexion"), "choice", "documents",
               "general",
               choices=lambda: (("documents", _l("Mes documents")),
                                ("patients", _l("Mes patients")), ("profile", _l("Mon profil")))),
    Preference("language", _l("Langue"), "choice", "fr", "general",
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


# --- operations (no commit: the view commits once) -------------------------------------------


def current_values(doctor: Doctor) -> dict[str, Any]:
    return {p.name: getattr(doctor, p.name) for p in PREFERENCES}


def validate(form: Mapping[str, list[str]]) -> tuple[dict[str, Any], dict[str, str]]:
    """(values, errors) for the posted form: every preference or an error for it."""
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for preference in PREFERENCES:
        try:
            values[preference.name] = preference.parse(form)
        except ValueError as error:
            errors[preference.name] = str(error.args[0])
    return values, errors


def update_preferences(doctor: Doctor, values: Mapping[str, Any], actor: Actor) -> list[str]:
    """Save the validated values; audit the names of the fields that changed."""
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


class EmailChangeError(Exception):
    """The link is unknown, used, expired or not this doctor's: one message for all."""


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def request_email_change(doctor: Doctor, new_email: str, actor: Actor) -> int:
    """Send a confirmation link to the new address; returns the outbox row's id."""
    now = utcnow()
    # Only the latest request counts: earlier links stop working.
    db.session.execute(
        update(EmailChange)
        .where(EmailChange.doctor_id == doctor.id, EmailChange.used_at.is_(None),
               EmailChange.expires_at > now)
        .values(expires_at=now)
    )
    token = secrets.token_urlsafe(32)
    change = EmailChange(doctor_id=doctor.id, new_email=new_email, token_hash=_token_hash(token),
                         created_at=now, expires_at=now + EMAIL_TOKEN_LIFETIME)
    db.session.add(change)
    db.session.flush()
    row = queue_email(doctor, "email_confirm", f"email_confirm:{change.id}",
                      to_address=new_email, secret=token, now=now)
    record(actor, "profile.email_change_requested", target=f"doctor:{doctor.gln}")
    return row.id


def confirm_email_change(doctor: Doctor, token: str, actor: Actor) -> int | None:
    """Follow the link: the new address replaces the old one, which is told (its row id)."""
    now = utcnow()
    change = db.session.scalar(
        select(EmailChange).where(EmailChange.token_hash == _token_hash(token))
        .with_for_update()
    )
    if (change is None or change.doctor_id != doctor.id or change.used_at is not None
            or change.expires_at <= now):
        raise EmailChangeError
    # Single use even under a double click: a compare-and-set on used_at.
    result = db.session.execute(
        update(EmailChange).where(EmailChange.id == change.id, EmailChange.used_at.is_(None))
        .values(used_at=now).execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise EmailChangeError
    old = doctor.email
    doctor.email = change.new_email
    row_id = None
    if old and old != change.new_email:
        row_id = queue_email(doctor, "email_changed", f"email_changed:{change.id}",
                             to_address=old, now=now).id
    record(actor, "profile.updated", target=f"doctor:{doctor.gln}", details={"fields": ["email"]})
    return row_id


def send_now(row_id: int | None) -> None:
    """After the commit: try an account email at once; the worker retries it if this fails."""
    if row_id is None:
        return
    from app.notify.outbox import _claim, send_one

    now = utcnow()
    row = _claim(row_id, now)
    if row is not None:
        send_one(row, now)


def landing_path(doctor: Doctor) -> str:
    return LANDING_PATHS.get(doctor.landing_page, "/documents")


# --- views -------------------------------------------------------------------------------------


def _render(doctor: Doctor, values: Mapping[str, Any], errors: Mapping[str, str],
            email: str, status: int = 200) -> tuple[str, int]:
    pending = db.session.scalar(
        select(EmailChange).where(EmailChange.doctor_id == doctor.id,
                                  EmailChange.used_at.is_(None),
                                  EmailChange.expires_at > utcnow())
        .order_by(EmailChange.id.desc()).limit(1)
    )
    return render_template(
        "profile/profile.html", doctor=doctor, preferences=PREFERENCES, sections=SECTIONS,
        values=values, errors=errors, email=email, pending=pending,
    ), status


@bp.route("/profile", methods=["GET", "POST"])
@requires("doctor")
def profile() -> tuple[str, int] | BaseResponse:
    doctor = current_principal().doctor
    if request.method == "GET":
        return _render(doctor, current_values(doctor), {}, doctor.email or "")
    form = request.form.to_dict(flat=False)
    values, errors = validate(form)
    email = request.form.get("email", "").strip()
    if email and (len(email) > 320 or not _EMAIL.fullmatch(email)):
        errors["email"] = str(_l("Indiquez une adresse e-mail valable."))
    if errors:
        return _render(doctor, {**current_values(doctor), **values}, errors, email, 422)
    actor = current_principal().actor
    changed = update_preferences(doctor, values, actor)
    row_id = None
    if email and email != (doctor.email or ""):
        row_id = request_email_change(doctor, email, actor)
    db.session.commit()
    send_now(row_id)
    session["lang"] = doctor.language
    if row_id is not None:
        flash(str(_l("Un lien de confirmation a été envoyé à la nouvelle adresse. Elle sera "
                     "utilisée dès que vous l'aurez suivi (dans les 24 heures).")), "info")
    if changed or row_id is None:
        flash(str(_l("Vos préférences sont enregistrées.")), "success")
    return redirect(url_for("profile.profile"), code=303)


@bp.route("/profile/email/confirm/<token>", methods=["GET", "POST"])
@requires("doctor")
def confirm_email(token: str) -> tuple[str, int] | BaseResponse:
    """Signed in as the doctor (so a link alone changes nothing), then one button: a GET never
    confirms, so that a mail scanner following the link cannot use it up."""
    if len(token) > 128:
        abort(404)
    doctor = current_principal().doctor
    if request.method == "GET":
        return render_template("profile/confirm_email.html", token=token), 200
    try:
        row_id = confirm_email_change(doctor, token, current_principal().actor)
    except EmailChangeError:
        db.session.rollback()
        return render_template("profile/confirm_email.html", token=None, failed=True), 400
    db.session.commit()
    send_now(row_id)
    flash(str(_l("Votre nouvelle adresse e-mail est confirmée.")), "success")
    return redirect(url_for("profile.profile"), code=303)
