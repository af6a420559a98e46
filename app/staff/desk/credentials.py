"""The shown-once credentials: a temporary password kept sealed for one showing to the desk user
who made it, and the printable sheet that takes it out (``/staff/desk/credentials``)."""

from __future__ import annotations

from flask import current_app, render_template, session

from app.auth.session import requires
from app.extensions import db
from app.models import Doctor
from app.staff import steps
from app.staff.desk.common import CREDENTIALS, bp, desk_user
from app.web.origin import from_our_pages


def keep_credentials(doctor: Doctor, login: str, password: str, reason: str) -> None:
    """Keep the credentials for one showing to the signed-in desk user (flushes; the caller
    commits, then redirects to :func:`credentials`)."""
    handle = steps.open_step(steps.CREDENTIALS, desk_user(),
                             {"doctor_id": doctor.id, "login": login, "password": password,
                              "reason": reason}, doctor_id=doctor.id)
    session[CREDENTIALS] = handle


@bp.get("/credentials")
@requires("desk")
def credentials() -> tuple[str, int]:
    """The printable sheet, once: its row is deleted and committed before the page is built."""
    if not from_our_pages():
        # Opened from anywhere but the desk's own redirect (another site, a mail, a bookmark):
        # show nothing and spend nothing, so that no one else's link can use the sheet up.
        return render_template("staff/desk/credentials.html", shown=None), 403
    data = steps.take_step(steps.CREDENTIALS, desk_user(), session.pop(CREDENTIALS, None))
    db.session.commit()
    doctor = db.session.get(Doctor, data["doctor_id"]) if data else None
    if data is None or doctor is None:
        return render_template("staff/desk/credentials.html", shown=None), 410
    login_url = str(current_app.config["PUBLIC_BASE_URL"]).rstrip("/") + "/auth/login"
    return render_template("staff/desk/credentials.html", shown=data, doctor=doctor,
                           login_url=login_url), 200
