"""The staff worklist (/staff/worklist): deliveries blocked, cancelled or "pas mon patient".

Hospital staff (and the desk) see the letters that reached no doctor, or the wrong one, so that
each goes by post or to the right doctor: "envoyé par la poste", "envoyer au bon médecin" (a new
delivery decided by the dispatch policy), "réexaminer" (the policy again, e.g. after a consent
was recorded) or "aucune action" with a note. The operations live in ``app.dispatch.handling``;
this module parses, authorises, calls them and commits once per request.

Staff see the letter's metadata and the patient's identity (name, birth date, DPI id), never the
letter's content.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import ColumnElement, Select, and_, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import contains_eager
from werkzeug.wrappers import Response as BaseResponse

from app.auth.session import current_principal, requires
from app.dispatch import handling
from app.extensions import db
from app.labels import RULE_LABELS, STATUS_LABELS, type_label
from app.models import Delivery, Doctor, Document, Patient
from app.models.base import zurich_midnight
from app.staff import duties
from app.staff.forms import ButtonForm
from app.staff.worklist_forms import NoActionForm, RedirectForm, WorklistFilterForm
from app.states import NEEDS_A_PERSON
from app.web.listing import date_arg, decode_cursor, encode_cursor

bp = Blueprint("worklist", __name__, url_prefix="/staff/worklist")

PAGE_SIZE = 25

KINDS = ("blocked", "cancelled", "reported")
STATES = ("open", "handled")

KIND_LABELS: dict[str, Any] = {
    "blocked": _l("Bloqués"),
    "cancelled": _l("Annulés"),
    "reported": _l("« Pas mon patient »"),
}

HANDLING_LABELS: dict[str, Any] = {
    handling.HANDLED_BY_POST: _l("Envoyé par la poste"),
    handling.HANDLED_BY_OTHER_DOCTOR: _l("Envoyé au bon médecin"),
    handling.HANDLED_NO_ACTION: _l("Aucune action"),
    handling.HANDLED_BY_RECHECK: _l("Réexaminé"),
}

REFUSALS: dict[str, Any] = {
    handling.ALREADY_HANDLED: _l("Cette remise a déjà été traitée."),
    handling.NOT_ON_WORKLIST: _l("Cette remise n'est pas à traiter."),
    handling.DOCUMENT_RETRACTED: _l("Le document a été retiré par l'hôpital : il n'est plus "
                                   "envoyé."),
    handling.NOT_CONSENTED: _l("Choisissez un médecin que le patient a désigné et qui a son "
                              "consentement à l'envoi électronique."),
    handling.ALREADY_RECEIVED: _l("Ce médecin a déjà une remise de ce document."),
    handling.NOTE_REQUIRED: _l("Indiquez pourquoi aucune action n'est nécessaire."),
    handling.NOTE_TOO_LONG: _l("La note compte 500 caractères au plus."),
    handling.STILL_BLOCKED: _l("Les règles d'envoi refusent toujours ce document : rien n'a "
                              "changé."),
}
#: Separation of duties (app/staff/duties.py).
DUTY_REFUSED = _l("Vous avez inscrit ce médecin au guichet ou modifié sa connexion : vous ne "
                  "pouvez pas lui adresser ce document. Demandez à un collègue de le faire.")


@bp.app_template_global()
def worklist_labels() -> dict[str, Any]:
    return {"kinds": KIND_LABELS, "statuses": STATUS_LABELS, "rules": RULE_LABELS,
            "handlings": HANDLING_LABELS}


# --- the list -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Filters:
    kind: str
    service: str
    date_from: date | None
    date_to: date | None
    state: str

    def args(self) -> dict[str, str]:
        values = {
            "kind": self.kind,
            "service": self.service,
            "from": self.date_from.isoformat() if self.date_from else "",
            "to": self.date_to.isoformat() if self.date_to else "",
            "state": self.state if self.state != "open" else "",
        }
        return {k: v for k, v in values.items() if v}


def parse_filters() -> Filters:
    kind = request.args.get("kind", "").strip()
    state = request.args.get("state", "open").strip() or "open"
    if (kind and kind not in KINDS) or state not in STATES:
        abort(400)
    return Filters(kind=kind, service=request.args.get("service", "").strip()[:64],
                   date_from=date_arg("from"), date_to=date_arg("to"), state=state)


def _needs_a_person() -> ColumnElement[bool]:
    return or_(Delivery.status.in_(NEEDS_A_PERSON),
               Delivery.reported_not_my_patient_at.is_not(None))


def _kind(kind: str) -> ColumnElement[bool]:
    if kind == "reported":
        return Delivery.reported_not_my_patient_at.is_not(None)
    return Delivery.status == kind


def conditions(filters: Filters) -> list[ColumnElement[bool]]:
    # A handled delivery was on the worklist when it was handled; a re-examined one has left the
    # blocked and cancelled statuses since, so the handled view does not ask for them.
    if filters.state == "open":
        found = [Delivery.handled_at.is_(None), _needs_a_person()]
    else:
        found = [Delivery.handled_at.is_not(None)]
    if filters.kind:
        found.append(_kind(filters.kind))
    if filters.service:
        found.append(Document.service == filters.service)
    if filters.date_from:
        found.append(Document.received_at >= zurich_midnight(filters.date_from))
    if filters.date_to:
        found.append(Document.received_at < zurich_midnight(filters.date_to + timedelta(days=1)))
    return found


def _joined() -> Select[tuple[Delivery]]:
    """Deliveries with their document, patient and recipient doctor, in one query."""
    return (
        select(Delivery)
        .join(Document, Document.id == Delivery.document_id)
        .join(Patient, Patient.id == Document.patient_id)
        .outerjoin(Doctor, Doctor.id == Delivery.doctor_id)
        .options(contains_eager(Delivery.document).contains_eager(Document.patient),
                 contains_eager(Delivery.doctor))
    )


@dataclass(frozen=True)
class Page:
    deliveries: list[Delivery]
    next_cursor: str | None


def list_page(filters: Filters, after: str | None, size: int = PAGE_SIZE) -> Page:
    """One page, newest letter first, by keyset (received_at, delivery id): one query."""
    query = _joined().where(*conditions(filters))
    if after:
        when, last_id = decode_cursor(after)
        query = query.where(or_(
            Document.received_at < when,
            and_(Document.received_at == when, Delivery.id < last_id),
        ))
    rows = list(db.session.scalars(
        query.order_by(Document.received_at.desc(), Delivery.id.desc()).limit(size + 1)
    ))
    more = len(rows) > size
    rows = rows[:size]
    last = rows[-1] if more and rows else None
    return Page(rows, encode_cursor(last.document.received_at, last.id) if last else None)


def services_present() -> list[str]:
    """The services of the letters ever on the worklist (open or handled), for the filter."""
    return list(db.session.scalars(
        select(Document.service).distinct()
        .join(Delivery, Delivery.document_id == Document.id)
        .where(or_(_needs_a_person(), Delivery.handled_at.is_not(None)))
        .order_by(Document.service)
    ))


@bp.get("")
@requires("staff", "desk")
def index() -> str:
    filters = parse_filters()
    after = request.args.get("after") or None
    form = WorklistFilterForm()
    form.offer(KIND_LABELS, services_present())
    form.fill(filters.state, filters.kind, filters.service,
              (filters.date_from.isoformat() if filters.date_from else "",
               filters.date_to.isoformat() if filters.date_to else ""))
    return render_template(
        "staff/worklist/index.html", page=list_page(filters, after), filters=filters,
        form=form, type_label=type_label, first_page=bool(after),
    )


# --- one delivery ---------------------------------------------------------------------------------


def load(delivery_id: int) -> Delivery:
    """A delivery that is, or was, on the worklist; else 404."""
    delivery = db.session.scalar(
        _joined().where(Delivery.id == delivery_id,
                        or_(_needs_a_person(), Delivery.handled_at.is_not(None)))
    )
    if delivery is None:
        abort(404)
    return delivery


def _render(delivery: Delivery, no_action: NoActionForm | None = None, status: int = 200
            ) -> tuple[str, int]:
    is_open = delivery.handled_at is None and handling.on_worklist(delivery)
    candidates = handling.redirect_candidates(delivery) if is_open else []
    others = {d.recipient_gln for d in delivery.document.deliveries}
    redirect_form = RedirectForm(formdata=None)
    redirect_form.offer(candidates, others, str(_("a déjà ce document")))
    return render_template(
        "staff/worklist/show.html", delivery=delivery, document=delivery.document,
        patient=delivery.document.patient, type_label=type_label, is_open=is_open,
        candidates=candidates, already=others,
        may_recheck=is_open and delivery.status in NEEDS_A_PERSON,
        retracted=delivery.document.retracted_at is not None,
        handling_form=ButtonForm(formdata=None), redirect_form=redirect_form,
        no_action_form=no_action or NoActionForm(formdata=None),
        note_max=handling.HANDLING_NOTE_MAX,
    ), status


@bp.get("/<bigint:delivery_id>")
@requires("staff", "desk")
def show(delivery_id: int) -> tuple[str, int]:
    return _render(load(delivery_id))


def _back(delivery_id: int) -> BaseResponse:
    return redirect(url_for("worklist.show", delivery_id=delivery_id), code=303)


def _refused(delivery_id: int, refusal: handling.HandlingRefused) -> BaseResponse:
    db.session.rollback()
    flash(str(REFUSALS[refusal.code]), "error")
    return _back(delivery_id)


@bp.post("/<bigint:delivery_id>/post")
@requires("staff", "desk")
def posted(delivery_id: int) -> BaseResponse:
    delivery = load(delivery_id)
    try:
        handling.mark_handled(delivery, handling.HANDLED_BY_POST, current_principal().actor)
    except handling.HandlingRefused as refusal:
        return _refused(delivery_id, refusal)
    db.session.commit()
    flash(_("Remise traitée : le document a été envoyé par la poste."), "info")
    return redirect(url_for("worklist.index"), code=303)


@bp.post("/<bigint:delivery_id>/no-action")
@requires("staff", "desk")
def no_action(delivery_id: int) -> tuple[str, int] | BaseResponse:
    delivery = load(delivery_id)
    form = NoActionForm()
    try:
        handling.mark_handled(delivery, handling.HANDLED_NO_ACTION, current_principal().actor,
                             form.text)
    except handling.HandlingRefused as refusal:
        if refusal.code in (handling.NOTE_REQUIRED, handling.NOTE_TOO_LONG):
            db.session.rollback()
            form.note.errors = [str(REFUSALS[refusal.code])]
            return _render(load(delivery_id), form, 422)
        return _refused(delivery_id, refusal)
    db.session.commit()
    flash(_("Remise traitée : aucune action."), "info")
    return redirect(url_for("worklist.index"), code=303)


@bp.post("/<bigint:delivery_id>/redirect")
@requires("staff", "desk")
def redirect_to_doctor(delivery_id: int) -> BaseResponse:
    delivery = load(delivery_id)
    gln = str(RedirectForm().gln.data or "")
    principal = current_principal()
    patient = delivery.document.patient.dpi_id
    try:
        new = handling.redirect_delivery(delivery, gln, principal.actor)
        status = new.status
        if new.doctor is not None:
            # Whoever set up this doctor's account never sends it a patient's letter.
            duties.claim(new.doctor, principal.staff, duties.LETTERS, "delivery.redirected")
    except handling.HandlingRefused as refusal:
        return _refused(delivery_id, refusal)
    except IntegrityError:
        # Someone sent this document to that doctor at the same moment.
        return _refused(delivery_id, handling.HandlingRefused(handling.ALREADY_RECEIVED))
    except duties.DutyConflict as conflict:
        db.session.rollback()
        duties.record_refusal(principal.actor, conflict, patient=patient)
        db.session.commit()
        flash(str(DUTY_REFUSED), "error")
        return _back(delivery_id)
    db.session.commit()
    flash(_("Remise traitée : document adressé au médecin choisi (%(status)s).",
            status=STATUS_LABELS[status]), "info")
    return redirect(url_for("worklist.index"), code=303)


@bp.post("/<bigint:delivery_id>/recheck")
@requires("staff", "desk")
def recheck(delivery_id: int) -> BaseResponse:
    delivery = load(delivery_id)
    try:
        decision = handling.recheck(delivery, current_principal().actor)
    except handling.HandlingRefused as refusal:
        return _refused(delivery_id, refusal)
    db.session.commit()
    flash(_("Remise réexaminée : %(status)s.", status=STATUS_LABELS[decision.status.value]),
          "info")
    return redirect(url_for("worklist.index"), code=303)
