"""Mes documents' queries: which deliveries the signed-in doctor sees, one page of them, the
filters' choices and the unread count.

Every query is scoped by the doctor: an id that is not one of this doctor's visible deliveries
answers 404, exactly as an id that does not exist (held, blocked and cancelled deliveries
included: the doctor never learns that they exist).

What the doctor sees:

* *visible*: ``Delivery.visible_to`` (status ``delivered`` or ``read``, not reported as "pas mon
  patient");
* *retracted*: a letter that reached the doctor and that the hospital then withdrew. It stays in
  the list as "retiré le …" with nothing else (no title, no patient, no content), so that the
  doctor who saw it arrive learns where it went; its content route answers 410 Gone;
* *purged*: a letter whose content was deleted at the end of its retention
  (``app/dispatch/retention.py``). Its metadata stays in the list and the viewer, with the reason;
  its content route and a ZIP that names it answer 410 Gone;
* *unread*: status ``delivered``. ``first_read_at`` records the first opening for the DPI and
  never changes afterwards; "marquer comme non lu" puts the status back to ``delivered`` while
  ``first_read_at`` stays, and the API keeps answering ``read`` for such a delivery
  (``app/dispatch/representations.py``). No new column is needed.

The ids in URLs are delivery ids: one per document and recipient, so they carry the owner.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, NamedTuple, cast

from flask import abort
from sqlalchemy import ColumnElement, Select, and_, func, or_, select
from sqlalchemy.orm import contains_eager

from app.extensions import db
from app.labels import type_label
from app.models import Delivery, Doctor, Document, Patient
from app.models.base import contains_pattern, zurich_midnight
from app.states import Status
from app.web.listing import decode_cursor, encode_cursor

PAGE_SIZE = 25
#: The most documents one ZIP may carry (memory: 50 × 20 MiB at most).
ZIP_LIMIT = 50
#: A delivery's status while it is unread, and once the hospital withdrew it.
UNREAD = Status.DELIVERED.value
RETRACTED = Status.RETRACTED.value


def _retracted_for(doctor: Doctor) -> ColumnElement[bool]:
    """This doctor's letters that reached them and were then withdrawn (not reported)."""
    return and_(Delivery.doctor_id == doctor.id, Delivery.reported_not_my_patient_at.is_(None),
                Delivery.status == RETRACTED, Delivery.delivered_at.is_not(None))


def shown_to(doctor: Doctor, *, retracted: bool = False) -> ColumnElement[bool]:
    """The deliveries of this doctor's lists: the visible ones, and the withdrawn ones if asked."""
    visible = cast(ColumnElement[bool], Delivery.visible_to(doctor.id))
    return or_(visible, _retracted_for(doctor)) if retracted else visible


def joined() -> Select[tuple[Delivery]]:
    """Deliveries with their document and patient, in one query (no N+1)."""
    return (
        select(Delivery)
        .join(Document, Document.id == Delivery.document_id)
        .join(Patient, Patient.id == Document.patient_id)
        .options(contains_eager(Delivery.document).contains_eager(Document.patient))
    )


def load_delivery(doctor: Doctor, delivery_id: int, *, retracted: bool = False) -> Delivery:
    """This doctor's visible delivery (or retracted one, when asked), else 404."""
    delivery = db.session.scalar(
        joined().where(Delivery.id == delivery_id, shown_to(doctor, retracted=retracted))
    )
    if delivery is None:
        abort(404)
    return delivery


def unread_count(doctor: Doctor) -> int:
    return db.session.scalar(
        select(func.count(Delivery.id)).where(
            Delivery.visible_to(doctor.id), Delivery.status == UNREAD
        )
    ) or 0


def zip_deliveries(doctor: Doctor, ids: list[int]) -> list[Delivery]:
    """The doctor's visible deliveries among ``ids``, newest first (fewer when one is not)."""
    return list(db.session.scalars(
        joined().where(Delivery.id.in_(ids), Delivery.visible_to(doctor.id))
        .order_by(Delivery.delivered_at.desc(), Delivery.id.desc())
    ))


# --- the list -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Filters:
    view: str
    date_from: date | None
    date_to: date | None
    type: str
    service: str
    patient: int | None
    q: str

    @property
    def narrowing(self) -> bool:
        """Filters that look at the letter itself: withdrawn letters never match them."""
        return bool(self.type or self.service or self.patient or self.q)

    def args(self) -> dict[str, str]:
        values = {
            "view": self.view,
            "from": self.date_from.isoformat() if self.date_from else "",
            "to": self.date_to.isoformat() if self.date_to else "",
            "type": self.type,
            "service": self.service,
            "patient": str(self.patient) if self.patient else "",
            "q": self.q,
        }
        return {k: v for k, v in values.items() if v}


def _conditions(doctor: Doctor, filters: Filters) -> list[ColumnElement[bool]]:
    conditions = [shown_to(doctor, retracted=not filters.narrowing)]
    if filters.view == "unread":
        conditions.append(Delivery.status == UNREAD)
    if filters.date_from:
        conditions.append(Delivery.delivered_at >= zurich_midnight(filters.date_from))
    if filters.date_to:
        conditions.append(
            Delivery.delivered_at < zurich_midnight(filters.date_to + timedelta(days=1))
        )
    if filters.type:
        conditions.append(Document.type == filters.type)
    if filters.service:
        conditions.append(Document.service == filters.service)
    if filters.patient:
        conditions.append(Document.patient_id == filters.patient)
    # Every word must be found in the patient's names or the title; lower() and LIKE behave
    # the same on SQLite and PostgreSQL (SQLite folds ASCII letters only).
    for term in filters.q.split()[:8]:
        pattern = contains_pattern(term.lower())
        conditions.append(or_(
            func.lower(Patient.family_name).like(pattern, escape="\\"),
            func.lower(Patient.given_name).like(pattern, escape="\\"),
            func.lower(Document.title).like(pattern, escape="\\"),
        ))
    return conditions


def _cursor(delivery: Delivery) -> str:
    assert delivery.delivered_at is not None  # noqa: S101 - visible deliveries were delivered
    return encode_cursor(delivery.delivered_at, delivery.id)


@dataclass(frozen=True)
class Page:
    deliveries: list[Delivery]
    next_cursor: str | None


def list_page(doctor: Doctor, filters: Filters, after: str | None,
              size: int = PAGE_SIZE) -> Page:
    """One page, newest first, by keyset (delivered_at, id): one query whatever the size."""
    query = joined().where(*_conditions(doctor, filters))
    if after:
        when, last_id = decode_cursor(after)
        query = query.where(or_(
            Delivery.delivered_at < when,
            and_(Delivery.delivered_at == when, Delivery.id < last_id),
        ))
    rows = list(db.session.scalars(
        query.order_by(Delivery.delivered_at.desc(), Delivery.id.desc()).limit(size + 1)
    ))
    more = len(rows) > size
    rows = rows[:size]
    return Page(rows, _cursor(rows[-1]) if more and rows else None)


class PatientChoice(NamedTuple):
    """A patient in the list's patient filter."""

    id: int
    family_name: str
    given_name: str
    birth_date: date


def filter_choices(doctor: Doctor) -> dict[str, list[Any]]:
    """The types, services and patients of this doctor's visible letters: one query.

    One pass over the doctor's letters (their distinct type, service and patient), sorted out
    here: three DISTINCT queries walked the same letters three times on every page.
    """
    rows = db.session.execute(
        select(Document.type, Document.service, Patient.id, Patient.family_name,
               Patient.given_name, Patient.birth_date)
        .join(Delivery, Delivery.document_id == Document.id)
        .join(Patient, Patient.id == Document.patient_id)
        .where(Delivery.visible_to(doctor.id))
        .distinct()
        # The patients in the database's collation, as the list shows names everywhere.
        .order_by(Patient.family_name, Patient.given_name, Patient.id, Document.type,
                  Document.service)
    ).all()
    types = sorted({row.type for row in rows})
    services = sorted({row.service for row in rows})
    patients = {row.id: PatientChoice(row.id, row.family_name, row.given_name, row.birth_date)
                for row in rows}
    return {
        "types": [(code, type_label(code)) for code in types],
        "services": services,
        "patients": list(patients.values()),
    }
