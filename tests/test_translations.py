"""The English catalogue covers every French message of the templates and the code."""

from __future__ import annotations

from pathlib import Path

from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parent.parent
METHODS = [("app/**.py", "python"), ("templates/**.html", "jinja2"), ("templates/**.txt", "jinja2")]


def source_messages() -> set[str]:
    found = extract_from_dir(
        str(ROOT), METHODS, keywords={"_": None, "_l": None, "gettext": None, "lazy_gettext": None,
                  "ngettext": (1, 2)},
        options_map={"templates/**.html": {}, "templates/**.txt": {}},
    )
    messages: set[str] = set()
    for _, _, message, _, _ in found:
        messages.add(message if isinstance(message, str) else message[0])
    return messages


def test_every_message_has_an_english_translation() -> None:
    with (ROOT / "translations/en/LC_MESSAGES/messages.po").open("rb") as handle:
        catalog = read_po(handle)
    # A plural entry is keyed by its singular and translated only when every form is.
    translated = {
        m.id if isinstance(m.id, str) else m.id[0]:
        m.string if isinstance(m.string, str) else all(m.string) and m.string
        for m in catalog if m.id
    }
    messages = source_messages()
    assert "Bienvenue sur Relais" in messages  # the extractor reads the templates
    missing = sorted(m for m in messages if not translated.get(m))
    assert missing == [], "run pybabel extract/update and translate: " + "; ".join(missing)


def test_the_catalogue_holds_no_message_the_sources_dropped() -> None:
    # Parallel work appends to one catalogue; a label rewritten elsewhere must not linger here.
    with (ROOT / "translations/en/LC_MESSAGES/messages.po").open("rb") as handle:
        catalog = read_po(handle)
    messages = source_messages()
    obsolete = sorted(str(m.id) for m in catalog
                      if m.id and (m.id if isinstance(m.id, str) else m.id[0]) not in messages)
    assert obsolete == []
