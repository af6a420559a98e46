"""THE control-character check (app/text.py) and THE email-address check (app/email_address.py)."""

from __future__ import annotations

import pytest

from app.email_address import is_email_address
from app.text import has_control, without_control


@pytest.mark.parametrize("text", ["a\x00b", "a\x1fb", "a\x7fb", "a\tb", "a\nb", "a\rb", "\x1b[31m"])
def test_a_control_character_is_found_anywhere(text: str) -> None:
    assert has_control(text)


@pytest.mark.parametrize("text", ["", "Müller-Dupont", "Lettre de sortie", "é à ç 😀", "a b"])
def test_plain_text_has_none(text: str) -> None:
    assert not has_control(text)


def test_text_that_spans_lines_keeps_tab_and_line_feed_only() -> None:
    assert not has_control("ligne 1\nligne 2\tcolonne", lines=True)
    for control in ("\r", "\x00", "\x0b", "\x0c", "\x1f", "\x7f"):
        assert has_control(f"a{control}b", lines=True), repr(control)


def test_without_control_replaces_each_one() -> None:
    assert without_control("a\nb\x00c") == "a?b?c"
    assert without_control("plain") == "plain"


@pytest.mark.parametrize("address", ["claire.muller@example.ch", "a+tag@sub.example.org",
                                     "x@y.z", "é@exemple.ch"])
def test_an_ordinary_address_passes(address: str) -> None:
    assert is_email_address(address)


@pytest.mark.parametrize("address", [
    "", "no-at.example.ch", "two@@example.ch", "a@b@example.ch", "sp ace@example.ch",
    "nodot@example", "tab\t@example.ch", "nul\x00@example.ch", "ctl\x01x@example.ch",
    "a" * 65 + "@example.ch", "a@" + "b" * 320 + ".ch",
])
def test_a_malformed_address_is_refused(address: str) -> None:
    assert not is_email_address(address)
