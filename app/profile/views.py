"""Mon profil's pages: the preferences and the email address, and the confirmation link."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, session, url_for
from flask_babel import lazy_gettext as _l
from werkzeug.wrappers import Response as BaseResponse

from app.auth.session import current_principal, requires
from app.extensions import db
from app.models import Doctor
from app.profile.email import (
    EmailChangeError,
    confirm_email_change,
    pending_change,
    request_email_change,
    send_now,
)
from app.profile.forms import ProfileBase, ProfileForm
from app.profile.preferences import PREFERENCES, SECTIONS, current_values, update_preferences

bp = Blueprint("profile", __name__)



def _render(doctor: Doctor, form: ProfileBase, status: int = 200) -> tuple[str, int]:
    return render_template(
        "profile/profile.html", doctor=doctor, form=form, preferences=PREFERENCES,
        sections=SECTIONS, pending=pending_change(doctor),
    ), status


@bp.route("/profile", methods=["GET", "POST"])
@requires("doctor")
def profile() -> tuple[str, int] | BaseResponse:
    doctor = current_principal().doctor
    if request.method == "GET":
        return _render(doctor, ProfileForm(data={**current_values(doctor),
                                                 "email": doctor.email or ""}))
    form = ProfileForm()
    if not form.validate():
        return _render(doctor, form, 422)
    actor = current_principal().actor
    changed = update_preferences(doctor, form.parsed, actor)
    email = form.email.data or ""
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
