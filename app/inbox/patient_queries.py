"""Mes patients' queries: the patients whose consent names the signed-in doctor, and each one's
letters.

Every query is scoped by the doctor: a patient whose consent never named this doctor answers
404, exactly as an id that does not exist. A revoked consent keeps the patient in the list,
marked as revoked, with the letters already delivered.

A document is *visible* to the doctor when its delivery is ``delivered`` or ``read`` and the
doctor has not reported it as "pas mon patient"; it is *unread* while its status is
``delivered`` (marking a letter unread again puts it back there).
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, and_, case, func, or_, select

from app.extensions import db
from app.models import Consent, Delivery, Doctor, Document, Patient
from app.models.base import utcnow
from app.states import Status

#: The patients views of Mon profil (c).
VIEWS = ("all", "recent", "unread")
#: Patients per page; the next page starts after the last one shown (keyset).
PAGE_SIZE = 50
#: Longest search text taken into account.
SEARCH_MAX = 100

@dataclass(frozen=True)
class PatientRow:
    """One line of Mes patients."""

    id: int
    family_name: str
    given_name: str
    birth_date: date
    revoked: bool
    documents: int
    unread: int
    last_document_at: datetime | None


@dataclass(frozen=True)
class PatientPage:
    rows: list[PatientRow]
    #: The patient id to continue after, when there is a next page.
    next_after: int | None


@dataclass(frozen=True)
class DocumentRow:
    """One of the doctor's visible documents about a patient."""

    delivery_id: int
    title: str
    type: str
    service: str
    signed_at: datetime
    delivered_at: datetime | None
    unread: bool


def months_before(moment: datetime, months: int) -> datetime:
    """The same day and time ``months`` calendar months earlier (clamped to the month's end)."""
    index = moment.year * 12 + moment.month - 1 - months
    year, month = divmod(index, 12)
    day = min(moment.day, calendar.monthrange(year, month + 1)[1])
    return moment.replace(year=year, month=month + 1, day=day)


def _visible(doctor: Doctor) -> ColumnElement[bool]:
    return cast(ColumnElement[bool], Delivery.visible_to(doctor.id))


def _any_active() -> ColumnElement[Any]:
    """1 when one of the patient's consents naming the doctor is active (``Consent.active``):
    a patient who named the doctor under several designations counts as revoked only when
    none of them is still active."""
    return func.max(case((Consent.active, 1), else_=0))


def _search_terms(search: str) -> list[str]:
    return [term for term in search[:SEARCH_MAX].lower().split() if term][:5]


def list_patients(
    doctor: Doctor,
    *,
    view: str = "all",
    search: str = "",
    after: int | None = None,
    now: datetime | None = None,
    limit: int = PAGE_SIZE,
) -> PatientPage:
    """One page of the doctor's patients, sorted by family name: one SQL statement.

    ``after`` is a patient id of the previous page's last line; it counts only when that
    patient is one of this doctor's (else the page is empty), so that it reveals nothing.
    """
    if view not in VIEWS:
        raise ValueError(f"view must be among {VIEWS}")
    # The doctor's documents per patient, counted in the database.
    counts = (
        select(
            Document.patient_id.label("patient_id"),
            func.count(Delivery.id).label("documents"),
            func.sum(case((Delivery.status == Status.DELIVERED.value, 1), else_=0)).label("unread"),
            func.max(Delivery.delivered_at).label("last_at"),
        )
        .join(Delivery, Delivery.document_id == Document.id)
        .where(_visible(doctor))
        .group_by(Document.patient_id)
        .subquery("counts")
    )
    # One line per patient even if a patient named the doctor under several designations;
    # the consent counts as revoked only when none of them is still active.
    consents = (
        select(
            Consent.patient_id.label("patient_id"),
            _any_active().label("active"),
        )
        .where(Consent.doctor_id == doctor.id)
        .group_by(Consent.patient_id)
        .subquery("named")
    )
    family = func.lower(Patient.family_name)
    given = func.lower(Patient.given_name)
    documents = func.coalesce(counts.c.documents, 0)
    unread = func.coalesce(counts.c.unread, 0)
    query = (
        select(
            Patient.id,
            Patient.family_name,
            Patient.given_name,
            Patient.birth_date,
            consents.c.active,
            documents.label("documents"),
            unread.label("unread"),
            counts.c.last_at,
        )
        .join(consents, consents.c.patient_id == Patient.id)
        .outerjoin(counts, counts.c.patient_id == Patient.id)
    )
    if view == "unread":
        query = query.where(unread > 0)
    elif view == "recent":
        cutoff = months_before(now or utcnow(), doctor.patients_recent_months)
        query = query.where(counts.c.last_at >= cutoff)
    for term in _search_terms(search):
        query = query.where(
            or_(family.contains(term, autoescape=True), given.contains(term, autoescape=True))
        )
    if after is not None:
        query = query.where(_after(doctor, after, family, given))
    query = query.order_by(family, given, Patient.id).limit(limit + 1)

    rows = [
        PatientRow(
            id=row.id,
            family_name=row.family_name,
            given_name=row.given_name,
            birth_date=row.birth_date,
            revoked=not row.active,
            documents=int(row.documents),
            unread=int(row.unread),
            last_document_at=row.last_at,
        )
        for row in db.session.execute(query)
    ]
    next_after = rows[limit - 1].id if len(rows) > limit else None
    return PatientPage(rows=rows[:limit], next_after=next_after)


def _after(
    doctor: Doctor, after: int, family: ColumnElement[Any], given: ColumnElement[Any]
) -> ColumnElement[bool]:
    """Sorts after the patient ``after`` (one of the doctor's), inside the same statement."""
    cursor = (
        select(Patient)
        .join(Consent, Consent.patient_id == Patient.id)
        .where(Patient.id == after, Consent.doctor_id == doctor.id)
        .limit(1)
    )
    cursor_family = cursor.with_only_columns(func.lower(Patient.family_name)).scalar_subquery()
    cursor_given = cursor.with_only_columns(func.lower(Patient.given_name)).scalar_subquery()
    cursor_id = cursor.with_only_columns(Patient.id).scalar_subquery()
    return or_(
        family > cursor_family,
        and_(family == cursor_family, given > cursor_given),
        and_(family == cursor_family, given == cursor_given, Patient.id > cursor_id),
    )


def patient_of(doctor: Doctor, patient_id: int) -> tuple[Patient, bool] | None:
    """The patient and whether consent is revoked, if a consent ever named ``doctor``."""
    active = _any_active().label("active")
    row = db.session.execute(
        select(Patient, active)
        .join(Consent, Consent.patient_id == Patient.id)
        .where(Patient.id == patient_id, Consent.doctor_id == doctor.id)
        .group_by(Patient.id)
    ).first()
    if row is None:
        return None
    return row[0], not row[1]


def documents_of(doctor: Doctor, patient: Patient) -> list[DocumentRow]:
    """The doctor's visible documents about ``patient``, newest first."""
    rows = db.session.execute(
        select(
            Delivery.id,
            Delivery.status,
            Delivery.delivered_at,
            Document.title,
            Document.type,
            Document.service,
            Document.signed_at,
        )
        .join(Document, Delivery.document_id == Document.id)
        .where(_visible(doctor), Document.patient_id == patient.id)
        .order_by(Delivery.delivered_at.desc(), Delivery.id.desc())
    )
    return [
        DocumentRow(
            delivery_id=row.id,
            title=row.title,
            type=row.type,
            service=row.service,
            signed_at=row.signed_at,
            delivered_at=row.delivered_at,
            unread=row.status == Status.DELIVERED.value,
        )
        for row in rows
    ]
