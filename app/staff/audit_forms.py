"""The audit viewer's filter bar (Flask-WTF): time, actor, patient, document and action.

The filters are parsed and checked by ``app/audit/queries.py`` (``parse_filters``), which the
exports use too; the form draws the fields, shows each value as its field takes it
(:meth:`AuditFilterForm.fill`) and each refusal on its field.
"""

from __future__ import annotations

from collections.abc import Mapping

from flask_babel import lazy_gettext as _l
from wtforms import StringField

from app.audit.queries import MAX_LENGTHS, AuditFilters
from app.web.forms import QueryForm


def _filter(name: str, label: object, kind: str = "text", **attrs: object) -> StringField:
    """A filter field: its URL name as today (``from``, ``to`` ...), its id prefixed."""
    return StringField(label, name=name, id=f"audit-{name}",
                       render_kw={"type": kind, "maxlength": MAX_LENGTHS[name],
                                  "autocomplete": "off", **attrs})


class AuditFilterForm(QueryForm):
    """The filters of the trail, named in the URL as the exports and the pager name them."""

    start = _filter("from", _l("Depuis le"), "datetime-local")
    end = _filter("to", _l("Jusqu'au"), "datetime-local")
    actor = _filter("actor", _l("Acteur"))
    patient = _filter("patient", _l("Patient (ID DPI)"))
    document = _filter("document", _l("Document (ID DPI)"))
    action = _filter("action", _l("Action"), list="audit-actions")

    def fill(self, filters: AuditFilters, errors: Mapping[str, str]) -> None:
        """Each field as the filters show it (a day in a day-and-time field), with its error."""
        for field in self:
            if field.name in MAX_LENGTHS:
                field.data = filters.shown(field.name)
                if field.name in errors:
                    field.errors = [errors[field.name]]
