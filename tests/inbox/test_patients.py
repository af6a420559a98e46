"""Mes patients and the patient's page: only this doctor's consented patients, counted right."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.extensions import db
from app.inbox.patient_queries import PAGE_SIZE, list_patients, months_before
from app.models import Consent, Delivery, Doctor, Patient
from app.models.base import utcnow
from tests.support.factories import (
    make_consent,
    make_delivery,
    make_doctor,
    make_document,
    make_patient,
)
from tests.support.pages import assert_no_inline_code
from tests.support.queries import counted_queries
from tests.support.signin import sign_in_as


@dataclass
class Clinic:
    """Builds the rows the portal reads (``tests/support/factories.py``), as these tests name
    them: doctors, patients with or without a consent, and letters delivered to a doctor."""

    doctors: dict[str, Doctor] = field(default_factory=dict)

    def doctor(self, gln: str = "7601000000019", family: str = "Muller", given: str = "Claire",
               **columns: Any) -> Doctor:
        return make_doctor(gln, family, given, **columns)

    def patient(self, family: str, given: str = "Anna", birth: date = date(1961, 4, 2),
                *, consent_to: Doctor | None = None, revoked: bool = False) -> Patient:
        patient = make_patient(None, family, given, birth)
        if consent_to is not None:
            self.consent(patient, consent_to, revoked=revoked)
        return patient

    def consent(self, patient: Patient, doctor: Doctor, *, revoked: bool = False) -> Consent:
        return make_consent(patient, doctor, revoked=revoked)

    def letter(self, patient: Patient, doctor: Doctor, *, status: str = "delivered",
               title: str = "Lettre de sortie", days_ago: int = 1, reported: bool = False,
               service: str = "cardiologie") -> Delivery:
        when = utcnow() - timedelta(days=days_ago)
        document = make_document(patient, signed_at=when, title=title, service=service)
        return make_delivery(document, doctor, status=status, when=when, reported=reported)


@pytest.fixture()
def clinic(app: Flask) -> Clinic:
    return Clinic()


@pytest.fixture()
def claire(clinic: Clinic) -> Doctor:
    return clinic.doctor()


@pytest.fixture()
def luc(clinic: Clinic) -> Doctor:
    return clinic.doctor("7601000000026", "Rochat", "Luc")


@pytest.fixture()
def claire_client(client: FlaskClient, claire: Doctor) -> FlaskClient:
    sign_in_as(client, claire)
    return client


def names(html: str) -> list[str]:
    """The patient names of Mes patients, in the order shown."""
    return re.findall(r'<a href="/patients/\d+">([^<]+)</a>', html)


def row_of(html: str, name: str) -> str:
    match = re.search(rf"<tr[^>]*>\s*<th[^>]*>\s*<a[^>]*>{re.escape(name)}</a>.*?</tr>", html,
                      re.DOTALL)
    assert match is not None, f"{name} is not listed"
    return match.group(0)


def cells(row: str) -> list[str]:
    return [re.sub(r"<[^>]+>", " ", c).split()[0] if re.sub(r"<[^>]+>", " ", c).split() else ""
            for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.DOTALL)]


# --- the list ----------------------------------------------------------------------------------


def test_lists_only_the_patients_whose_consent_names_this_doctor(
    clinic: Clinic, claire: Doctor, luc: Doctor, claire_client: FlaskClient
) -> None:
    clinic.patient("Muster", "Anna", consent_to=claire)
    clinic.patient("Zbinden", "Marc", consent_to=claire)
    clinic.patient("Favre", "Louise", consent_to=luc)
    stranger = clinic.patient("Dupont", "Jean")
    # A letter addressed to Claire without her being named still does not list the patient.
    clinic.letter(stranger, claire)

    response = claire_client.get("/patients")

    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert names(html) == ["Muster Anna", "Zbinden Marc"]
    assert "Favre" not in html and "Dupont" not in html
    assert_no_inline_code(html)


def test_counts_only_visible_documents_and_unread_ones(
    clinic: Clinic, claire: Doctor, luc: Doctor, claire_client: FlaskClient
) -> None:
    anna = clinic.patient("Muster", "Anna", date(1961, 4, 2), consent_to=claire)
    clinic.consent(anna, luc)
    clinic.letter(anna, claire, status="delivered", days_ago=3)
    clinic.letter(anna, claire, status="read", days_ago=10)
    clinic.letter(anna, claire, status="read", days_ago=2)
    for status in ("held", "blocked", "cancelled", "retracted"):
        clinic.letter(anna, claire, status=status, days_ago=0)
    clinic.letter(anna, claire, status="delivered", days_ago=0, reported=True)
    clinic.letter(anna, luc, status="delivered", days_ago=0)  # Luc's, not Claire's

    [row] = list_patients(claire).rows

    assert (row.documents, row.unread) == (3, 1)
    assert row.last_document_at is not None
    assert row.last_document_at.date() == (utcnow() - timedelta(days=2)).date()
    html = claire_client.get("/patients").get_data(as_text=True)
    assert cells(row_of(html, "Muster Anna")) == [
        "02.04.1961", "3", "1", (utcnow() - timedelta(days=2)).strftime("%d.%m.%Y")
    ]


def test_a_patient_without_documents_is_listed_with_zero(
    clinic: Clinic, claire: Doctor, claire_client: FlaskClient
) -> None:
    clinic.patient("Muster", "Anna", consent_to=claire)

    html = claire_client.get("/patients").get_data(as_text=True)

    assert cells(row_of(html, "Muster Anna"))[1:] == ["0", "0", "aucun"]


def test_a_revoked_consent_is_marked_and_the_letters_already_delivered_stay(
    clinic: Clinic, claire: Doctor, claire_client: FlaskClient
) -> None:
    anna = clinic.patient("Muster", "Anna", consent_to=claire, revoked=True)
    clinic.letter(anna, claire, title="Lettre de sortie du 3 mars")
    clinic.patient("Zbinden", "Marc", consent_to=claire)

    html = claire_client.get("/patients").get_data(as_text=True)
    assert "consentement révoqué" in row_of(html, "Muster Anna")
    assert "consentement révoqué" not in row_of(html, "Zbinden Marc")

    page = claire_client.get(f"/patients/{anna.id}").get_data(as_text=True)
    assert "consentement révoqué" in page
    assert "Lettre de sortie du 3 mars" in page


# --- views: the profile's default and the page's own choice -------------------------------------


@pytest.fixture()
def three_patients(clinic: Clinic, claire: Doctor) -> None:
    """Old (a read letter more than 2 years ago, whatever the leap years), recent (read last
    week), unread (a letter of over a year ago, still unread)."""
    old = clinic.patient("Ancien", "Paul", consent_to=claire)
    clinic.letter(old, claire, status="read", days_ago=800)
    recent = clinic.patient("Bovet", "Lea", consent_to=claire)
    clinic.letter(recent, claire, status="read", days_ago=7)
    unread = clinic.patient("Cuenod", "Ines", consent_to=claire)
    clinic.letter(unread, claire, status="delivered", days_ago=400)


@pytest.mark.parametrize(("preference", "expected"), [
    ("all", ["Ancien Paul", "Bovet Lea", "Cuenod Ines"]),
    ("recent", ["Bovet Lea"]),
    ("unread", ["Cuenod Ines"]),
])
def test_the_default_view_follows_the_profile(
    three_patients: None, claire: Doctor, claire_client: FlaskClient,
    preference: str, expected: list[str],
) -> None:
    claire.patients_view = preference
    db.session.commit()

    html = claire_client.get("/patients").get_data(as_text=True)

    assert names(html) == expected
    assert re.search(rf'view={preference}"\s+aria-current="page"', html)


@pytest.mark.parametrize(("view", "expected"), [
    ("all", ["Ancien Paul", "Bovet Lea", "Cuenod Ines"]),
    ("recent", ["Bovet Lea"]),
    ("unread", ["Cuenod Ines"]),
])
def test_the_view_can_be_changed_in_the_page(
    three_patients: None, claire: Doctor, claire_client: FlaskClient,
    view: str, expected: list[str],
) -> None:
    claire.patients_view = "unread" if view != "unread" else "all"
    db.session.commit()

    html = claire_client.get(f"/patients?view={view}").get_data(as_text=True)

    assert names(html) == expected


def test_recent_follows_the_number_of_months_of_the_profile(
    three_patients: None, claire: Doctor, claire_client: FlaskClient
) -> None:
    claire.patients_recent_months = 24
    db.session.commit()

    html = claire_client.get("/patients?view=recent").get_data(as_text=True)

    assert names(html) == ["Bovet Lea", "Cuenod Ines"]
    assert "24" in html


def test_an_unknown_view_falls_back_to_the_profile(
    three_patients: None, claire: Doctor, claire_client: FlaskClient
) -> None:
    html = claire_client.get("/patients?view=everything").get_data(as_text=True)

    assert names(html) == ["Ancien Paul", "Bovet Lea", "Cuenod Ines"]


def test_months_before_counts_calendar_months() -> None:
    assert months_before(datetime(2026, 3, 31, 9), 1) == datetime(2026, 2, 28, 9)
    assert months_before(datetime(2026, 1, 15), 12) == datetime(2025, 1, 15)
    assert months_before(datetime(2026, 1, 15), 13) == datetime(2024, 12, 15)


# --- search, order and pages -------------------------------------------------------------------


def test_search_by_family_or_given_name(
    clinic: Clinic, claire: Doctor, luc: Doctor, claire_client: FlaskClient
) -> None:
    clinic.patient("Muster", "Anna", consent_to=claire)
    clinic.patient("Zbinden", "Marc", consent_to=claire)
    clinic.patient("Mustermann", "Otto", consent_to=luc)

    assert names(claire_client.get("/patients?q=must").get_data(as_text=True)) == ["Muster Anna"]
    assert names(claire_client.get("/patients?q=MARC").get_data(as_text=True)) == ["Zbinden Marc"]
    assert names(claire_client.get("/patients?q=anna+muster").get_data(as_text=True)) == [
        "Muster Anna"
    ]
    empty = claire_client.get("/patients?q=100%25").get_data(as_text=True)
    assert names(empty) == []
    assert "Aucun patient ne correspond" in empty


def test_sorted_by_family_name_and_paginated(
    clinic: Clinic, claire: Doctor, claire_client: FlaskClient
) -> None:
    total = PAGE_SIZE + 3
    for i in reversed(range(total)):
        clinic.patient(f"Patient{i:03d}", "Test", consent_to=claire)

    first = claire_client.get("/patients").get_data(as_text=True)
    shown = names(first)
    assert shown == [f"Patient{i:03d} Test" for i in range(PAGE_SIZE)]
    match = re.search(r'rel="next" href="([^"]+)"', first)
    assert match is not None
    second = claire_client.get(match.group(1).replace("&amp;", "&")).get_data(as_text=True)
    assert names(second) == [f"Patient{i:03d} Test" for i in range(PAGE_SIZE, total)]
    assert 'rel="next"' not in second


def test_a_cursor_from_another_doctor_reveals_nothing(
    clinic: Clinic, claire: Doctor, luc: Doctor
) -> None:
    clinic.patient("Muster", "Anna", consent_to=claire)
    lucs = clinic.patient("Aaron", "Zoe", consent_to=luc)

    assert list_patients(claire, after=lucs.id).rows == []


# --- one query per page ------------------------------------------------------------------------




def test_the_list_costs_the_same_queries_for_one_patient_or_many(
    clinic: Clinic, claire: Doctor, claire_client: FlaskClient
) -> None:
    anna = clinic.patient("Muster", "Anna", consent_to=claire)
    clinic.letter(anna, claire)
    claire_client.get("/patients")  # warm up
    db.session.expire_all()  # the request reloads the signed-in doctor, as in production
    with counted_queries() as one:
        assert claire_client.get("/patients").status_code == 200

    for i in range(20):
        patient = clinic.patient(f"Patient{i:02d}", consent_to=claire)
        clinic.letter(patient, claire)
        clinic.letter(patient, claire, status="read")
    db.session.expire_all()
    with counted_queries() as many:
        html = claire_client.get("/patients").get_data(as_text=True)
    assert len(names(html)) == 21

    assert len(many) == len(one)
    assert sum("FROM patients" in s and "GROUP BY" in s for s in many) == 1


# --- the patient's page ------------------------------------------------------------------------


def test_the_patient_page_lists_this_doctors_visible_documents(
    clinic: Clinic, claire: Doctor, luc: Doctor, claire_client: FlaskClient
) -> None:
    anna = clinic.patient("Muster", "Anna", consent_to=claire)
    clinic.consent(anna, luc)
    unread = clinic.letter(anna, claire, title="Lettre de sortie", service="cardiologie",
                           days_ago=1)
    read = clinic.letter(anna, claire, title="Rapport de consultation", status="read",
                         service="neurologie", days_ago=5)
    clinic.letter(anna, claire, title="Lettre retenue", status="held")
    clinic.letter(anna, claire, title="Lettre bloquée", status="blocked")
    clinic.letter(anna, claire, title="Lettre annulée", status="cancelled")
    clinic.letter(anna, claire, title="Lettre signalée", reported=True)
    clinic.letter(anna, luc, title="Lettre pour Luc")

    response = claire_client.get(f"/patients/{anna.id}")

    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert_no_inline_code(html)
    links = re.findall(r'href="/documents/(\d+)">([^<]+)</a>', html)
    assert links == [(str(unread.id), "Lettre de sortie"),
                     (str(read.id), "Rapport de consultation")]
    for hidden in ("retenue", "bloquée", "annulée", "signalée", "pour Luc"):
        assert hidden not in html
    assert "02.04.1961" in html
    assert "Neurologie" in html and "Cardiologie" in html
    assert html.count("pt-badge-unread") == 1 and html.count("pt-badge-read") == 1


def test_the_patient_page_in_english(
    clinic: Clinic, claire: Doctor, claire_client: FlaskClient
) -> None:
    anna = clinic.patient("Muster", "Anna", consent_to=claire, revoked=True)
    clinic.letter(anna, claire)
    headers = {"Accept-Language": "en"}

    page = claire_client.get(f"/patients/{anna.id}", headers=headers).get_data(as_text=True)
    listing = claire_client.get("/patients", headers=headers).get_data(as_text=True)

    assert "consent revoked" in page and "Discharge letter" in page and "unread" in page
    assert "My patients" in listing and "Date of birth" in listing


@pytest.fixture()
def others_patient(clinic: Clinic, luc: Doctor) -> Patient:
    patient = clinic.patient("Favre", "Louise", consent_to=luc)
    clinic.letter(patient, luc)
    return patient


#: Every patients route that takes an id (the test below keeps this list complete).
ID_ROUTES = ["/patients/{id}"]


@pytest.mark.parametrize("route", ID_ROUTES)
def test_another_doctor_gets_404_like_for_a_patient_that_does_not_exist(
    app: Flask, claire: Doctor, claire_client: FlaskClient, others_patient: Patient, route: str
) -> None:
    mine_path, missing_path = route.format(id=others_patient.id), route.format(id=999_999)
    not_mine = claire_client.get(mine_path)
    missing = claire_client.get(missing_path)

    assert not_mine.status_code == missing.status_code == 404
    # The same page, but for the path itself (the language switch comes back to it) and the
    # CSRF token (signed with the time).
    def page(response: Any, path: str) -> str:
        html = response.get_data(as_text=True).replace(path, "PATH")
        return re.sub(r'name="csrf_token" value="[^"]+"', "CSRF", html)

    assert page(not_mine, mine_path) == page(missing, missing_path)
    assert "Favre" not in not_mine.get_data(as_text=True)


def test_every_patients_route_with_an_id_is_in_the_isolation_test(app: Flask) -> None:
    rules = {
        re.sub(r"<[^>]*>", "{id}", rule.rule)
        for rule in app.url_map.iter_rules()
        if rule.endpoint.startswith("patients.") and rule.arguments
    }
    assert rules == set(ID_ROUTES)

