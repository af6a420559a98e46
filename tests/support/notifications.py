"""What the notification tests share: letters posted through the DPI API, the outbox's rows,
and the check that no email carries patient data."""

from __future__ import annotations

from email import message_from_bytes, policy
from typing import Any

from sqlalchemy import select

from app.extensions import db
from app.models import Notification
from tests.conftest import Api, document_body
from tests.notify.smtp_server import Smtp

GLN = "7601000000019"  # the active_doctor fixture
#: What the letters below carry and no email may: names, birth date, DPI ids, titles.
PATIENT_DATA = ["Muster", "Anna", "1961-04-02", "02.04.1961", "P-0042", "DPI-2026",
                "Lettre de sortie", "Bilan cardiologique", "cardiologie", "Exemple"]


def post_letter(api: Api, number: int, **changes: Any) -> None:
    body = document_body(f"DPI-2026-{number:06d}", **changes)
    response = api.post("/api/v1/documents", json=body)
    assert response.status_code == 201, response.get_json()


def rows() -> list[Notification]:
    db.session.expire_all()
    return list(db.session.scalars(select(Notification).order_by(Notification.id)))


def assert_no_patient_data(smtp: Smtp) -> None:
    for _, raw in smtp.inbox.messages:
        for part in [raw] + [p.get_content().encode() for p in
                             message_from_bytes(raw, policy=policy.default).walk()  # type: ignore[attr-defined]
                             if p.get_content_maintype() == "text"]:
            for value in PATIENT_DATA:
                assert value.encode() not in part, value
