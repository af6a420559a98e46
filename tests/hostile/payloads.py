"""Markup, script, template and spreadsheet payloads, and the checks that a page shows them only
as text. Shared by the hostile-input tests (in-process and in the browser)."""

from __future__ import annotations

from html.parser import HTMLParser

#: The pieces every payload is made of: markup and script in text and in attributes, a
#: javascript: URL, server- and client-side template syntax, the end of <title>, a spreadsheet
#: formula, quotes, an entity that must stay as typed, and the right-to-left override.
SCRIPT = "<script>alert(1)</script>"
ATTRIBUTE = '"><img src=x onerror=alert(1)>'
JS_URL = "javascript:alert(1)"
TEMPLATES = "{{7*7}} ${7*7}"
END_TITLE = "</title>"
FORMULA = '=HYPERLINK("http://evil.example","x")'
QUOTES = "' \""
ENTITY = "&amp;"
RTL = "\u202e"


def payload(field: str, longest: int = 200) -> str:
    """A payload naming ``field`` (to find it again on a page), at most ``longest`` long."""
    whole = (f"{SCRIPT}{ATTRIBUTE}{field}|{JS_URL} {TEMPLATES} {END_TITLE}{QUOTES}{ENTITY}"
             f"{RTL}{FORMULA}")
    if len(whole) <= longest:
        return whole
    short = f"{SCRIPT}{field}|{TEMPLATES}{ENTITY}"
    assert len(short) <= longest, (field, len(short))
    return short


def formula_payload(field: str) -> str:
    """A payload starting like a spreadsheet formula (for cells of exports)."""
    return f"=HYPERLINK(\"http://evil.example\",\"{field}\")<b>"


#: What must never reach a page as markup (searched in the raw HTML).
RAW_FORBIDDEN = ("<script>alert(1)", "<img src=x", "onerror=alert(1)>")


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.text: list[str] = []
        self.script_text: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        (self.script_text if self._in_script else self.text).append(data)


def assert_shown_as_text(html: str, expected: list[str], where: str) -> None:
    """``html`` carries no markup of a payload, and shows each of ``expected`` as text."""
    for forbidden in RAW_FORBIDDEN:
        assert forbidden not in html, f"{where}: {forbidden!r} reached the page unescaped"
    parsed = _Tags()
    parsed.feed(html)
    parsed.close()
    titles = [tag for tag, _ in parsed.tags if tag == "title"]
    assert len(titles) <= 1, f"{where}: a payload opened a <title>"
    for tag, attrs in parsed.tags:
        names = {name for name, _ in attrs}
        assert not any(name.startswith("on") for name in names), f"{where}: <{tag} {names}>"
        for name, value in attrs:
            if name in ("href", "src", "action", "formaction") and value:
                assert not value.strip().lower().startswith("javascript:"), (where, tag, value)
        if tag == "script":
            # Only our own module scripts, by src: never inline, never from a payload.
            src = dict(attrs).get("src") or ""
            assert src.startswith("/static/"), f"{where}: <script src={src!r}>"
        if tag == "img":
            assert dict(attrs).get("src") != "x", f"{where}: a payload's <img>"
    assert "".join(parsed.script_text).strip() == "", f"{where}: inline script"
    text = "".join(parsed.text)
    for value in expected:
        # Shown, as typed: escaped in the HTML, so the parser gives back the very text.
        assert value in text, f"{where}: {value!r} is not shown as text"
