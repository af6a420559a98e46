"""Mes patients' pages: the list (a view, a search, keyset pages) and a patient's page."""

from __future__ import annotations

from flask import Blueprint, abort, render_template, request

from app.auth.session import current_principal, requires
from app.inbox.forms import PatientFilters
from app.inbox.patient_queries import VIEWS, documents_of, list_patients, patient_of
from app.labels import type_label
from app.web.listing import row_id

bp = Blueprint("patients", __name__)


@bp.get("/patients")
@requires("doctor")
def index() -> str:
    doctor = current_principal().doctor
    form = PatientFilters()
    form.validate()  # nothing refused: an unknown view falls back, a long search is cut
    view = form.view.data
    if view not in VIEWS:
        view = doctor.patients_view if doctor.patients_view in VIEWS else "all"
    search = form.q.data or ""
    after = row_id(request.args.get("after"))
    page = list_patients(doctor, view=view, search=search, after=after)
    return render_template(
        "inbox/patients/index.html",
        page=page,
        view=view,
        views=VIEWS,
        search=search,
        form=form,
        after=after,
        recent_months=doctor.patients_recent_months,
    )


@bp.get("/patients/<int:patient_id>")
@requires("doctor")
def show(patient_id: int) -> str:
    doctor = current_principal().doctor
    found = patient_of(doctor, patient_id)
    if found is None:
        abort(404)  # never named this doctor, or no such patient: the same answer
    patient, revoked = found
    return render_template(
        "inbox/patients/show.html",
        patient=patient,
        revoked=revoked,
        documents=documents_of(doctor, patient),
        type_label=type_label,
    )

