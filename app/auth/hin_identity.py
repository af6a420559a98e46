"""Who a verified HIN sign-in is: the asserted GLN bound to a doctor of Relais.

At the first sign-in the identity (IdP entity id, NameID) is linked to the doctor with the
asserted GLN, who is created, or activated when the desk or the DPI already knew her; later
sign-ins find her by that identity and never silently relink it. A deactivated or locked
account, a missing GLN, or a GLN that changed is refused (:class:`HinRejected`, audited by the
caller). What the desk or the DPI recorded stays; HIN only fills in what is missing.
"""

from __future__ import annotations

from flask import current_app
from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from app.audit import record
from app.auth.hin_checks import HinRejected, Verified
from app.auth.lockout import is_locked
from app.auth.session import actor_for, target_of
from app.email_address import is_email_address
from app.extensions import db
from app.gln import is_valid_gln
from app.models import Doctor, HinIdentity
from app.models.base import utcnow
from app.states import DoctorState
from app.text import has_control

MSG_NO_GLN = _l(
    "Votre identité HIN ne transmet pas de GLN valable. Relais ne peut vous reconnaître que par "
    "votre GLN : adressez-vous au support HIN ou au secrétariat de Relais."
)
MSG_DEACTIVATED = _l(
    "Votre compte Relais est désactivé. Adressez-vous au secrétariat de Relais pour le "
    "réactiver."
)
MSG_LOCKED = _l(
    "Votre compte est temporairement bloqué après trop de tentatives. Réessayez dans "
    "15 minutes ou adressez-vous au secrétariat de Relais."
)
MSG_GLN_MISMATCH = _l(
    "Cette identité HIN est liée à un autre GLN. Adressez-vous au secrétariat de Relais."
)



def _attribute(attributes: dict[str, list[str]], config_name: str, limit: int = 200) -> str:
    values = attributes.get(current_app.config[config_name]) or []
    if len(values) != 1 or not isinstance(values[0], str):
        return ""
    value = values[0].strip()
    if len(value) > limit or has_control(value):
        return ""
    return value


def link_identity(verified: Verified) -> tuple[Doctor, HinIdentity]:
    """The doctor this HIN identity signs in as: linked by GLN at first, then by identity.

    Creates or activates the doctor at the first sign-in (audited); refuses, audited by the
    caller, a deactivated or locked account, a missing GLN, or a GLN that changed.
    """
    gln = _attribute(verified.attributes, "SAML_ATTR_GLN", 13)
    identity = db.session.scalar(
        select(HinIdentity).where(
            HinIdentity.provider == verified.provider, HinIdentity.subject == verified.subject
        )
    )
    if identity is not None:
        doctor = identity.doctor
        if not is_valid_gln(gln):
            raise HinRejected("no_gln", status=403, message=MSG_NO_GLN, doctor=doctor)
        if gln != doctor.gln:
            # HIN now says another GLN for this person: the desk decides, never a silent relink.
            raise HinRejected("gln_mismatch", status=403, message=MSG_GLN_MISMATCH,
                              doctor=doctor)
        _check_may_sign_in(doctor)
    else:
        if not is_valid_gln(gln):
            raise HinRejected("no_gln", status=403, message=MSG_NO_GLN)
        known = db.session.scalar(select(Doctor).where(Doctor.gln == gln))
        if known is not None:
            _check_may_sign_in(known)
        doctor = _activate_or_create(known, gln, verified.attributes)
        identity = HinIdentity(provider=verified.provider, subject=verified.subject)
        doctor.identities.append(identity)
        db.session.flush()
        record(actor_for(doctor), "hin.identity_linked", target=target_of(doctor),
               details={"provider": verified.provider})
    identity.last_seen_at = utcnow()
    return doctor, identity


def _check_may_sign_in(doctor: Doctor) -> None:
    if doctor.state == DoctorState.DEACTIVATED.value:
        raise HinRejected("doctor_deactivated", status=403, message=MSG_DEACTIVATED,
                          doctor=doctor)
    if is_locked(doctor):
        raise HinRejected("locked", status=403, message=MSG_LOCKED, doctor=doctor)


def _activate_or_create(doctor: Doctor | None, gln: str,
                        attributes: dict[str, list[str]]) -> Doctor:
    family = _attribute(attributes, "SAML_ATTR_FAMILY_NAME")
    given = _attribute(attributes, "SAML_ATTR_GIVEN_NAME")
    email = _attribute(attributes, "SAML_ATTR_EMAIL", 320)
    if not is_email_address(email):
        email = ""
    now = utcnow()
    if doctor is None:
        doctor = Doctor(gln=gln, family_name=family, given_name=given, email=email or None,
                        state=DoctorState.ACTIVE.value, activated_at=now)
        db.session.add(doctor)
        db.session.flush()
        record(actor_for(doctor), "doctor.created", target=target_of(doctor),
               details={"via": "hin", "state": doctor.state})
        return doctor
    # What the desk or the DPI recorded stays; HIN only fills in what is missing.
    doctor.family_name = doctor.family_name or family
    doctor.given_name = doctor.given_name or given
    doctor.email = doctor.email or email or None
    if doctor.state == DoctorState.PENDING.value:
        doctor.state = DoctorState.ACTIVE.value
        doctor.activated_at = doctor.activated_at or now
        db.session.flush()
        record(actor_for(doctor), "doctor.activated", target=target_of(doctor),
               details={"via": "hin"})
    return doctor
