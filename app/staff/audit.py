"""The audit viewer for the desk (/staff/audit): filters, CSV and FHIR exports, chain state.

The page filters the trail by time (typed in Europe/Zurich), actor, patient (DPI id), document
(DPI id) and action, newest first by keyset on the event id. The chain's state is the latest
``audit.verified`` event (written by ``flask audit verify`` or by the page's button): walking the
whole chain at every view would cost too much on a big trail. Both exports carry the current
filters and are themselves audited (``audit.exported``). Staff never see document content here:
the trail holds none.
"""

from __future__ import annotations

from collections.abc import Iterator

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import format_number
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from werkzeug.wrappers import Response as BaseResponse

from app.audit import queries, record
from app.audit.csv_export import csv_lines
from app.audit.fhir import bundle_chunks
from app.audit.queries import (
    INVALID_CURSOR,
    INVALID_TEXT,
    INVALID_TIME,
    TIME_ORDER,
    TOO_LONG,
    AuditFilters,
    actions_present,
    compact,
    events_page,
    export_count,
    export_rows,
    last_event_id,
    latest_verification,
    parse_filters,
)
from app.audit.trail import check_chain, record_verification
from app.auth.session import current_principal, requires
from app.extensions import db
from app.models.base import utcnow
from app.staff.audit_forms import AuditFilterForm
from app.staff.forms import ButtonForm
from app.web.origin import from_our_pages

bp = Blueprint("audit_viewer", __name__, url_prefix="/staff/audit")

ERRORS = {
    TOO_LONG: _l("Trop long."),
    INVALID_TEXT: _l("Caractères de contrôle non admis."),
    INVALID_TIME: _l("Date non valable : AAAA-MM-JJ, avec l'heure si besoin (AAAA-MM-JJTHH:MM)."),
    TIME_ORDER: _l("La fin doit venir après le début."),
    INVALID_CURSOR: _l("Page non valable : revenez à la première page."),
}

#: Content types and file name endings of the exports.
FORMATS = {"csv": ("text/csv; charset=utf-8", "csv"),
           "fhir": ("application/fhir+json; charset=utf-8", "json")}


def _filters_or_400() -> AuditFilters:
    filters, errors = parse_filters(request.args)
    if errors:
        abort(400)
    return filters


@bp.get("")
@requires("desk")
def index() -> tuple[str, int]:
    filters, errors = parse_filters(request.args)
    messages = {name: str(ERRORS[code]) for name, code in errors.items()}
    form = AuditFilterForm()
    form.fill(filters, messages)
    page = None
    if not errors:
        before = int(filters.raw["before"]) if filters.raw["before"] else None
        page = events_page(filters, before)
    last_id = last_event_id()
    verification = latest_verification()
    return render_template(
        "staff/audit/index.html",
        filters=filters,
        form=form,
        errors=messages,
        page=page,
        actions=actions_present(),
        verification=verification,
        added_since=last_id - verification.id if verification else last_id,
        compact=compact,
        export_limit=format_number(queries.EXPORT_LIMIT),
        first_page=bool(filters.raw["before"]),
        button_form=ButtonForm(formdata=None),
    ), 400 if errors else 200


@bp.post("/verify")
@requires("desk")
def verify_now() -> BaseResponse:
    """Walk the chain now and record the result, like ``flask audit verify``."""
    result = check_chain()
    record_verification(current_principal().actor, result)
    db.session.commit()
    if result.broken is None:
        flash(_("La chaîne d'audit est intacte jusqu'à l'événement %(id)d.", id=result.through),
              "info")
    else:
        flash(_("La chaîne d'audit est ROMPUE : %(problem)s", problem=str(result.broken)),
              "error")
    return redirect(url_for("audit_viewer.index"), code=303)


def _export_as(kind: str) -> BaseResponse:
    filters = _filters_or_400()
    if not from_our_pages():
        # An export is recorded under the desk person's name: only their own click on the
        # viewer's button makes one, never a link from elsewhere. Back to the same filters.
        query = request.query_string.decode("ascii", "replace")
        return redirect(url_for("audit_viewer.index") + (f"?{query}" if query else ""), code=303)
    through = last_event_id()
    count = export_count(filters, through)
    record(current_principal().actor, "audit.exported", target="audit:trail",
           patient=filters.patient or None,
           details={"format": kind, "count": count, "through": through,
                    "capped": count >= queries.EXPORT_LIMIT, "filters": filters.described()})
    db.session.commit()
    now = utcnow()
    # Streamed: each batch is read in an application context of its own (see export_rows).
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    rows = export_rows(filters, through, app=app)
    chunks: Iterator[str] = csv_lines(rows) if kind == "csv" else bundle_chunks(rows, now)
    mimetype, ending = FORMATS[kind]
    response = Response(chunks, content_type=mimetype)
    name = f"relais-audit-{now.strftime('%Y%m%dT%H%M%SZ')}.{ending}"
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@bp.get("/export.csv")
@requires("desk")
def export_csv() -> BaseResponse:
    return _export_as("csv")


@bp.get("/export.json")
@requires("desk")
def export_fhir() -> BaseResponse:
    return _export_as("fhir")
