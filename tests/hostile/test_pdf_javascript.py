"""A letter whose PDF carries JavaScript (an /OpenAction, document-level and page-level scripts).

Relais does not rewrite letters: a signed letter is stored and served byte for byte as the DPI
sent it, whatever it contains (app/pdf.py only writes demo PDFs; the API checks the PDF's magic
bytes, not its insides). What keeps its script from running is how it is served: the content
route and the ZIP answer with a sandboxing CSP (no script, no plugin, an opaque origin), nosniff,
a Content-Disposition with a safe name, same-origin CORP and no-store; and the viewer draws it
with pdf.js, which never runs a PDF's scripts (no scripting bundle, no annotation layer, no eval).
"""

from __future__ import annotations

import base64
import io
import re
import zipfile
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from app.extensions import db
from app.models import Delivery, Doctor, Document
from tests.conftest import Api, consent_body, document_body
from tests.hostile.jspdf import pdf_with_javascript
from tests.support.servers import ROOT
from tests.support.signin import sign_in_as

GLN = "7601000000019"
SANDBOX = "sandbox; default-src 'none'"
STATIC = ROOT / "static"


@pytest.fixture()
def letter(app: Flask, api: Api, active_doctor: Doctor) -> tuple[FlaskClient, int, bytes]:
    app.config["WTF_CSRF_ENABLED"] = False  # the ZIP is a POST; CSRF is tested elsewhere
    pdf = pdf_with_javascript()
    assert b"/S /JavaScript /JS" in pdf and b"app.alert" in pdf
    assert api.put(f"/api/v1/patients/P-0042/consents/{GLN}",
                   json=consent_body()).status_code == 201
    answer = api.post("/api/v1/documents", json=document_body(
        "DPI-JS-1", content=base64.b64encode(pdf).decode()))
    # The letter is accepted (the DPI's signed letter is not ours to alter) ...
    assert answer.status_code == 201, answer.get_json()
    assert answer.get_json()["deliveries"][0]["status"] == "delivered"
    delivery_id = db.session.scalar(
        select(Delivery.id).join(Document).where(Document.document_id == "DPI-JS-1"))
    assert delivery_id is not None
    client = app.test_client()
    sign_in_as(client, active_doctor)
    return client, delivery_id, pdf


def _assert_sandboxed(response: object, disposition: str) -> None:
    headers = response.headers  # type: ignore[attr-defined]
    assert headers["Content-Security-Policy"] == SANDBOX
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Cross-Origin-Resource-Policy"] == "same-origin"
    assert headers["Cache-Control"] == "no-store"
    value = headers["Content-Disposition"]
    assert re.fullmatch(disposition + r'; filename="[A-Za-z0-9._-]+"', value), value


def test_the_content_route_serves_it_only_sandboxed(
    letter: tuple[FlaskClient, int, bytes]
) -> None:
    client, delivery_id, pdf = letter
    # Viewed (fetched by pdf.js) or downloaded: always an attachment, so that a browser never
    # hands it to its own PDF viewer, which would run the PDF's scripts.
    for query, disposition in (("", "attachment"), ("?download=1", "attachment")):
        response = client.get(f"/documents/{delivery_id}/content{query}")
        assert response.status_code == 200
        assert response.mimetype == "application/pdf"
        assert response.data == pdf  # byte for byte: the script is there, and inert
        _assert_sandboxed(response, disposition)


def test_the_zip_serves_it_only_sandboxed(letter: tuple[FlaskClient, int, bytes]) -> None:
    client, delivery_id, pdf = letter
    response = client.post("/documents/zip", data={"ids": [str(delivery_id)]})
    assert response.status_code == 200
    assert response.mimetype == "application/zip"
    _assert_sandboxed(response, "attachment")
    with zipfile.ZipFile(io.BytesIO(response.data)) as archive:
        assert [archive.read(name) for name in archive.namelist()] == [pdf]


def test_the_viewer_never_runs_a_pdfs_scripts() -> None:
    viewer = (STATIC / "js" / "viewer.js").read_text()
    # pdf.js runs a PDF's JavaScript only through its scripting bundle (pdf.scripting.mjs, the
    # sandbox with its own interpreter) wired by the viewer's PDFScriptingManager, and shows
    # JavaScript links only through the annotation layer. Relais draws canvases only.
    assert "isEvalSupported: false" in viewer
    for never in ("scripting", "Scripting", "AnnotationLayer", "annotationMode", "eval("):
        assert never not in viewer, never
    shipped = sorted(path.name for path in (STATIC / "vendor" / "pdfjs").glob("*.mjs"))
    assert shipped == ["pdf.min.mjs", "pdf.worker.min.mjs"]
    assert not any("scripting" in path.name for path in Path(STATIC).rglob("*.mjs")
                   if "vendor-src" not in path.parts)
