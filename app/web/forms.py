"""The base classes every form of Relais derives from (Flask-WTF / WTForms).

A page's form is a class beside its view, with its fields, validators and messages (French
first, translated by Flask-Babel). Templates draw it with the macros of
``templates/macros/forms.html``, so every field shows its label, hint and error the same way.

- ``PostForm``: a form that changes something. Its CSRF token comes from Flask-WTF, and the
  global ``CSRFProtect`` checks it before the view runs.
- ``QueryForm``: a GET form (search, filter bar). It reads ``request.args``, has no CSRF token
  (a GET never changes state: app/web/origin.py) and keeps field names short, as the URLs have
  them today.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

from flask import request
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from werkzeug.datastructures import MultiDict
from wtforms import Field, SelectField, SelectMultipleField
from wtforms.widgets import CheckboxInput, DateInput, ListWidget

from app.web.listing import EARLIEST_DAY, LATEST_DAY, row_id


class PostForm(FlaskForm):  # type: ignore[misc]  # flask_wtf has no types
    """A POST form: fields from ``request.form``, the CSRF token from Flask-WTF."""


class QueryForm(FlaskForm):  # type: ignore[misc]
    """A GET form read from the query string, without a CSRF token."""

    class Meta:
        csrf = False

    def __init__(self, formdata: MultiDict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(formdata=request.args if formdata is None else formdata, **kwargs)

    def is_submitted(self) -> bool:
        """A query form counts as submitted once any of its fields is in the query string."""
        return any(name in request.args for name in self._fields)


def first_errors(form: FlaskForm) -> dict[str, str]:
    """Each field's first error message, by field name, for an error summary at the top."""
    return {name: str(messages[0]) for name, messages in form.errors.items() if messages}


# --- fields and filters every page shares ------------------------------------------------------


def trimmed(longest: int) -> Callable[[Any], Any]:
    """A field filter: the value stripped and cut to ``longest`` characters (a search typed too
    long searches its start; nothing longer reaches a query)."""

    def apply(value: Any) -> Any:
        return value.strip()[:longest] if isinstance(value, str) else value

    return apply


class DayField(Field):  # type: ignore[misc]
    """A day (``YYYY-MM-DD``, the value of an ``<input type="date">``) within the days a list
    may name (``app.web.listing.EARLIEST_DAY`` .. ``LATEST_DAY``); empty is None. Anything
    else is the field's error, and a list's filter form answers 400 for it."""

    widget = DateInput()

    def _value(self) -> str:
        if self.raw_data:
            return str(self.raw_data[0])
        return self.data.isoformat() if isinstance(self.data, date) else ""

    def process_formdata(self, valuelist: list[Any]) -> None:
        raw = str(valuelist[0]).strip() if valuelist else ""
        if not raw:
            self.data = None
            return
        try:
            day = date.fromisoformat(raw)
        except ValueError:
            self.data = None
            raise ValueError(_l("Indiquez une date (AAAA-MM-JJ).")) from None
        if not EARLIEST_DAY <= day <= LATEST_DAY:
            self.data = None
            raise ValueError(_l("Cette date est hors des limites."))
        self.data = day


def _id_or_none(value: Any) -> int | None:
    return row_id(str(value)) if value not in (None, "") else None


class RowIdField(SelectField):  # type: ignore[misc]
    """A select naming a row by its id (ASCII digits the database holds); empty is None, and
    any other value is the field's error. The choices only draw the list: a row that left the
    list (a stale link) is still a valid id, and the query scopes it to its owner."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, coerce=_id_or_none, validate_choice=False, **kwargs)

    def process_formdata(self, valuelist: list[Any]) -> None:
        raw = str(valuelist[0]).strip() if valuelist else ""
        self.data = _id_or_none(raw)
        if raw and self.data is None:
            raise ValueError(_l("Choisissez dans la liste."))


class MultiCheckboxField(SelectMultipleField):  # type: ignore[misc]
    """Several choices as checkboxes (the macros draw it as a fieldset, like radios)."""

    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()
