"""``/auth/recovery-codes``: a staff member's recovery codes, shown once, and new ones.

Flask's session is a signed cookie, readable by whoever holds it. The fresh recovery codes
travel in it sealed (AES-GCM under DOCUMENT_KEYS, bound to the account) only until the page
that shows them is rendered, which removes them.
"""

from __future__ import annotations

import base64
import binascii
import json

from flask import redirect, render_template, session, url_for
from sqlalchemy import select
from werkzeug.wrappers import Response as BaseResponse

from app.auth import totp
from app.auth.forms import PASSWORD_WRONG, RecoveryCodesForm
from app.auth.limits import sign_in_limits
from app.auth.session import actor_for, current_principal, requires, safe_next
from app.auth.sign_in import SignInRefused, confirm_password
from app.auth.staff_factors import issue_recovery_codes
from app.auth.views.blueprint import bp
from app.crypto import ContentIntegrityError, Sealed, key_ring
from app.extensions import db
from app.models import RecoveryCode, StaffUser

#: Where the sealed codes wait in the session until their page is shown.
RECOVERY_KEY = "recovery_codes"


def _recovery_aad(user: StaffUser) -> bytes:
    return f"relais-recovery-codes:{user.id}:{user.login}".encode()


def keep_recovery_codes(user: StaffUser, recovery: list[str], next_path: str) -> None:
    """Seal the fresh codes into the session, for their page to show once."""
    payload = json.dumps({"codes": recovery, "next": next_path}).encode()
    sealed = key_ring().seal(payload, _recovery_aad(user))
    session[RECOVERY_KEY] = {
        "key_id": sealed.key_id,
        "nonce": base64.b64encode(sealed.nonce).decode(),
        "ciphertext": base64.b64encode(sealed.ciphertext).decode(),
    }


def _take_recovery_codes(user: StaffUser) -> tuple[list[str], str] | None:
    """The codes waiting to be shown (removed from the session), if still the current ones."""
    kept = session.pop(RECOVERY_KEY, None)
    if not isinstance(kept, dict):
        return None
    try:
        sealed = Sealed(str(kept["key_id"]), base64.b64decode(kept["nonce"]),
                        base64.b64decode(kept["ciphertext"]))
        data = json.loads(key_ring().unseal(sealed, _recovery_aad(user)))
        recovery = [str(c) for c in data["codes"]]
        next_path = safe_next(data.get("next"))
    except (KeyError, TypeError, ValueError, binascii.Error, ContentIntegrityError):
        return None
    unused = set(db.session.scalars(
        select(RecoveryCode.code_hash).where(RecoveryCode.staff_user_id == user.id,
                                             RecoveryCode.used_at.is_(None))
    ))
    if not recovery or any(totp.recovery_code_hash(c) not in unused for c in recovery):
        return None  # replaced or reset meanwhile: these codes no longer work
    return recovery, next_path


@bp.get("/recovery-codes")
@requires("staff", "desk")
def recovery_codes() -> tuple[str, int]:
    staff = current_principal().staff
    taken = _take_recovery_codes(staff)
    form = RecoveryCodesForm()
    if taken is None:
        return render_template("auth/recovery_codes.html", form=form, codes=None, error=None,
                               next_path="/"), 200
    recovery, next_path = taken
    return render_template("auth/recovery_codes.html", form=form, codes=recovery, error=None,
                           next_path=next_path), 200


@bp.post("/recovery-codes")
@requires("staff", "desk")
@sign_in_limits
def regenerate_recovery_codes() -> BaseResponse | tuple[str, int]:
    """New recovery codes (the old ones stop working), after the password is asked again."""
    staff = current_principal().staff
    form = RecoveryCodesForm()
    refused = not form.validate()  # empty or too long: refused without a check
    if not refused:
        try:
            confirm_password(staff, form.password.data or "")
        except SignInRefused:
            refused = True
    if refused:
        return render_template("auth/recovery_codes.html", form=form, codes=None, next_path="/",
                               error=PASSWORD_WRONG), 200
    recovery = issue_recovery_codes(staff, actor_for(staff))
    keep_recovery_codes(staff, recovery, "/")
    db.session.commit()
    return redirect(url_for("auth.recovery_codes"), code=303)
