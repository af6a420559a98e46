"""The recipient lookup (/staff/doctors): the API's search, for staff choosing a recipient.

Every test runs on SQLite and, with TEST_DATABASE_URL, on PostgreSQL.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from app.dispatch import directory
from app.extensions import db
from app.gln import make_gln
from app.models import Doctor, HinIdentity, Patient, StaffUser
from tests.conftest import Api
from tests.support.factories import make_doctor, make_staff
from tests.support.signin import sign_in_as

GLN_MULLER = "7601000000019"


@pytest.fixture()
def staff(client: FlaskClient) -> StaffUser:
    user = make_staff("staff-test", "staff", password=None, enrolled=False)
    sign_in_as(client, user)
    return user


def add_doctor(gln: str, family: str, given: str, *, locality: str | None = None,
               specialties: tuple[str, ...] = (), state: str = "active",
               notifications: str = "none", login: str | None = None,
               hin: bool = False) -> Doctor:
    identities = [HinIdentity(provider="https://idp.hin.test", subject=gln)] if hin else []
    return make_doctor(gln, family, given, state=state, activated_at=None, locality=locality,
                       notification_mode=notifications, login=login,
                       specialties=list(specialties), identities=identities)


@pytest.fixture()
def doctors(app: Any) -> list[Doctor]:
    return [
        add_doctor(GLN_MULLER, "Muller", "Claire", locality="Genève",
                   specialties=("cardiologie", "medecine_interne_generale"), hin=True,
                   notifications="immediate"),
        add_doctor(make_gln("760100000002"), "Rochat", "Luc", locality="Carouge",
                   specialties=("pediatrie",), login="lrochat"),
        add_doctor(make_gln("760100000003"), "Favre", "Élise", locality="Genève",
                   specialties=("pediatrie",), state="pending"),
    ]


def page(client: FlaskClient, **params: str) -> TestResponse:
    return client.get("/staff/doctors", query_string=params)


def text(response: TestResponse) -> str:
    return response.get_data(as_text=True)


def rows(response: TestResponse) -> int:
    return text(response).count('<th scope="row">')


# --- who may look -------------------------------------------------------------------------


def test_staff_and_desk_may_look_up_doctors(client: FlaskClient, doctors: list[Doctor]) -> None:
    for role in ("staff", "desk"):
        sign_in_as(client, make_staff(f"{role}-lookup", role, password=None, enrolled=False))
        answer = page(client, q="muller")
        assert answer.status_code == 200
        assert "Muller Claire" in text(answer)


# --- searching ------------------------------------------------------------------------------


def test_nothing_is_searched_before_a_question(client: FlaskClient, staff: StaffUser,
                                               doctors: list[Doctor]) -> None:
    answer = page(client)
    assert answer.status_code == 200
    assert rows(answer) == 0
    assert "Aucun médecin" not in text(answer)


def test_search_by_specialty_shows_every_fact_staff_need(
    client: FlaskClient, staff: StaffUser, doctors: list[Doctor]
) -> None:
    answer = page(client, specialty="cardiologie")
    html = text(answer)
    assert rows(answer) == 1
    assert "Muller Claire" in html and GLN_MULLER in html
    assert "Cardiologie, Médecine interne générale" in html
    assert "Genève" in html
    # active, HIN, notifications on
    row = html[html.index("Muller Claire"):html.index("</tr>", html.index("Muller Claire"))]
    assert row.count("Oui") == 2
    assert "HIN" in row


def test_sign_in_mode_and_state_in_words(client: FlaskClient, staff: StaffUser,
                                         doctors: list[Doctor]) -> None:
    html = text(page(client, specialty="pediatrie"))
    rochat = html[html.index("Rochat Luc"):]
    rochat = rochat[:rochat.index("</tr>")]
    assert "Identifiant, mot de passe et code SMS" in rochat
    favre = html[html.index("Favre Élise"):]
    favre = favre[:favre.index("</tr>")]
    assert "En attente" in favre and "Non" in favre


@pytest.mark.parametrize(("params", "found"), [
    ({"q": "MULL"}, ["Muller"]),
    ({"q": "claire"}, ["Muller"]),
    ({"q": GLN_MULLER[:7]}, ["Favre", "Muller", "Rochat"]),
    ({"q": GLN_MULLER}, ["Muller"]),
    ({"locality": "genève"}, ["Favre", "Muller"]),
    ({"locality": "carouge"}, ["Rochat"]),
    ({"specialty": "pediatrie", "locality": "Genève"}, ["Favre"]),
    ({"q": "%"}, []),
    ({"q": "_"}, []),
])
def test_search_by_name_gln_specialty_and_locality(
    client: FlaskClient, staff: StaffUser, doctors: list[Doctor],
    params: dict[str, str], found: list[str]
) -> None:
    answer = page(client, **params)
    assert answer.status_code == 200
    html = text(answer)
    assert rows(answer) == len(found)
    for name in found:
        assert name in html
    if not found:
        assert "Aucun médecin ne correspond à cette recherche." in html


def test_results_are_limited_with_a_note_to_refine(client: FlaskClient, staff: StaffUser) -> None:
    for n in range(51):
        db.session.add(Doctor(gln=make_gln(f"7601000{n:05d}"), family_name=f"Dupont{n:02d}",
                              given_name="Jean", state="active"))
    db.session.commit()
    answer = page(client, q="dupont")
    assert rows(answer) == 50
    assert "précisez la recherche" in text(answer).lower()
    answer = page(client, q="dupont4")
    assert rows(answer) == 10
    assert "précisez la recherche" not in text(answer).lower()


@pytest.mark.parametrize(("params", "field", "message"), [
    ({"q": "x" * 101}, "q", "100 caractères au plus."),
    ({"q": "mul\x01ler"}, "q", "Sans caractères de contrôle"),
    ({"locality": "g" * 101}, "locality", "100 caractères au plus."),
    ({"locality": "Gen\x7fève"}, "locality", "Sans caractères de contrôle"),
    ({"specialty": "astrologie"}, "specialty", "Choisissez une spécialité de la liste."),
    ({"specialty": "s" * 65}, "specialty", "64 caractères au plus."),
])
def test_bad_input_is_a_clear_error(client: FlaskClient, staff: StaffUser,
                                    doctors: list[Doctor], params: dict[str, str], field: str,
                                    message: str) -> None:
    answer = page(client, **params)
    assert answer.status_code == 422
    html = text(answer)
    assert f'id="{field}-error"' in html
    assert message in html
    assert rows(answer) == 0


def test_hostile_names_are_escaped(client: FlaskClient, staff: StaffUser) -> None:
    add_doctor(GLN_MULLER, "<script>alert(1)</script>", "<b>Eve</b>",
               locality="<img src=x onerror=alert(1)>")
    html = text(page(client, q="script"))
    assert "<script>alert(1)" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_english_page(client: FlaskClient, staff: StaffUser, doctors: list[Doctor]) -> None:
    answer = client.get("/staff/doctors", query_string={"specialty": "cardiologie"},
                        headers={"Accept-Language": "en"})
    html = text(answer)
    assert "Recipient doctors" in html
    assert "Cardiology" in html


# --- choosing a recipient for a patient --------------------------------------------------------


def test_coming_from_a_patient_each_result_links_to_the_consent_form(
    client: FlaskClient, staff: StaffUser, doctors: list[Doctor]
) -> None:
    from datetime import date

    db.session.add(Patient(dpi_id="P-0042", family_name="Muster", given_name="Anna",
                           birth_date=date(1961, 4, 2)))
    db.session.commit()
    html = text(page(client, q="muller", **{"for": "P-0042"}))
    assert f'href="/staff/patients/P-0042?gln={GLN_MULLER}#consent-form"' in html
    assert 'name="for" value="P-0042"' in html  # a new search keeps the patient


@pytest.mark.parametrize("for_", ["P-9999", "<script>", "x" * 65])
def test_an_unknown_patient_gives_no_choice_link(client: FlaskClient, staff: StaffUser,
                                                 doctors: list[Doctor], for_: str) -> None:
    answer = page(client, q="muller", **{"for": for_})
    assert answer.status_code == 200
    assert "Choisir" not in text(answer)


# --- the same search as GET /api/v1/doctors -----------------------------------------------------


def test_the_page_and_the_api_find_the_same_doctors(
    client: FlaskClient, staff: StaffUser, doctors: list[Doctor], api_token: str
) -> None:
    api = Api(client, api_token)
    for params in ({"q": "genève"}, {"specialty": "pediatrie"}, {"q": "76010"}):
        from_api = [d["gln"] for d in api.get("/api/v1/doctors", query_string=params)
                    .get_json()["doctors"]]
        from_search = [d.gln for d in directory.find_doctors(params.get("q", ""),
                                                             params.get("specialty", ""))]
        assert from_api == from_search
        html = text(page(client, **params))
        assert all(gln in html for gln in from_api)
        assert rows(page(client, **params)) == len(from_api)


def test_the_api_answers_and_validates_as_before(client: FlaskClient, doctors: list[Doctor],
                                                 api_token: str) -> None:
    api = Api(client, api_token)
    body = api.get("/api/v1/doctors", query_string={"specialty": "cardiologie"}).get_json()
    assert body == {"doctors": [{
        "gln": GLN_MULLER, "family_name": "Muller", "given_name": "Claire",
        "specialties": ["cardiologie", "medecine_interne_generale"], "locality": "Genève",
        "active": True, "state": "active", "sign_in_mode": "hin", "notifications": True,
    }]}
    # q also matches the locality in the API (no separate locality parameter there)
    assert len(api.get("/api/v1/doctors?q=carouge").get_json()["doctors"]) == 1
    assert len(api.get("/api/v1/doctors?limit=2").get_json()["doctors"]) == 2
    bad = api.get("/api/v1/doctors", query_string={"q": "x" * 101, "specialty": "a\x01"})
    assert bad.status_code == 422
    assert bad.get_json()["errors"] == [
        {"field": "q", "message": "must be at most 100 characters"},
        {"field": "specialty", "message": "must not contain control characters"},
    ]
    assert api.get("/api/v1/doctors?limit=201").status_code == 422
