"""Mes documents' pages: the list, the viewer, the content, read/unread, "pas mon patient", ZIP.

The queries are in ``document_queries``, what the doctor does to a letter (audited) in
``document_actions``; this module reads the request, commits once and answers.
"""

from __future__ import annotations

import io
import re
import zipfile
from typing import Any

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from werkzeug.wrappers import Response as BaseResponse

from app.audit import record
from app.auth.session import current_principal, requires, signed_in
from app.dispatch.retention import retention_years
from app.extensions import db
from app.inbox.document_actions import mark_read, mark_unread, open_content, report_not_my_patient
from app.inbox.document_queries import (
    ZIP_LIMIT,
    Filters,
    filter_choices,
    list_page,
    load_delivery,
    unread_count,
    zip_deliveries,
)
from app.inbox.forms import BackToList, DocumentFilters, NotMyPatient, ZipSelection
from app.labels import type_label
from app.models import Delivery, Doctor
from app.models.base import ZURICH, utcnow
from app.states import Status
from app.web.origin import from_our_pages
from app.web.paths import local_path

bp = Blueprint("documents", __name__)


@bp.app_context_processor
def _unread_badge() -> dict[str, Any]:
    principal = signed_in()
    if principal is None or principal.role != "doctor":
        return {}
    return {"unread_documents": unread_count(principal.doctor)}


def parse_filters(doctor: Doctor) -> tuple[DocumentFilters, Filters]:
    """The filter bar as sent (drawn from the doctor's own letters), and the filters it names;
    400 when one does not parse."""
    form = DocumentFilters(view=doctor.documents_view)
    form.offer(filter_choices(doctor))
    if not form.validate():
        abort(400)
    return form, Filters(
        view=form.view.data,
        date_from=form.date_from.data,
        date_to=form.date_to.data,
        type=form.type.data or "",
        service=form.service.data or "",
        patient=form.patient.data,
        q=form.q.data or "",
    )


@bp.get("/documents")
@requires("doctor")
def index() -> str:
    doctor = current_principal().doctor
    form, filters = parse_filters(doctor)
    page = list_page(doctor, filters, request.args.get("after") or None)
    return render_template(
        "inbox/documents/list.html",
        page=page,
        filters=filters,
        form=form,
        back=BackToList(next=request.full_path),
        zip_form=ZipSelection(),
        type_label=type_label,
        first_page=bool(request.args.get("after")),
        zip_limit=ZIP_LIMIT,
    )


@bp.get("/documents/<bigint:delivery_id>")
@requires("doctor")
def viewer(delivery_id: int) -> str:
    delivery = load_delivery(current_principal().doctor, delivery_id, retracted=True)
    return render_template("inbox/documents/viewer.html", delivery=delivery,
                           document=delivery.document, patient=delivery.document.patient,
                           type_label=type_label,
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
    target = local_path(BackToList().next.data)
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
    return render_template("inbox/documents/not_my_patient.html", delivery=delivery,
                           document=delivery.document, patient=delivery.document.patient,
                           form=NotMyPatient())


@bp.post("/documents/<bigint:delivery_id>/not-my-patient")
@requires("doctor")
def not_my_patient(delivery_id: int) -> BaseResponse:
    principal = current_principal()
    delivery = load_delivery(principal.doctor, delivery_id)
    report_not_my_patient(delivery, principal.actor)
    db.session.commit()
    flash(_("Merci : l'hôpital a été informé que ce patient n'est pas le vôtre."), "info")
    return redirect(url_for("documents.index"), code=303)


@bp.post("/documents/zip")
@requires("doctor")
def download_zip() -> Response:
    principal = current_principal()
    ids = ZipSelection().chosen()
    if ids is None:
        abort(400)
    if len(ids) > ZIP_LIMIT:
        abort(413)
    deliveries = zip_deliveries(principal.doctor, ids)
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
