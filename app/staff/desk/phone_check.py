"""The desk's check of a mobile: a code sent by SMS to the number the doctor gives, the attempt
bound to that number and to this desk user, checked when the desk types what the doctor reads,
and resent on request. Enrolment and the change of mobile both use it.

Sending is a side effect: the code is committed first, so a code that reached a phone always
exists; a first code whose SMS failed is deleted again and the failure audited.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import flash, redirect
from flask_babel import gettext as _
from sqlalchemy import delete
from werkzeug.wrappers import Response as BaseResponse

from app.audit import record
from app.auth import codes
from app.auth.session import current_principal, target_of
from app.auth.sms import SmsError, mask_phone
from app.extensions import db
from app.models import OneTimeCode
from app.staff.desk.common import desk_user, doctor_or_404, drop_handle, pending_step

#: The longest code read from the form (a code is 6 digits; anything longer is simply wrong).
MAX_CODE = 32


def sms_body(code: str) -> str:
    # French: the doctor reads it aloud at the desk of a Geneva hospital.
    minutes = int(codes.CODE_LIFETIME.total_seconds() // 60)
    return (f"Relais : votre code de vérification est {code}. Valable {minutes} minutes. "
            "Ne le communiquez qu'au guichet de l'hôpital.")


def send_code(issued: codes.Issued, target: str, reason: str, *, first: bool) -> bool:
    """Commit the code, then send it; audit the outcome. False when the SMS could not go out:
    a first code is then deleted (nothing of the attempt stays but the audit of the failure),
    a resent one may be resent again at once."""
    db.session.commit()
    challenge = issued.challenge
    phone = challenge.phone
    details = {"mobile": mask_phone(phone), "reason": reason, "send": challenge.sends}
    try:
        codes.send(issued, sms_body(issued.code))  # a failed resend may be retried at once
    except SmsError as error:
        if first:
            db.session.execute(delete(OneTimeCode).where(OneTimeCode.id == challenge.id))
        record(current_principal().actor, "desk.phone_code_failed", target=target,
               outcome="failure", details={**details, "error": str(error)})
        db.session.commit()
        return False
    record(current_principal().actor, "desk.phone_code_sent", target=target, details=details)
    db.session.commit()
    return True


def challenge_of(pending: Mapping[str, Any], doctor_id: int | None = None) -> OneTimeCode | None:
    """The code attempt of a pending step, if it is this desk user's, for this number."""
    challenge = codes.find(pending.get("handle"), "phone_check")
    if (
        challenge is None
        or challenge.staff_user_id != desk_user().id
        or challenge.phone != pending.get("mobile")
        or (doctor_id is not None and challenge.doctor_id != doctor_id)
    ):
        return None
    return challenge


def tries_left(challenge: OneTimeCode) -> int:
    return max(0, codes.MAX_TRIES - challenge.tries)


def check_result_message(result: codes.Check) -> str:
    """Why a code that is not merely wrong cannot be used: the desk starts again."""
    if result is codes.Check.EXPIRED:
        return str(_("Le code a expiré. Recommencez : un nouveau code sera envoyé."))
    if result is codes.Check.TOO_MANY_TRIES:
        return str(_("Trop de codes erronés. Recommencez : un nouveau code sera envoyé."))
    return str(_("Ce code n'est plus valable. Recommencez : un nouveau code sera envoyé."))


def check_code(target: str, challenge: OneTimeCode, typed: str) -> codes.Check:
    """Check the code the desk typed against the attempt, and audit the result (flushes)."""
    result = codes.check(challenge, typed[:MAX_CODE])
    record(
        current_principal().actor, "desk.phone_code_checked", target=target,
        outcome="success" if result is codes.Check.OK else "rejected",
        details={"result": result.value, "mobile": mask_phone(challenge.phone),
                 "tries_left": tries_left(challenge)},
    )
    return result


def resend(key: str, kind: str, doctor_id: int | None, reason: str, verify_url: str,
           restart_url: str) -> BaseResponse:
    """Send a new code for the pending step named by the session's ``key``, then go back to
    the code page (or, when the step cannot go on, to where it starts)."""
    step = pending_step(kind, key)
    challenge = challenge_of(step.data, doctor_id) if step else None
    if step is None or challenge is None or (doctor_id is not None
                                             and step.doctor_id != doctor_id):
        flash(_("Aucune vérification en cours : recommencez."), "info")
        return redirect(restart_url, code=303)
    try:
        issued = codes.resend(challenge)
    except codes.ResendRefused as refused:
        db.session.rollback()
        if refused.reason == "too_early":
            seconds = int(refused.wait.total_seconds()) + 1 if refused.wait else 30
            flash(_("Attendez %(seconds)d secondes avant de renvoyer un code.", seconds=seconds),
                  "error")
            return redirect(verify_url, code=303)
        drop_handle(step)
        db.session.commit()
        flash(_("Plus de renvoi possible pour cette vérification : recommencez."), "error")
        return redirect(restart_url, code=303)
    target = (target_of(doctor_or_404(doctor_id)) if doctor_id is not None
              else f"doctor:{step.data['gln']}")
    if send_code(issued, target, reason, first=False):
        flash(_("Un nouveau code a été envoyé."), "info")
    else:
        flash(_("L'envoi du SMS a échoué. Réessayez dans un instant."), "error")
    return redirect(verify_url, code=303)
