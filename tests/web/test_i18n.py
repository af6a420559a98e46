"""Templates translate through a per-request cache of the translations (app/web/i18n.py):
it must follow the locale wherever Flask-Babel's own lookups would."""

from __future__ import annotations

from flask import Flask, render_template_string, session
from flask_babel import force_locale, refresh

PAGE = "{{ _('Mes documents') }}|{{ ngettext('%(num)d document', '%(num)d documents', 2) }}"


def test_the_cached_translations_follow_every_change_of_locale(app: Flask) -> None:
    with app.test_request_context("/", headers={"Accept-Language": "fr-CH"}):
        assert render_template_string(PAGE) == "Mes documents|2 documents"
        with force_locale("en"):
            assert render_template_string(PAGE) == "My documents|2 documents"
        assert render_template_string(PAGE) == "Mes documents|2 documents"

        # A language chosen during the request (the header's switch, the sign-in) counts
        # from the next page rendered, once Flask-Babel is told to refresh.
        session["lang"] = "en"
        refresh()
        assert render_template_string(PAGE).startswith("My documents|")


def test_each_request_starts_from_its_own_locale(app: Flask) -> None:
    # The test client's requests share the fixture's app context, and so ``g``: the cache
    # must not carry one request's language into the next.
    client = app.test_client()
    for language, heading in (("en", "Welcome to Relais"), ("fr", "Bienvenue sur Relais"),
                              ("en", "Welcome to Relais")):
        page = client.get("/", headers={"Accept-Language": language}).get_data(as_text=True)
        assert heading in page
