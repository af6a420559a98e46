"""Help for a doctor who cannot sign in (forgotten password, lost phone), and the privacy notice.

Both pages are public: a doctor who cannot sign in must still reach them. The desk's contact
details come from the ``DESK_*`` settings (defaults: the hospital's cybersanté & télémédecine
desk, from the myHUG seed).
"""

from __future__ import annotations

from flask import Blueprint, current_app, render_template
from flask_babel import lazy_gettext as _l

from app.auth.session import public

bp = Blueprint("help", __name__)

#: The default opening hours, translated; hours set in the configuration are shown as written.
_DEFAULT_HOURS = {
    "Lundi au vendredi, 8 h – 12 h et 13 h – 17 h (jeudi dès 10 h)": _l(
        "Lundi au vendredi, 8 h – 12 h et 13 h – 17 h (jeudi dès 10 h)"
    ),
}


def desk() -> dict[str, str]:
    """The desk's contact details, as configured."""
    config = current_app.config
    hours = str(config["DESK_HOURS"])
    return {
        "phone": str(config["DESK_PHONE"]),
        "email": str(config["DESK_EMAIL"]),
        "hours": str(_DEFAULT_HOURS.get(hours, hours)),
        "address": str(config["DESK_ADDRESS"]),
    }


def phone_link(phone: str) -> str:
    """``tel:`` form of a phone number: digits and a leading plus only."""
    return "tel:" + "".join(c for c in phone if c.isdigit() or c == "+")


@bp.get("/help")
@public
def index() -> str:
    contact = desk()
    return render_template("site/help.html", desk=contact, tel=phone_link(contact["phone"]))


@bp.get("/privacy")
@public
def privacy() -> str:
    contact = desk()
    return render_template("site/privacy.html", desk=contact, tel=phone_link(contact["phone"]))
