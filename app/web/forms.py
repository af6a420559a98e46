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

from typing import Any

from flask import request
from flask_wtf import FlaskForm
from werkzeug.datastructures import MultiDict


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
