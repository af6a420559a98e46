"""The ``auth`` blueprint (``/auth``), which every page module of :mod:`app.auth.views` adds to."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("auth", __name__, url_prefix="/auth")
