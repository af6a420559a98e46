"""The desk's audit viewer in headless Chromium: a desk user signs in (password, authenticator),
filters the trail by one patient, downloads both exports (CSV and FHIR), verifies the chain,
and axe-core finds no serious violation in French or in English."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle

from app.audit import Actor, record
from app.extensions import db
from tests.browser.conftest import axe_violations
from tests.support.portal import Portal, serve_portal, sign_in_staff

pytestmark = pytest.mark.browser


@pytest.fixture()
def portal(tmp_path: Path) -> Iterator[Portal]:
    with serve_portal(tmp_path) as served:
        with served.app.app_context():
            for n in range(3):
                record(Actor("api", "dpi-browser"), "document.received",
                       target=f"document:DPI-A-{n}", patient="P-100")
                record(Actor("api", "dpi-browser"), "document.received",
                       target=f"document:DPI-B-{n}", patient="P-200")
            record(Actor("doctor", "7601000000019"), "document.viewed",
                   target="document:DPI-A-0", patient="P-100",
                   details={"delivery": 1, "via": "<b>viewer</b>"})
            db.session.commit()
            db.session.remove()
        yield served


def _download(page: Any, link_name: str, folder: Path) -> bytes:
    with page.expect_download() as info:
        page.get_by_role("link", name=link_name).click()
    download = info.value
    target = folder / download.suggested_filename
    download.save_as(str(target))
    return bytes(target.read_bytes())


def test_desk_exports_the_trail_of_one_patient(page: Any, portal: Portal,
                                               tmp_path: Path) -> None:
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text))
    # Given a desk user signed in through the real pages, on the audit trail
    sign_in_staff(page, portal, "desk", landing="/staff/audit")
    assert page.get_by_role("heading", level=1).inner_text() == "Journal d'audit"
    assert axe_violations(page) == []

    # When they filter the trail by one patient
    page.get_by_label("Patient (ID DPI)").fill("P-100")
    page.get_by_role("button", name="Filtrer").click()
    page.wait_for_url(re.compile(r"patient=P-100"))
    rows = page.locator("table.audit-results tbody tr")
    assert rows.count() == 4
    assert set(page.locator("table.audit-results tbody tr td:nth-child(6)")
               .all_inner_texts()) == {"P-100"}
    assert "<b>viewer</b>" in page.locator("table.audit-results").inner_text()  # as text
    assert axe_violations(page) == []

    # Then the CSV download holds only that patient's events
    data = _download(page, "Exporter en CSV", tmp_path)
    exported = list(csv.DictReader(io.StringIO(data.decode("utf-8"))))
    assert len(exported) == 4
    assert {row["patient"] for row in exported} == {"P-100"}
    assert {row["target"] for row in exported} == {"document:DPI-A-0", "document:DPI-A-1",
                                                    "document:DPI-A-2"}

    # And the FHIR download is an R4B Bundle of that patient's AuditEvents
    data = _download(page, "Exporter en FHIR (AuditEvent, IHE BALP)", tmp_path)
    bundle = json.loads(data)
    Bundle.model_validate(bundle)
    resources = [entry["resource"] for entry in bundle["entry"]]
    # the four, and the CSV export just made (recorded under that patient)
    assert len(resources) == 5
    assert resources[0]["meta"]["profile"] == [
        "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.PatientQuery"]
    for resource in resources:
        patients = [e for e in resource["entity"] if e["role"]["code"] == "1"]
        assert [p["what"]["identifier"]["value"] for p in patients] == ["P-100"]

    # And both exports are in the trail, under that patient
    page.reload()
    assert page.locator("table.audit-results tbody tr td:nth-child(4)").all_inner_texts()[:2] \
        == ["audit.exported", "audit.exported"]

    # When they verify the chain now, the page says it holds
    page.get_by_role("button", name="Vérifier maintenant").click()
    page.wait_for_url(re.compile(r"/staff/audit$"))
    assert "Chaîne intacte" in page.locator(".audit-chain").inner_text()
    assert axe_violations(page) == []

    # And in English too
    page.get_by_role("button", name="English").click()
    page.wait_for_load_state()
    assert page.locator("html").get_attribute("lang") == "en"
    assert page.get_by_role("heading", level=1).inner_text() == "Audit trail"
    assert axe_violations(page) == []
    page.goto(portal.url + "/staff/audit?patient=P-100")
    assert "Chain intact" in page.locator(".audit-chain").inner_text()
    assert axe_violations(page) == []
    # An invalid filter: a clear error, still accessible
    page.goto(portal.url + "/staff/audit?from=yesterday")
    assert "Invalid date" in page.content()
    assert axe_violations(page) == []
    assert [m for m in console if "Content Security Policy" in m] == []
