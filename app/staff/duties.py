"""Separation of duties: whoever set up a doctor's account never directs letters to it, and
whoever directed letters to a doctor never sets up its account.

The danger is one person holding both ends: an account they can sign in to (they enrolled it,
with their own phone perhaps, or were handed its temporary password) and a patient's letters
pointed at it (a consent naming that doctor, a worklist letter sent there). So each staff person
stands on one side of each doctor, recorded in ``doctor_duties`` (one row per doctor and person,
never deleted):

- ``account``: enrolled the doctor at the desk, or asked for or approved a change of the
  doctor's sign-in (re-enrolment, password reset, new mobile);
- ``letters``: recorded a consent with electronic sending naming the doctor on the staff pages,
  created a pending doctor by recording a consent with a new GLN, or sent a worklist letter to
  the doctor.

Taking the other side is refused, whatever the order of the acts, and the refusal is audited
(``duty.refused``). A pending doctor created by a consent cannot receive anything until it is
activated, by HIN (the doctor herself) or by a desk enrolment, which is refused to whoever
created it: so one person cannot invent a GLN, record a consent for it and enrol it with their
own phone. The row's primary key (doctor, person) is what decides when two requests of the same
person race: one side only can be stored. Re-enrolling, resetting or reactivating an account
adds rows, it never removes one. API clients (the DPI) and the command line are not staff
persons and take no side.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.audit import Actor, record
from app.extensions import db
from app.models import Doctor, DoctorDuty, StaffUser

ACCOUNT: Final = "account"
LETTERS: Final = "letters"


class DutyConflict(Exception):
    """This person already stands on the other side of this doctor."""

    def __init__(self, doctor: Doctor, wanted: str, held: str, act: str) -> None:
        super().__init__(f"{wanted} refused: this person holds {held} for this doctor")
        self.gln = doctor.gln
        self.wanted = wanted
        self.held = held
        self.act = act


def _stored(doctor_id: int, staff_user_id: int) -> DoctorDuty | None:
    return db.session.scalar(
        select(DoctorDuty)
        .where(DoctorDuty.doctor_id == doctor_id, DoctorDuty.staff_user_id == staff_user_id)
        .execution_options(populate_existing=True)
    )


def duty_of(doctor: Doctor, person: StaffUser) -> str | None:
    """The side this person stands on for this doctor, if any."""
    stored = _stored(doctor.id, person.id)
    return stored.duty if stored is not None else None


def check(doctor: Doctor, person: StaffUser, duty: str, act: str) -> None:
    """Raise :class:`DutyConflict` when ``person`` may not take ``duty`` for ``doctor``.

    For a clear refusal before anything is done (before an SMS goes out); :func:`claim` is what
    holds, in the transaction of the act itself."""
    held = duty_of(doctor, person)
    if held is not None and held != duty:
        raise DutyConflict(doctor, duty, held, act)


def claim(doctor: Doctor, person: StaffUser, duty: str, act: str) -> None:
    """Record that ``person`` takes ``duty`` for ``doctor`` in the caller's transaction, or
    raise :class:`DutyConflict` (the caller rolls back the act and audits the refusal)."""
    db.session.flush()  # the doctor has its id
    held = duty_of(doctor, person)
    if held == duty:
        return
    if held is not None:
        raise DutyConflict(doctor, duty, held, act)
    try:
        with db.session.begin_nested():
            db.session.add(DoctorDuty(doctor_id=doctor.id, staff_user_id=person.id, duty=duty,
                                      first_act=act))
    except IntegrityError:
        # Another request of the same person took a side first (the primary key decided).
        held = duty_of(doctor, person)
        if held != duty:
            raise DutyConflict(doctor, duty, held or "unknown", act) from None


def record_refusal(actor: Actor, conflict: DutyConflict, patient: str | None = None) -> None:
    """Audit a refused act, in a transaction of its own (the act itself was rolled back)."""
    record(actor, "duty.refused", target=f"doctor:{conflict.gln}", patient=patient,
           outcome="rejected",
           details={"act": conflict.act, "wanted": conflict.wanted, "held": conflict.held})
