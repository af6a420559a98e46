"""The language switch of every page's header (WTForms)."""

from __future__ import annotations

from flask import request
from wtforms import HiddenField, StringField

from app.web.forms import PostForm


class LanguageForm(PostForm):
    """``lang`` is the button pressed (one per language, drawn by base.html); ``next`` the page
    to come back to, always one of ours (``app.web.paths.local_path``)."""

    lang = StringField()
    next = HiddenField()


def language_form() -> LanguageForm:
    """The header's form for the page being drawn: it comes back to this page."""
    return LanguageForm(formdata=None, next=request.path)
