"""Dr Muller's inbox as the tests drive it: letters sent through the DPI API, read in a browser.

``inbox_fixture`` and ``other_doctor_fixture`` register as the ``inbox`` and ``other_doctor``
fixtures of a module that imports them.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from app.extensions import db
from app.gln import make_gln
from app.models import Delivery, Doctor
from tests.conftest import Api, consent_body, document_body
from tests.support.factories import make_doctor
from tests.support.pages import csrf_token
from tests.support.signin import sign_in_as

GLN = "7601000000019"
OTHER_GLN = make_gln("760100000002")


class Inbox:
    """The DPI sends letters to Dr Muller (the ``active_doctor``), who reads them in a browser."""

    def __init__(self, api: Api, client: FlaskClient, doctor: Doctor) -> None:
        self.api, self.client, self.doctor = api, client, doctor
        self.count = 0
        self.consented: set[tuple[str, str]] = set()

    def send(self, *, patient: str = "P-0042", family: str = "Muster", given: str = "Anna",
             recipient: str = GLN, **changes: Any) -> int:
        """Ingest one letter through the API; answers the recipient's delivery id."""
        if (patient, recipient) not in self.consented:
            body = consent_body(patient={"family_name": family, "given_name": given,
                                         "birth_date": "1961-04-02"})
            answer = self.api.put(f"/api/v1/patients/{patient}/consents/{recipient}", json=body)
            assert answer.status_code in (200, 201), answer.get_json()
            self.consented.add((patient, recipient))
        self.count += 1
        document_id = changes.pop("document_id", f"DPI-2026-{self.count:06d}")
        body = document_body(document_id, **changes)
        body["patient"] = {"id": patient, "family_name": family, "given_name": given,
                           "birth_date": "1961-04-02", "deceased": False}
        body["recipients"] = [recipient]
        answer = self.api.post("/api/v1/documents", json=body)
        assert answer.status_code == 201, answer.get_json()
        return self.delivery_id(document_id, recipient)

    def delivery_id(self, document_id: str, recipient: str = GLN) -> int:
        from app.models import Document

        delivery_id = db.session.scalar(
            select(Delivery.id).join(Document).where(
                Document.document_id == document_id, Delivery.recipient_gln == recipient)
        )
        assert delivery_id is not None
        return delivery_id

    def delivery(self, delivery_id: int) -> Delivery:
        db.session.expire_all()
        delivery = db.session.get(Delivery, delivery_id)
        assert delivery is not None
        return delivery

    def api_status(self, document_id: str) -> dict[str, Any]:
        answer = self.api.get(f"/api/v1/documents/{document_id}")
        assert answer.status_code == 200
        deliveries: list[dict[str, Any]] = answer.get_json()["deliveries"]
        return next(d for d in deliveries if d["recipient"] == GLN)

    def page(self, path: str = "/documents") -> str:
        response = self.client.get(path)
        assert response.status_code == 200, path
        return response.get_data(as_text=True)

    def post(self, path: str, data: dict[str, Any] | None = None) -> Any:
        token = csrf_token(self.client.get("/documents"))
        return self.client.post(path, data={"csrf_token": token, **(data or {})})


@pytest.fixture(name="inbox")
def inbox_fixture(api: Api, client: FlaskClient, active_doctor: Doctor) -> Inbox:
    sign_in_as(client, active_doctor)
    return Inbox(api, client, active_doctor)


@pytest.fixture(name="other_doctor")
def other_doctor_fixture(app: Flask) -> Doctor:
    """Dr Paul Rochat, active, another doctor than the inbox's."""
    return make_doctor(OTHER_GLN, "Rochat", "Paul")
