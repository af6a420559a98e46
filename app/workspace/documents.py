"""Mes documents, the viewer, the content route, the ZIP download and "pas mon patient".

Every query is scoped by the signed-in doctor: an id that is not one of this doctor's visible
deliveries answers 404, exactly as an id that does not exist (held, blocked and cancelled
deliveries included: the doctor never learns that they exist).

What the doctor sees:

* *visible*: status ``delivered`` or ``read``, not reported as "pas mon patient";
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

import io
import re
import zipfile
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, NamedTuple

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import ColumnElement, Select, and_, func, or_, select
from sqlalchemy.orm import contains_eager
from werkzeug.wrappers import Response as BaseResponse

from app.audit import Actor, record
from app.auth.session import current_principal, requires, signed_in
from app.crypto import ContentIntegrityError
from app.dispatch import service
from app.dispatch.policy import VISIBLE_TO_DOCTOR, Status
from app.dispatch.retention import retention_years
from app.extensions import db
from app.models import Delivery, Doctor, Document, Patient
from app.models.base import ZURICH, contains_pattern, utcnow, zurich_midnight
from app.web.listing import BIGINT_ID_MAX, date_arg, decode_cursor, encode_cursor, row_id
from app.web.origin import from_our_pages
from app.web.paths import local_path

bp = Blueprint("documents", __name__)

PAGE_SIZE = 25
#: The most documents one ZIP may carry (memory: 50 × 20 MiB at most).
ZIP_LIMIT = 50

#: Labels of the DPI's document types; an unknown type is shown as sent.
TYPE_LABELS: dict[str, Any] = {
    "discharge_letter": _l("Lettre de sortie"),
    "consultation_report": _l("Rapport de consultation"),
    "operative_report": _l("Protocole opératoire"),
    "imaging_report": _l("Compte rendu d'imagerie"),
    "lab_report": _l("Résultats de laboratoire"),
    "referral_letter": _l("Lettre d'adressage"),
}


def type_label(code: str) -> str:
    return str(TYPE_LABELS.get(code, code))


# --- which deliveries a doctor may see ----------------------------------------------------------


def _owned(doctor: Doctor) -> ColumnElement[bool]:
    return and_(Delivery.doctor_id == doctor.id, Delivery.reported_not_my_patient_at.is_(None))


def _visible() -> ColumnElement[bool]:
    return Delivery.status.in_(VISIBLE_TO_DOCTOR)


def _retracted_after_delivery() -> ColumnElement[bool]:
    return and_(Delivery.status == Status.RETRACTED.value, Delivery.delivered_at.is_not(None))


def _joined() -> Select[tuple[Delivery]]:
    """Deliveries with their document and patient, in one query (no N+1)."""
    return (
        select(Delivery)
        .join(Document, Document.id == Delivery.document_id)
        .join(Patient, Patient.id == Document.patient_id)
        .options(contains_eager(Delivery.document).contains_eager(Document.patient))
    )


def load_delivery(doctor: Doctor, delivery_id: int, *, retracted: bool = False) -> Delivery:
    """This doctor's visible delivery (or retracted one, when asked), else 404."""
    shown = or_(_visible(), _retracted_after_delivery()) if retracted else _visible()
    delivery = db.session.scalar(
        _joined().where(Delivery.id == delivery_id, _owned(doctor), shown)
    )
    if delivery is None:
        abort(404)
    return delivery


def unread_count(doctor: Doctor) -> int:
    return db.session.scalar(
        select(func.count(Delivery.id)).where(
            _owned(doctor), Delivery.status == Status.DELIVERED.value
        )
    ) or 0


# --- operations (audited; the view commits) ---------------------------------------------------


def _audit(actor: Actor, action: str, delivery: Delivery, **details: Any) -> None:
    # The patient's DPI id goes in the event's own column, as everywhere in the trail; no name,
    # no birth date, no title in the details.
    document = delivery.document
    record(actor, action, target=f"document:{document.document_id}",
           patient=document.patient.dpi_id, details={"delivery": delivery.id, **details})


def open_content(delivery: Delivery, actor: Actor, *, action: str, via: str) -> bytes:
    """Decrypt and verify the letter, record the reading, audit the view or download."""
    document = delivery.document
    try:
        data = service.read_content(document)
    except service.NotFound:
        abort(410)
    except ContentIntegrityError:
        _audit(actor, "document.integrity_failed", delivery)
        db.session.commit()
        raise
    mark_read(delivery, actor, explicit=False)
    _audit(actor, action, delivery, via=via)
    return data


def mark_read(delivery: Delivery, actor: Actor, *, explicit: bool) -> None:
    """The first opening records ``first_read_at`` (the DPI then sees ``read``), once."""
    if delivery.first_read_at is None:
        service.mark_first_read(delivery.document, delivery.recipient_gln, actor)
    elif delivery.status == Status.DELIVERED.value:
        delivery.status = Status.READ.value
    else:
        return
    if explicit:
        _audit(actor, "delivery.marked_read", delivery)


def mark_unread(delivery: Delivery, actor: Actor) -> None:
    """Back in the doctor's unread list; ``first_read_at`` stays and the DPI still sees read."""
    if delivery.status != Status.READ.value:
        return
    delivery.status = Status.DELIVERED.value
    _audit(actor, "delivery.marked_unread", delivery)


def report_not_my_patient(delivery: Delivery, actor: Actor) -> None:
    """The doctor says the letter is about someone who is not their patient."""
    if delivery.reported_not_my_patient_at is not None:
        return
    delivery.reported_not_my_patient_at = utcnow()
    _audit(actor, "delivery.reported_not_my_patient", delivery)


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


def parse_filters(doctor: Doctor) -> Filters:
    view = request.args.get("view", doctor.documents_view)
    if view not in ("all", "unread"):
        abort(400)
    raw_patient = request.args.get("patient", "").strip()
    if raw_patient and row_id(raw_patient) is None:
        abort(400)
    return Filters(
        view=view,
        date_from=date_arg("from"),
        date_to=date_arg("to"),
        type=request.args.get("type", "").strip()[:64],
        service=request.args.get("service", "").strip()[:64],
        patient=int(raw_patient) if raw_patient else None,
        q=request.args.get("q", "").strip()[:200],
    )


def _conditions(doctor: Doctor, filters: Filters) -> list[ColumnElement[bool]]:
    shown = _visible() if filters.narrowing else or_(_visible(), _retracted_after_delivery())
    conditions = [_owned(doctor), shown]
    if filters.view == "unread":
        conditions.append(Delivery.status == Status.DELIVERED.value)
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
    query = _joined().where(*_conditions(doctor, filters))
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
        .where(_owned(doctor), _visible())
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


# --- views ------------------------------------------------------------------------------------


@bp.app_context_processor
def _unread_badge() -> dict[str, Any]:
    principal = signed_in()
    if principal is None or principal.role != "doctor":
        return {}
    return {"unread_documents": unread_count(principal.doctor)}


@bp.get("/documents")
@requires("doctor")
def index() -> str:
    doctor = current_principal().doctor
    filters = parse_filters(doctor)
    page = list_page(doctor, filters, request.args.get("after") or None)
    return render_template(
        "documents/list.html",
        page=page,
        filters=filters,
        choices=filter_choices(doctor),
        type_label=type_label,
        first_page=bool(request.args.get("after")),
        zip_limit=ZIP_LIMIT,
    )


@bp.get("/documents/<bigint:delivery_id>")
@requires("doctor")
def viewer(delivery_id: int) -> str:
    delivery = load_delivery(current_principal().doctor, delivery_id, retracted=True)
    return render_template("documents/viewer.html", delivery=delivery, document=delivery.document,
                           patient=delivery.document.patient, type_label=type_label,
                           retention_years=retention_years())


_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]+")


def _filename(delivery: Delivery) -> str:
    # The DPI's id only: a file name travels (downloads folder, mail) and carries no patient data.
    return _UNSAFE_FILENAME.sub("_", delivery.document.document_id)[:100] + ".pdf"


@bp.get("/documents/<bigint:delivery_id>/content")
@requires("doctor")
def content(delivery_id: int) -> BaseResponse:
    principal = current_principal()
    delivery = load_delivery(principal.doctor, delivery_id, retracted=True)
    if not from_our_pages():
        # A link from another site (or a bookmark) is not the doctor opening the letter: it
        # must not tell the DPI "read". The viewer shows it, and its download is ours.
        return redirect(url_for("documents.viewer", delivery_id=delivery.id), code=303)
    if delivery.status == Status.RETRACTED.value or delivery.document.purged_at is not None:
        abort(410)  # withdrawn, or its content deleted at the end of its retention
    download = request.args.get("download") == "1"
    data = open_content(delivery, principal.actor,
                        action="document.downloaded" if download else "document.viewed",
                        via="download" if download else "viewer")
    db.session.commit()
    response = Response(data, mimetype="application/pdf")
    # Always an attachment, even for the viewer: a letter's PDF may carry JavaScript, and opened
    # directly in a tab the browser's own PDF viewer would run it (Chromium's PDFium runs
    # app.alert even under the sandboxing CSP below). pdf.js fetches the bytes, ignores this
    # header, and draws the pages without ever running a script.
    response.headers["Content-Disposition"] = f'attachment; filename="{_filename(delivery)}"'
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "sandbox; default-src 'none'"
    return response


def _back_to_list() -> BaseResponse:
    """Back to the list as it was (filters, page); never anywhere else."""
    target = local_path(request.form.get("next"))
    return redirect(target if target.startswith("/documents") else "/documents", code=303)


@bp.post("/documents/<bigint:delivery_id>/read")
@requires("doctor")
def mark_as_read(delivery_id: int) -> BaseResponse:
    principal = current_principal()
    delivery = load_delivery(principal.doctor, delivery_id)
    mark_read(delivery, principal.actor, explicit=True)
    db.session.commit()
    return _back_to_list()


@bp.post("/documents/<bigint:delivery_id>/unread")
@requires("doctor")
def mark_as_unread(delivery_id: int) -> BaseResponse:
    principal = current_principal()
    delivery = load_delivery(principal.doctor, delivery_id)
    mark_unread(delivery, principal.actor)
    db.session.commit()
    return _back_to_list()


@bp.get("/documents/<bigint:delivery_id>/not-my-patient")
@requires("doctor")
def confirm_not_my_patient(delivery_id: int) -> str:
    delivery = load_delivery(current_principal().doctor, delivery_id)
    return render_template("documents/not_my_patient.html", delivery=delivery,
                           document=delivery.document, patient=delivery.document.patient)


@bp.post("/documents/<bigint:delivery_id>/not-my-patient")
@requires("doctor")
def not_my_patient(delivery_id: int) -> BaseResponse:
    principal = current_principal()
    delivery = load_delivery(principal.doctor, delivery_id)
    report_not_my_patient(delivery, principal.actor)
    db.session.commit()
    flash(_("Merci : l'hôpital a été informé que ce patient n'est pas le vôtre."), "info")
    return redirect("/documents", code=303)


@bp.post("/documents/zip")
@requires("doctor")
def download_zip() -> Response:
    principal = current_principal()
    raw_ids = request.form.getlist("ids")
    if not raw_ids or any(row_id(raw, BIGINT_ID_MAX) is None for raw in raw_ids):
        abort(400)
    ids = sorted({int(raw) for raw in raw_ids})
    if len(ids) > ZIP_LIMIT:
        abort(413)
    deliveries = list(db.session.scalars(
        _joined().where(Delivery.id.in_(ids), _owned(principal.doctor), _visible())
        .order_by(Delivery.delivered_at.desc(), Delivery.id.desc())
    ))
    if len(deliveries) != len(ids):
        abort(404)  # nothing partial: one id that is not this doctor's spoils the request
    if any(delivery.document.purged_at is not None for delivery in deliveries):
        # Nothing partial either: a letter whose content was purged cannot be in a ZIP (the list
        # offers no checkbox for it), and a ZIP silently missing one would mislead.
        abort(410)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for delivery in deliveries:
            data = open_content(delivery, principal.actor, action="document.downloaded",
                                via="zip")
            archive.writestr(f"{delivery.id}-{_filename(delivery)}", data)
    record(principal.actor, "documents.zip_downloaded", details={"documents": len(deliveries)})
    db.session.commit()
    stamp = utcnow().astimezone(ZURICH).strftime("%Y%m%d-%H%M")
    response = Response(buffer.getvalue(), mimetype="application/zip")
    response.headers["Content-Disposition"] = f'attachment; filename="relais-{stamp}.zip"'
    response.headers["Content-Security-Policy"] = "sandbox; default-src 'none'"
    return response
