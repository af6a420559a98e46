"""The staff's patient pages (``/staff/patients``): the search, the patient page (audited as
``patient.viewed``), recording and revoking a consent, and registering a patient the DPI has not
sent yet."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from werkzeug.wrappers import Response as BaseResponse

from app.audit import record
from app.auth.session import current_principal, requires
from app.dispatch.consent import revoke_consent
from app.dispatch.validation import PATIENT_ID_MAX, is_valid_id
from app.extensions import db
from app.gln import is_valid_gln
from app.labels import RULE_LABELS, STATUS_LABELS, type_label
from app.models import Patient
from app.staff.forms import ButtonForm
from app.staff.patients.consents import (
    Recorded,
    apply_consent,
    check_consent_form,
)
from app.staff.patients.forms import (
    ConsentForm,
    NewPatientForm,
    PatientSearchForm,
    show_errors,
)
from app.staff.patients.messages import GIVEN_BY_LABELS, MESSAGES, REQUIREMENT_LABELS
from app.staff.patients.queries import (
    PatientSearch,
    age_today,
    consents_of,
    deliveries_of,
    patient_known,
    patient_or_404,
    requirement_today,
    search_patients,
    treating_consent,
)
from app.states import DoctorState
from app.web.origin import from_our_pages

bp = Blueprint("staff_patients", __name__, url_prefix="/staff/patients")

#: Deliveries shown at first, and added by each "more".
DELIVERIES_STEP = 50
DELIVERIES_MAX = 1000


@bp.app_template_global()
def staff_patient_labels() -> dict[str, Any]:
    return {"statuses": STATUS_LABELS, "rules": RULE_LABELS, "given_by": GIVEN_BY_LABELS,
            "requirements": REQUIREMENT_LABELS}


@bp.get("")
@requires("staff", "desk")
def index() -> tuple[str, int]:
    form = PatientSearchForm()
    q, birth_date, dpi_id = form.asked()
    if (q or birth_date or dpi_id) and not from_our_pages():
        # A search sent by another site (or a bookmark) is not run: it would put a search under
        # this person's name. The form comes back filled in, for them to run it themselves.
        unrun = PatientSearch(q=q, birth_date=birth_date, dpi_id=dpi_id)
        return render_template("staff/patients/index.html", form=form, found=unrun,
                               confirm=True), 200
    found = search_patients(q, birth_date, dpi_id)
    show_errors(form, found.errors)
    if found.asked and not found.errors:
        record(current_principal().actor, "patients.searched",
               details={"results": len(found.patients), "by": "dpi_id" if found.dpi_id
                        else "name"})
        db.session.commit()
    return render_template("staff/patients/index.html", form=form, found=found), (
        422 if found.errors else 200)


def _shown_deliveries() -> int:
    raw = request.args.get("shown", "")
    if raw.isascii() and raw.isdigit():  # not "²", which int() refuses
        return max(DELIVERIES_STEP, min(int(raw), DELIVERIES_MAX))
    return DELIVERIES_STEP


def render_patient(patient: Patient, form: ConsentForm | None = None, status: int = 200
                   ) -> tuple[str, int]:
    """The patient page, audited as an access to the patient's data (and committed)."""
    limit = _shown_deliveries()
    deliveries, more = deliveries_of(patient, limit)
    consents = consents_of(patient)
    record(current_principal().actor, "patient.viewed", target=f"patient:{patient.dpi_id}",
           patient=patient.dpi_id)
    db.session.commit()
    if form is None:
        gln = request.args.get("gln", "")
        form = ConsentForm(formdata=None, data={"gln": gln if is_valid_gln(gln) else "",
                                                "electronic_sending": "yes"})
    return render_template(
        "staff/patients/show.html", patient=patient, consents=consents, deliveries=deliveries,
        more=more, next_shown=min(limit + DELIVERIES_STEP, DELIVERIES_MAX),
        age=age_today(patient.birth_date), requirement=requirement_today(patient.birth_date),
        form=form, revoke_form=ButtonForm(formdata=None), type_label=type_label,
    ), status


@bp.get("/<dpi_id>")
@requires("staff", "desk")
def show(dpi_id: str) -> tuple[str, int]:
    patient = patient_or_404(dpi_id)
    if not from_our_pages():
        # Opened from another site, a mail or a bookmark: ask first, show nothing of the patient
        # and record nothing; the confirmation is a link of our own page, which records the view.
        return render_template("staff/patients/confirm.html", dpi_id=patient.dpi_id,
                               target=request.full_path.rstrip("?")), 200
    return render_patient(patient)


def _flash_recorded(recorded: Recorded) -> None:
    consent = recorded.consent
    if consent.electronic_sending:
        flash(_("Consentement enregistré pour %(name)s (GLN %(gln)s).",
                name=consent.doctor.display_name or consent.doctor.gln, gln=consent.doctor.gln),
              "success")
    else:
        flash(_("Médecin traitant désigné sans envoi électronique : aucun document ne lui sera "
                "envoyé par Relais."), "info")
    if recorded.known_state is None:
        flash(_("Aucun médecin avec ce GLN n'était connu de Relais : il a été ajouté en attente "
                "et ne recevra rien tant que son compte n'est pas activé (connexion HIN ou "
                "inscription au guichet)."), "warning")
    elif recorded.known_state != DoctorState.ACTIVE.value:
        flash(_("Le compte de ce médecin n'est pas actif : il ne recevra rien tant qu'il n'est "
                "pas activé."), "warning")


@bp.post("/<dpi_id>/consents")
@requires("staff", "desk")
def add_consent(dpi_id: str) -> tuple[str, int] | BaseResponse:
    patient = patient_or_404(dpi_id)
    form = ConsentForm()
    gln, data, errors = check_consent_form(form.values(), patient.family_name,
                                           patient.given_name, patient.birth_date.isoformat())
    outcome = apply_consent(patient.dpi_id, gln, data) if data and not errors else errors
    if not isinstance(outcome, Recorded):
        db.session.rollback()
        form.show_errors(outcome)
        return render_patient(patient_or_404(dpi_id), form, 422)
    db.session.commit()
    _flash_recorded(outcome)
    return redirect(url_for("staff_patients.show", dpi_id=patient.dpi_id), code=303)


@bp.post("/<dpi_id>/consents/<gln>/revoke")
@requires("staff", "desk")
def revoke(dpi_id: str, gln: str) -> BaseResponse:
    patient = patient_or_404(dpi_id)
    if not is_valid_gln(gln):
        abort(404)
    consent = treating_consent(patient, gln)
    if consent is None:
        abort(404)
    if not consent.active:
        flash(_("Ce consentement était déjà révoqué."), "info")
        return redirect(url_for("staff_patients.show", dpi_id=patient.dpi_id), code=303)
    revoke_consent(patient.dpi_id, gln, current_principal().actor)
    db.session.commit()
    flash(_("Consentement révoqué : les documents encore retenus pour ce médecin sont annulés ; "
            "ceux déjà remis restent chez lui."), "success")
    return redirect(url_for("staff_patients.show", dpi_id=patient.dpi_id), code=303)


# --- a patient not yet known to Relais -------------------------------------------------------


def _render_new(form: NewPatientForm, status: int = 200) -> tuple[str, int]:
    return render_template("staff/patients/new.html", form=form), status


@bp.route("/new", methods=["GET", "POST"])
@requires("staff", "desk")
def new() -> tuple[str, int] | BaseResponse:
    """Register a patient the DPI has not sent yet, with the consent that makes it known."""
    if request.method == "GET":
        # Filled in from a link (the worklist's "register this patient"), what is valid only.
        form = NewPatientForm(formdata=request.args)
        if not is_valid_id(form.dpi_id.data or "", PATIENT_ID_MAX):
            form.dpi_id.data = ""
        if not is_valid_gln(form.gln.data or ""):
            form.gln.data = ""
        form.electronic_sending.data = form.electronic_sending.data or "yes"
        return _render_new(form)
    form = NewPatientForm()
    values = form.values()
    dpi_id = values["dpi_id"].strip()
    errors: dict[str, str] = {}
    if not dpi_id:
        errors["dpi_id"] = str(MESSAGES["required"])
    elif not is_valid_id(dpi_id, PATIENT_ID_MAX):
        errors["dpi_id"] = str(MESSAGES["dpi_id"])
    else:
        if patient_known(dpi_id):
            flash(_("Ce patient est déjà connu de Relais : son identité n'a pas été modifiée. "
                    "Enregistrez le consentement depuis sa page."), "info")
            return redirect(url_for("staff_patients.show", dpi_id=dpi_id), code=303)
    family, given = values["family_name"].strip(), values["given_name"].strip()
    gln, data, consent_errors = check_consent_form(values, family, given,
                                                   values["birth_date"].strip())
    errors = {**consent_errors, **errors}
    outcome: Recorded | dict[str, str] = errors
    if data is not None and not errors:
        outcome = apply_consent(dpi_id, gln, data)
    if isinstance(outcome, Recorded):
        record(current_principal().actor, "patient.registered", target=f"patient:{dpi_id}",
               patient=dpi_id)
        db.session.commit()
        flash(_("Patient enregistré dans Relais."), "success")
        _flash_recorded(outcome)
        return redirect(url_for("staff_patients.show", dpi_id=dpi_id), code=303)
    db.session.rollback()
    form.show_errors(outcome)
    return _render_new(form, 422)
