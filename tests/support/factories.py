"""The rows a test starts from: doctors, staff, patients, consents, documents and deliveries.

Plain functions, one per kind of row, each with the defaults most tests want (Dr Claire Muller,
GLN 7601000000019; Anna Muster, P-0042) and keyword overrides for any column. Each commits its
row, so that a request of the test client sees it. Tests that go through the DPI API build their
letters with ``tests.conftest.document_body`` instead: these factories write rows directly.
"""

from __future__ import annotations

import hashlib
from datetime import date, datetime, timedelta
from itertools import count
from typing import Any

from argon2 import PasswordHasher, Type

from app.audit import CLI
from app.extensions import db
from app.models import Consent, Delivery, Doctor, Document, Patient, StaffUser
from app.models.base import utcnow
from app.staff.accounts import create_staff

GLN = "7601000000019"
PATIENT = "P-0042"
PASSWORD = "orange-tuba-glacier-mistral"
MOBILE = "+41791234567"

#: Delivery statuses in which the letter has reached the doctor.
_DELIVERED = ("delivered", "read", "retracted")

_serial = count(1)

# A cheap argon2id hash: fast tests, and a hash that `needs_rehash` wants to upgrade.
_weak_hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1, type=Type.ID)


def weak_hash(password: str = PASSWORD) -> str:
    return _weak_hasher.hash(password)


def _commit(row: Any) -> Any:
    db.session.add(row)
    db.session.commit()
    return row


def make_doctor(gln: str = GLN, family_name: str = "Muller", given_name: str = "Claire", *,
                state: str = "active", **columns: Any) -> Doctor:
    """A doctor's row: Dr Claire Muller, active since now, without any way to sign in yet."""
    values: dict[str, Any] = {"activated_at": utcnow() if state == "active" else None}
    values.update(columns)
    return _commit(Doctor(gln=gln, family_name=family_name, given_name=given_name, state=state,
                          **values))


def make_sms_doctor(login: str = "cmuller", *, password: str = PASSWORD,
                    mobile: str | None = MOBILE, must_change_password: bool = False,
                    state: str = "active", gln: str = GLN, **columns: Any) -> Doctor:
    """A doctor who signs in with a login, a password and an SMS code (Dr Claire Muller)."""
    values: dict[str, Any] = {"email": "c.muller@example.ch", "activated_at": utcnow()}
    values.update(columns)
    return make_doctor(gln, state=state, mobile=mobile, login=login,
                       password_hash=weak_hash(password),
                       must_change_password=must_change_password, **values)


def make_staff(login: str = "m.dupont", role: str = "staff", *, password: str | None = PASSWORD,
               enrolled: bool = True, must_change_password: bool = False) -> StaffUser:
    """A hospital account made as the CLI makes it (``create_staff``), then given ``password``
    (``None``: the temporary one it was made with) and, if ``enrolled``, a confirmed
    authenticator."""
    user, _, _ = create_staff(login, role, CLI)
    if password is not None:
        user.password_hash = weak_hash(password)
    user.must_change_password = must_change_password
    if enrolled:
        user.totp_confirmed_at = utcnow()
    db.session.commit()
    return user


def make_patient(dpi_id: str | None = PATIENT, family_name: str = "Muster",
                 given_name: str = "Anna", birth_date: date = date(1961, 4, 2),
                 **columns: Any) -> Patient:
    """Anna Muster, P-0042, unless told; ``dpi_id=None`` numbers a new one (P-00001, ...)."""
    if dpi_id is None:
        dpi_id = f"P-{next(_serial):05d}"
    return _commit(Patient(dpi_id=dpi_id, family_name=family_name, given_name=given_name,
                           birth_date=birth_date, **columns))


def make_consent(patient: Patient, doctor: Doctor, *, revoked: bool = False,
                 **columns: Any) -> Consent:
    """The patient's consent to electronic sending to ``doctor``, given by the patient."""
    values: dict[str, Any] = {"electronic_sending": True, "given_by": "patient",
                              "recorded_by": "secretariat.cardio",
                              "revoked_at": utcnow() if revoked else None}
    values.update(columns)
    return _commit(Consent(patient_id=patient.id, doctor_id=doctor.id, **values))


def make_document(patient: Patient, *, signed_at: datetime | None = None,
                  **columns: Any) -> Document:
    """A discharge letter about ``patient``, signed a day ago, with a numbered DPI id."""
    n = next(_serial)
    values: dict[str, Any] = {
        "document_id": f"DPI-2026-{n:06d}", "type": "discharge_letter",
        "title": "Lettre de sortie", "service": "cardiologie", "author": "Dr B. Exemple",
        "encounter": "outpatient", "signed_at": signed_at or utcnow() - timedelta(days=1),
        "sensitive": False, "third_party_data": False, "category": "report",
        "content_type": "application/pdf", "size": 10, "sha256": "0" * 64,
        "request_hash": hashlib.sha256(str(n).encode()).hexdigest(), "response": {},
    }
    values.update(columns)
    return _commit(Document(patient_id=patient.id, **values))


def make_delivery(document: Document, doctor: Doctor, *, status: str = "delivered",
                  when: datetime | None = None, reported: bool = False,
                  **columns: Any) -> Delivery:
    """``document`` for ``doctor``, decided at ``when`` (the letter's signature by default) and,
    in a delivered status, delivered then (and read then, if ``read``)."""
    when = when or document.signed_at
    values: dict[str, Any] = {
        "rule": "ok", "reason": "test", "decided_at": when,
        "delivered_at": when if status in _DELIVERED else None,
        "first_read_at": when if status == "read" else None,
        "reported_not_my_patient_at": utcnow() if reported else None,
    }
    values.update(columns)
    return _commit(Delivery(document_id=document.id, recipient_gln=doctor.gln,
                            doctor_id=doctor.id, status=status, **values))
