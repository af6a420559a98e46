"""Mes documents, the viewer and the content route: what a doctor sees, and nothing else."""

from __future__ import annotations

import io
import re
import zipfile
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import update

from app.extensions import db
from app.models import Delivery, Doctor
from app.models.base import utcnow
from app.pdf import make_pdf
from tests.conftest import PDF, audit_text
from tests.support.inbox import (
    OTHER_GLN,
    Inbox,
    inbox_fixture,  # noqa: F401
    other_doctor_fixture,  # noqa: F401
)
from tests.support.pages import assert_no_inline_code
from tests.support.queries import counted_queries


def set_status(delivery_id: int, **values: Any) -> None:
    db.session.execute(update(Delivery).where(Delivery.id == delivery_id).values(**values))
    db.session.commit()


# --- the list ------------------------------------------------------------------------------


def test_the_list_shows_only_visible_letters_newest_first(inbox: Inbox) -> None:
    first = inbox.send(title="Lettre ancienne")
    second = inbox.send(title="Lettre récente")
    held = inbox.send(title="Lettre retenue")
    blocked = inbox.send(title="Lettre bloquée")
    cancelled = inbox.send(title="Lettre annulée")
    set_status(held, status="held", delivered_at=None)
    set_status(blocked, status="blocked", delivered_at=None)
    set_status(cancelled, status="cancelled", delivered_at=None)

    html = inbox.page()

    assert "Lettre récente" in html and "Lettre ancienne" in html
    assert html.index("Lettre récente") < html.index("Lettre ancienne")
    for hidden in ("Lettre retenue", "Lettre bloquée", "Lettre annulée"):
        assert hidden not in html
    assert f"/documents/{first}" in html and f"/documents/{second}" in html
    assert_no_inline_code(html)


def test_every_id_on_the_list_is_unique(inbox: Inbox) -> None:
    """Each row draws its own small forms (read, unread): none of their fields repeats an id
    (the header's language switch has a ``next`` field too)."""
    inbox.send(title="Lettre une")
    read = inbox.send(title="Lettre deux")
    set_status(read, status="read", first_read_at=utcnow())

    html = inbox.page()

    ids = re.findall(r'\sid="([^"]+)"', html)
    assert ids, "the page names its fields"
    assert sorted(i for i in set(ids) if ids.count(i) > 1) == []
    assert html.count('name="next"') >= 3  # the header's and each row's, all without an id


def test_the_header_counts_unread_letters_for_a_doctor(inbox: Inbox) -> None:
    inbox.send()
    inbox.send()
    html = inbox.page()
    assert 'class="nav-badge">2<' in html
    assert 'aria-current="page"' in html
    assert 'href="/patients"' in html and 'href="/profile"' in html and 'href="/help"' in html


def test_keyset_pagination_walks_every_letter_once(inbox: Inbox) -> None:
    ids = [inbox.send(title=f"Lettre n° {n}") for n in range(30)]
    html = inbox.page()
    assert html.count('class="document-item') == 25
    assert "OFFSET" not in html
    import re

    cursor = re.search(r'href="/documents\?after=([^"&]+)', html)
    assert cursor is not None
    second = inbox.page(f"/documents?after={cursor.group(1)}")
    assert second.count('class="document-item') == 5
    assert 'rel="next"' not in second
    shown = re.findall(r'href="/documents/(\d+)"', html + second)
    assert sorted(int(i) for i in shown) == sorted(ids)
    assert inbox.client.get("/documents?after=not-a-cursor!").status_code == 400


def test_filters_and_search(inbox: Inbox) -> None:
    inbox.send(title="Lettre de sortie cardiologie", service="cardiologie")
    inbox.send(title="Avis neurologique", service="neurologie",
               type="consultation_report", patient="P-0050", family="Dupont", given="Éric")
    read_id = inbox.send(title="Compte rendu lu", service="neurologie")
    assert inbox.client.get(f"/documents/{read_id}/content").status_code == 200

    assert "Compte rendu lu" not in inbox.page("/documents?view=unread")
    assert "Avis neurologique" in inbox.page("/documents?view=unread")
    html = inbox.page("/documents?service=neurologie")
    assert "Avis neurologique" in html and "Lettre de sortie cardiologie" not in html
    html = inbox.page("/documents?type=consultation_report")
    assert "Avis neurologique" in html and "Compte rendu lu" not in html
    html = inbox.page("/documents?q=DUPONT")
    assert "Avis neurologique" in html and "Lettre de sortie cardiologie" not in html
    html = inbox.page("/documents?q=cardio")
    assert "Lettre de sortie cardiologie" in html and "Avis neurologique" not in html
    html = inbox.page("/documents?q=100%25")
    assert 'class="document-item' not in html
    patient_id = inbox.delivery(read_id).document.patient_id
    html = inbox.page(f"/documents?patient={patient_id}")
    assert "Compte rendu lu" in html and "Avis neurologique" not in html
    today = utcnow().date()
    assert "Compte rendu lu" in inbox.page(f"/documents?from={today}&to={today}")
    assert "Compte rendu lu" not in inbox.page("/documents?to=2020-01-01")
    assert inbox.client.get("/documents?from=yesterday").status_code == 400


def test_the_default_view_follows_the_profile(inbox: Inbox) -> None:
    read_id = inbox.send(title="Déjà lue")
    inbox.send(title="Pas encore lue")
    inbox.client.get(f"/documents/{read_id}/content")
    set_status_doctor = update(Doctor).where(Doctor.id == inbox.doctor.id)
    db.session.execute(set_status_doctor.values(documents_view="unread"))
    db.session.commit()
    html = inbox.page()
    assert "Pas encore lue" in html and "Déjà lue" not in html
    assert "Déjà lue" in inbox.page("/documents?view=all")




def test_a_page_costs_the_same_queries_for_one_letter_or_twenty_five(inbox: Inbox) -> None:
    inbox.send(title="Une")
    with counted_queries() as one:
        inbox.page()
    for n in range(24):
        inbox.send(title=f"Autre {n}", patient=f"P-1{n:03d}", family=f"Nom{n}")
    db.session.remove()
    with counted_queries() as many:
        html = inbox.page()
    assert html.count('class="document-item') == 25
    assert len(many) == len(one), (len(one), len(many))


# --- reading ----------------------------------------------------------------------------------


def test_the_first_view_records_read_for_the_dpi(inbox: Inbox) -> None:
    delivery_id = inbox.send(document_id="DPI-2026-000777")
    assert inbox.api_status("DPI-2026-000777")["status"] == "delivered"

    viewer = inbox.client.get(f"/documents/{delivery_id}")
    assert viewer.status_code == 200
    html = viewer.get_data(as_text=True)
    for shown in ("Lettre de sortie", "Muster Anna", "Dr B. Exemple", "cardiologie", "1961"):
        assert shown in html
    assert "/static/js/viewer.js" in html
    assert_no_inline_code(html)
    # The viewer page alone reads nothing; pdf.js fetching the content does.
    assert inbox.api_status("DPI-2026-000777")["status"] == "delivered"

    response = inbox.client.get(f"/documents/{delivery_id}/content")
    assert response.status_code == 200
    assert response.data == PDF
    assert response.mimetype == "application/pdf"
    assert response.headers["Content-Disposition"].startswith("attachment;")  # never inline
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Content-Security-Policy"].startswith("sandbox")
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]

    status = inbox.api_status("DPI-2026-000777")
    assert status["status"] == "read" and status["first_read_at"] is not None
    first_read_at = status["first_read_at"]

    download = inbox.client.get(f"/documents/{delivery_id}/content?download=1")
    assert download.headers["Content-Disposition"] == (
        'attachment; filename="DPI-2026-000777.pdf"')
    assert inbox.api_status("DPI-2026-000777")["first_read_at"] == first_read_at
    trail = audit_text()
    assert '"document.viewed"' in trail and '"document.downloaded"' in trail
    assert '"delivery.read"' in trail
    for private in ("Muster", "Anna", "1961-04-02", "Lettre de sortie"):
        assert private not in trail


def test_mark_unread_keeps_read_for_the_dpi(inbox: Inbox) -> None:
    delivery_id = inbox.send(document_id="DPI-2026-000888")
    assert inbox.post(f"/documents/{delivery_id}/read").status_code == 303
    assert inbox.delivery(delivery_id).status == "read"
    first_read_at = inbox.delivery(delivery_id).first_read_at
    assert first_read_at is not None

    assert inbox.post(f"/documents/{delivery_id}/unread").status_code == 303
    delivery = inbox.delivery(delivery_id)
    assert delivery.status == "delivered" and delivery.first_read_at == first_read_at
    assert 'class="nav-badge">1<' in inbox.page()
    assert inbox.api_status("DPI-2026-000888")["status"] == "read"

    inbox.client.get(f"/documents/{delivery_id}/content")
    delivery = inbox.delivery(delivery_id)
    assert delivery.status == "read" and delivery.first_read_at == first_read_at
    trail = audit_text()
    assert '"delivery.marked_read"' in trail and '"delivery.marked_unread"' in trail


def test_posts_need_the_csrf_token(inbox: Inbox) -> None:
    delivery_id = inbox.send()
    for path in (f"/documents/{delivery_id}/read", f"/documents/{delivery_id}/unread",
                 f"/documents/{delivery_id}/not-my-patient", "/documents/zip"):
        assert inbox.client.post(path, data={"ids": [delivery_id]}).status_code == 400, path
    assert inbox.delivery(delivery_id).reported_not_my_patient_at is None


# --- ZIP -----------------------------------------------------------------------------------


def test_several_letters_in_one_zip(inbox: Inbox) -> None:
    other_pdf = make_pdf(["Autre lettre"])
    import base64

    first = inbox.send(document_id="DPI-2026-000101")
    second = inbox.send(document_id="DPI-2026-000102",
                        content=base64.b64encode(other_pdf).decode())
    response = inbox.post("/documents/zip", {"ids": [str(first), str(second)]})
    assert response.status_code == 200
    assert response.mimetype == "application/zip"
    assert response.headers["Content-Disposition"].startswith("attachment;")
    with zipfile.ZipFile(io.BytesIO(response.data)) as archive:
        contents = sorted(archive.read(name) for name in archive.namelist())
        assert len(archive.namelist()) == 2
    assert contents == sorted([PDF, other_pdf])
    assert inbox.api_status("DPI-2026-000101")["status"] == "read"
    assert '"documents.zip_downloaded"' in audit_text()


def test_a_zip_with_one_foreign_id_is_refused_whole(inbox: Inbox, other_doctor: Doctor) -> None:
    mine = inbox.send(document_id="DPI-2026-000201")
    theirs = inbox.send(document_id="DPI-2026-000202", recipient=OTHER_GLN)
    response = inbox.post("/documents/zip", {"ids": [str(mine), str(theirs)]})
    assert response.status_code == 404
    assert inbox.api_status("DPI-2026-000201")["status"] == "delivered"
    too_many = [str(mine)] * 1 + [str(n) for n in range(1000, 1050)]
    assert inbox.post("/documents/zip", {"ids": too_many}).status_code == 413


# --- pas mon patient, retraction ------------------------------------------------------------


def test_pas_mon_patient_reaches_the_hospital_and_leaves_the_list(inbox: Inbox) -> None:
    delivery_id = inbox.send(document_id="DPI-2026-000301", title="Lettre égarée")
    confirm = inbox.client.get(f"/documents/{delivery_id}/not-my-patient")
    assert confirm.status_code == 200
    assert "Confirmer" in confirm.get_data(as_text=True)
    assert inbox.delivery(delivery_id).reported_not_my_patient_at is None

    response = inbox.post(f"/documents/{delivery_id}/not-my-patient")
    assert response.status_code == 303

    assert inbox.api_status("DPI-2026-000301")["reported_not_my_patient_at"] is not None
    assert "Lettre égarée" not in inbox.page()
    assert inbox.client.get(f"/documents/{delivery_id}").status_code == 404
    assert inbox.client.get(f"/documents/{delivery_id}/content").status_code == 404
    assert '"delivery.reported_not_my_patient"' in audit_text()


def test_a_retracted_letter_shows_only_that_it_was_withdrawn(inbox: Inbox) -> None:
    delivery_id = inbox.send(document_id="DPI-2026-000401", title="Lettre erronée")
    answer = inbox.api.post("/api/v1/documents/DPI-2026-000401/retract",
                            json={"reason": "Mauvais patient"})
    assert answer.status_code == 200

    html = inbox.page()
    assert "Document retiré par l&#39;hôpital le" in html or "retiré par l'hôpital" in html
    assert "Lettre erronée" not in html and "Muster" not in html
    viewer = inbox.client.get(f"/documents/{delivery_id}").get_data(as_text=True)
    assert "Document retiré" in viewer
    assert "Lettre erronée" not in viewer and "Muster" not in viewer
    assert "viewer.js" not in viewer
    assert inbox.client.get(f"/documents/{delivery_id}/content").status_code == 410
    assert "Lettre erronée" not in inbox.page("/documents?q=erron")
    assert inbox.post("/documents/zip", {"ids": [str(delivery_id)]}).status_code == 404


# --- isolation -------------------------------------------------------------------------------

ID_ROUTES = [
    ("GET", "/documents/{id}"),
    ("GET", "/documents/{id}/content"),
    ("GET", "/documents/{id}/content?download=1"),
    ("POST", "/documents/{id}/read"),
    ("POST", "/documents/{id}/unread"),
    ("GET", "/documents/{id}/not-my-patient"),
    ("POST", "/documents/{id}/not-my-patient"),
    ("POST", "/documents/zip"),
]


def test_every_id_route_is_listed_here(app: Flask) -> None:
    rules = {rule.rule for rule in app.url_map.iter_rules()
             if rule.endpoint.startswith("documents.") and rule.arguments}
    assert rules == {"/documents/<bigint:delivery_id>", "/documents/<bigint:delivery_id>/content",
                     "/documents/<bigint:delivery_id>/read",
                     "/documents/<bigint:delivery_id>/unread",
                     "/documents/<bigint:delivery_id>/not-my-patient"}


@pytest.mark.parametrize(("method", "path"), ID_ROUTES)
def test_another_doctors_letter_answers_404(
    inbox: Inbox, other_doctor: Doctor, method: str, path: str
) -> None:
    theirs = inbox.send(document_id="DPI-2026-000501", recipient=OTHER_GLN)
    held = inbox.send(document_id="DPI-2026-000502")
    set_status(held, status="held", delivered_at=None)
    blocked = inbox.send(document_id="DPI-2026-000503")
    set_status(blocked, status="blocked", delivered_at=None)
    for delivery_id in (theirs, held, blocked, 2_000_000_000):
        url = path.format(id=delivery_id)
        if method == "GET":
            response = inbox.client.get(url)
        else:
            response = inbox.post(url, {"ids": [str(delivery_id)]})
        assert response.status_code == 404, (url, delivery_id)
    their_delivery = inbox.delivery(theirs)
    assert their_delivery.status == "delivered"
    assert their_delivery.first_read_at is None
    assert their_delivery.reported_not_my_patient_at is None
    assert "Muster" not in inbox.page()
