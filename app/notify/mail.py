"""Notification emails: built from templates in the doctor's language, sent by SMTP or printed.

No patient data ever goes into an email: the templates receive a count and the portal's
address, nothing else.
"""

from __future__ import annotations

import smtplib
import ssl
import sys
from collections.abc import Mapping
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

from flask import render_template
from flask_babel import force_locale, gettext, ngettext

from app.models import Notification

SMTP_TIMEOUT_SECONDS = 15


class MailError(Exception):
    """The email cannot be built (no address): retrying would not help."""


def _subject(row: Notification) -> str:
    if row.kind == "arrival":
        return str(ngettext("Relais : %(num)d nouveau document",
                            "Relais : %(num)d nouveaux documents", row.count))
    if row.kind == "digest":
        return str(ngettext("Relais : résumé du jour, %(num)d nouveau document",
                            "Relais : résumé du jour, %(num)d nouveaux documents", row.count))
    if row.kind == "email_confirm":
        return str(gettext("Relais : confirmez votre nouvelle adresse e-mail"))
    if row.kind == "change_requested":
        return str(gettext("Relais : une modification de votre connexion a été demandée"))
    if row.kind == "account_changed":
        return str(gettext("Relais : votre connexion a été modifiée"))
    return str(gettext("Relais : votre adresse e-mail a été changée"))


#: The desk's changes an account email may name: the last part of its outbox key
#: (app/staff/notices.py), never anything the doctor typed.
ACCOUNT_CHANGES = ("enrolment", "password_reset", "mobile_change")


def _account_change(row: Notification) -> str | None:
    change = row.idempotency_key.rpartition(":")[2]
    return change if change in ACCOUNT_CHANGES else None


def _address(row: Notification) -> str:
    address = row.to_address or row.doctor.email
    if not address:
        raise MailError("no address")
    return address


def build_message(row: Notification, config: Mapping[str, Any]) -> EmailMessage:
    """The email of one outbox row, in text and HTML, in the doctor's language."""
    base = str(config["PUBLIC_BASE_URL"]).rstrip("/")
    context: dict[str, Any] = {
        "count": row.count,
        "documents_url": f"{base}/documents",
        "profile_url": f"{base}/profile",
        "confirm_url": f"{base}/profile/email/confirm/{row.secret}" if row.secret else None,
        "change": _account_change(row),
        "desk_phone": str(config.get("DESK_PHONE") or ""),
    }
    sender = str(config["MAIL_FROM"])
    domain = sender.rpartition("@")[2] or "relais"
    message = EmailMessage()
    with force_locale(row.doctor.language or "fr"):
        message["Subject"] = _subject(row)
        text = render_template(f"email/{row.kind}.txt", **context)
        html = render_template(f"email/{row.kind}.html", **context)
    message["From"] = sender
    message["To"] = _address(row)
    message["Date"] = formatdate(localtime=False)
    # Stable per row: a repeated email (a crash after the server accepted it) is recognisable.
    message["Message-ID"] = f"<notification-{row.id}@{domain}>"
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    # After the content: set_content drops every Content-* header set before it.
    message["Content-Language"] = row.doctor.language or "fr"
    return message


def send_message(message: EmailMessage, config: Mapping[str, Any]) -> None:
    """Hand the message to the SMTP relay (``MAIL_*``), or print it (``console``)."""
    if config["MAIL_BACKEND"] == "console":
        sys.stdout.write(f"--- email (console) ---\n{message.as_string()}\n")
        sys.stdout.flush()
        return
    with smtplib.SMTP(str(config["MAIL_SERVER"]), int(config["MAIL_PORT"]),
                      timeout=SMTP_TIMEOUT_SECONDS) as smtp:
        if config.get("MAIL_USE_TLS"):
            smtp.starttls(context=ssl.create_default_context())
        if config.get("MAIL_USERNAME"):
            smtp.login(str(config["MAIL_USERNAME"]), str(config.get("MAIL_PASSWORD") or ""))
        smtp.send_message(message)
