"""Language and time zone: French first, English too; times shown in Europe/Zurich."""

from __future__ import annotations

from typing import Any

from flask import current_app, request, session
from flask_babel import get_locale


def select_locale() -> str:
    languages: tuple[str, ...] = current_app.config["LANGUAGES"]
    chosen = session.get("lang")
    if chosen in languages:
        return str(chosen)
    return request.accept_languages.best_match(languages, default=languages[0]) or languages[0]


def select_timezone() -> str:
    return str(current_app.config["BABEL_DEFAULT_TIMEZONE"])


def template_helpers() -> dict[str, Any]:
    return {
        "current_locale": str(get_locale() or "fr"),
        "languages": current_app.config["LANGUAGES"],
    }
