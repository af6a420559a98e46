"""Language and time zone: French first, English too; times shown in Europe/Zurich."""

from __future__ import annotations

from typing import Any

from flask import Flask, current_app, g, request, session
from flask_babel import get_locale, get_translations


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


def _translations() -> Any:
    """The request's translations, looked up once per locale rather than once per string.

    Flask-Babel's own template callables walk the request context, the domain's cache and the
    locale's identifier for every ``_()`` of a page: on a list of 50 rows that was a third of
    the page's CPU. The result depends only on the locale object Flask-Babel keeps for the
    request, so it is kept beside it and looked up again whenever that object changes
    (``refresh()`` after a language switch, ``force_locale``).
    """
    state = g.get("_flask_babel")
    locale = getattr(state, "babel_locale", None)
    cached = g.get("_relais_translations")
    if cached is not None and locale is not None and cached[0] is locale:
        return cached[1]
    found = get_translations()
    state = g.get("_flask_babel")
    g._relais_translations = (getattr(state, "babel_locale", None), found)
    return found


def install_template_gettext(app: Flask) -> None:
    """Replace Flask-Babel's template callables by ones using :func:`_translations`."""
    app.jinja_env.install_gettext_callables(  # type: ignore[attr-defined]
        gettext=lambda s: _translations().ugettext(s),
        ngettext=lambda s, p, n: _translations().ungettext(s, p, n),
        newstyle=True,
        pgettext=lambda c, s: _translations().upgettext(c, s),
        npgettext=lambda c, s, p, n: _translations().unpgettext(c, s, p, n),
    )
