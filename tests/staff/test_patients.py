"""Patients for hospital staff (/staff/patients): search, the patient page, recording and
revoking consents (the API's own service and minors' rule), the deliveries, registering a
patient not yet known. Attack tests first, then the stories.

Every test runs on SQLite and, with TEST_DATABASE_URL, on PostgreSQL.
"""

from __future__ import annotations

from datetime import date, timedelta
from html import unescape
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select, update
from werkzeug.test import TestResponse

from app.extensions import db
from app.gln import make_gln
from app.models import AuditEvent, Consent, Delivery, Doctor, Document, Patient, StaffUser
from app.models.base import utcnow
from tests.conftest import Api, audit_text, document_body
from tests.support.factories import make_doctor, make_patient, make_staff
from tests.support.pages import csrf_token
from tests.support.signin import sign_in_as
from tests.support.trail import events

GLN = "7601000000019"
OTHER_GLN = make_gln("760100000002")
UNKNOWN_GLN = make_gln("760100000009")
PATIENT = "P-0042"
LOGIN = "secretariat-cardio"

ROUTES = [
    ("GET", "/staff/patients"),
    ("GET", "/staff/patients?q=muster"),
    ("GET", f"/staff/patients/{PATIENT}"),
    ("POST", f"/staff/patients/{PATIENT}/consents"),
    ("POST", f"/staff/patients/{PATIENT}/consents/{GLN}/revoke"),
    ("GET", "/staff/patients/new"),
    ("POST", "/staff/patients/new"),
]
POST_ROUTES = [path for method, path in ROUTES if method == "POST"]


# --- fixtures and helpers --------------------------------------------------------------------


@pytest.fixture()
def staff(client: FlaskClient) -> StaffUser:
    user = make_staff(LOGIN, "staff", password=None, enrolled=False)
    sign_in_as(client, user)
    return user


def born(years: int, days: int = 0) -> date:
    """The birth date of someone ``years`` old today (UTC, the service's day), ``days`` older."""
    today = utcnow().date()
    try:
        day = today.replace(year=today.year - years)
    except ValueError:  # 29 February
        day = today.replace(year=today.year - years, day=28)
    return day - timedelta(days=days)


@pytest.fixture()
def patient(app: Any) -> Patient:
    return make_patient()


@pytest.fixture()
def doctor(app: Any) -> Doctor:
    return make_doctor()


def text(response: TestResponse) -> str:
    return response.get_data(as_text=True)


def token(client: FlaskClient, path: str = "/staff/patients") -> str:
    return csrf_token(client.get(path, follow_redirects=True))


def post(client: FlaskClient, path: str, data: dict[str, str] | None = None) -> TestResponse:
    return client.post(path, data={"csrf_token": token(client), **(data or {})})


ADULT_CONSENT = {"gln": GLN, "electronic_sending": "yes", "given_by": "patient"}


def record_consent(client: FlaskClient, dpi_id: str = PATIENT, **fields: str) -> TestResponse:
    return post(client, f"/staff/patients/{dpi_id}/consents", {**ADULT_CONSENT, **fields})


def consents() -> list[Consent]:
    db.session.expire_all()
    return list(db.session.scalars(select(Consent).order_by(Consent.id)))


def count(model: Any) -> int:
    db.session.expire_all()
    return int(db.session.scalar(select(func.count()).select_from(model)) or 0)


def error_of(response: TestResponse, field: str) -> str:
    html = text(response)
    marker = f'id="{field}-error">'
    assert marker in html, f"no error shown for {field}"
    start = html.index(marker) + len(marker)
    return unescape(html[start:html.index("</p>", start)])


def ingest(api: Api, document_id: str, **changes: Any) -> dict[str, Any]:
    body = document_body(document_id, **changes)
    answer = api.post("/api/v1/documents", json=body)
    assert answer.status_code == 201, answer.get_json()
    result: dict[str, Any] = answer.get_json()
    return result


# --- access --------------------------------------------------------------------------------


def test_the_desk_may_do_what_staff_do(client: FlaskClient, patient: Patient,
                                       doctor: Doctor) -> None:
    sign_in_as(client, make_staff("desk-test", "desk", password=None, enrolled=False))
    assert client.get(f"/staff/patients/{PATIENT}").status_code == 200
    assert record_consent(client).status_code == 303
    assert consents()[0].recorded_by == "desk-test"


@pytest.mark.parametrize("path", POST_ROUTES)
def test_a_post_without_csrf_token_is_refused(client: FlaskClient, staff: StaffUser,
                                              patient: Patient, doctor: Doctor,
                                              path: str) -> None:
    if path.endswith("/revoke"):
        record_consent(client)
    before = len(consents())
    answer = client.post(path, data={**ADULT_CONSENT, "dpi_id": "P-NEW", "family_name": "X",
                                     "given_name": "Y", "birth_date": "1990-01-01"})
    assert answer.status_code == 400
    assert len(consents()) == before
    assert all(c.revoked_at is None for c in consents())
    assert count(Patient) == 1


@pytest.mark.parametrize("dpi_id", ["P-9999", "bad id", "x" * 65, "-leading"])
def test_an_unknown_or_invalid_dpi_id_is_404(client: FlaskClient, staff: StaffUser,
                                             patient: Patient, dpi_id: str) -> None:
    assert client.get(f"/staff/patients/{dpi_id}").status_code == 404
    assert post(client, f"/staff/patients/{dpi_id}/consents", ADULT_CONSENT).status_code == 404
    assert post(client, f"/staff/patients/{dpi_id}/consents/{GLN}/revoke").status_code == 404
    assert events("patient.viewed") == []
    assert count(Patient) == 1


@pytest.mark.parametrize("gln", [UNKNOWN_GLN, "7601000000018", "abc"])
def test_revoking_a_consent_that_does_not_exist_is_404(client: FlaskClient, staff: StaffUser,
                                                       patient: Patient, doctor: Doctor,
                                                       gln: str) -> None:
    assert post(client, f"/staff/patients/{PATIENT}/consents/{gln}/revoke").status_code == 404
    assert events("consent.revoked") == []


# --- searching -------------------------------------------------------------------------------


@pytest.fixture()
def many(app: Any) -> None:
    make_patient("P-1", "Muster", "Anna", date(1961, 4, 2))
    make_patient("P-2", "Muster", "Jean", date(1990, 1, 15))
    make_patient("P-3", "Favre", "Annabelle", date(1961, 4, 2))
    make_patient("P-10", "Rochat", "Luc", date(2012, 6, 30))


@pytest.mark.parametrize(("params", "found"), [
    ({"q": "must"}, ["P-1", "P-2"]),
    ({"q": "ANNA"}, ["P-1", "P-3"]),
    ({"q": "anna muster"}, ["P-1"]),
    ({"q": "muster", "birth_date": "1990-01-15"}, ["P-2"]),
    ({"q": "", "birth_date": "1961-04-02"}, ["P-1", "P-3"]),
    ({"dpi_id": "P-1"}, ["P-1"]),
    ({"dpi_id": "p-1"}, []),
    ({"dpi_id": "P-"}, []),
    ({"q": "%"}, []),
])
def test_search_by_name_birth_date_or_dpi_id(client: FlaskClient, staff: StaffUser, many: None,
                                             params: dict[str, str], found: list[str]) -> None:
    answer = client.get("/staff/patients", query_string=params)
    assert answer.status_code == 200
    html = text(answer)
    shown = sorted(p for p in ("P-1", "P-2", "P-3", "P-10") if f"<td>{p}</td>" in html)
    assert shown == sorted(found)


def test_a_search_is_audited_without_the_query(client: FlaskClient, staff: StaffUser,
                                               many: None) -> None:
    client.get("/staff/patients", query_string={"q": "muster", "birth_date": "1990-01-15"})
    [event] = events("patients.searched")
    assert event.actor == f"staff:{LOGIN}"
    assert event.details == {"results": 1, "by": "name"}
    assert "uster" not in audit_text() and "1990" not in audit_text()


def test_an_empty_form_searches_nothing(client: FlaskClient, staff: StaffUser,
                                        many: None) -> None:
    answer = client.get("/staff/patients")
    assert answer.status_code == 200
    assert "<td>P-1</td>" not in text(answer)
    assert events("patients.searched") == []


def test_search_results_are_limited(client: FlaskClient, staff: StaffUser) -> None:
    for n in range(51):
        db.session.add(Patient(dpi_id=f"P-{n}", family_name="Dupont", given_name=f"J{n}",
                               birth_date=date(1980, 1, 1)))
    db.session.commit()
    html = text(client.get("/staff/patients?q=dupont"))
    assert html.count("<td>P-") == 50
    assert "Précisez la recherche" in html


@pytest.mark.parametrize(("params", "field"), [
    ({"q": "x" * 101}, "q"),
    ({"q": "mus\x00ter"}, "q"),
    ({"q": "muster", "birth_date": "02.04.1961"}, "birth_date"),
    ({"q": "muster", "birth_date": "1961-02-30"}, "birth_date"),
    ({"dpi_id": "P 1"}, "dpi_id"),
    ({"dpi_id": "P" * 65}, "dpi_id"),
])
def test_bad_search_input_is_a_clear_error(client: FlaskClient, staff: StaffUser, many: None,
                                           params: dict[str, str], field: str) -> None:
    answer = client.get("/staff/patients", query_string=params)
    assert answer.status_code == 422
    assert error_of(answer, field)
    assert events("patients.searched") == []


def test_a_dpi_id_not_found_offers_to_register_the_patient(client: FlaskClient,
                                                           staff: StaffUser) -> None:
    html = text(client.get("/staff/patients?dpi_id=P-777"))
    assert 'href="/staff/patients/new?dpi_id=P-777"' in html
    assert "Enregistrer un patient et son consentement" in html


# --- the patient page ------------------------------------------------------------------------


def test_the_patient_page_shows_the_identity_and_is_audited(client: FlaskClient,
                                                            staff: StaffUser) -> None:
    make_patient(birth_date=born(40))
    html = text(client.get(f"/staff/patients/{PATIENT}"))
    assert "<h1>Muster Anna</h1>" in html
    assert "40 ans" in html
    assert born(40).strftime("%d.%m.%Y") in html
    assert "Patient de 16 ans ou plus" in html
    [event] = events("patient.viewed")
    assert (event.actor, event.target, event.patient) == (f"staff:{LOGIN}", f"patient:{PATIENT}",
                                                          PATIENT)
    assert "Muster" not in audit_text()


@pytest.mark.parametrize(("years", "days", "rule"), [
    (12, -1, "moins de 12 ans"),
    (12, 0, "de 12 à 15 ans"),
    (16, -1, "de 12 à 15 ans"),
    (16, 0, "16 ans ou plus"),
])
def test_the_page_says_which_rule_applies_today(client: FlaskClient, staff: StaffUser,
                                                years: int, days: int, rule: str) -> None:
    make_patient(birth_date=born(years, days))
    assert rule in text(client.get(f"/staff/patients/{PATIENT}"))


def test_a_deceased_patient_is_marked(client: FlaskClient, staff: StaffUser,
                                      patient: Patient) -> None:
    patient.deceased_at = utcnow()
    db.session.commit()
    assert "Décédé" in text(client.get(f"/staff/patients/{PATIENT}"))
    assert "Décédé" in text(client.get("/staff/patients?q=muster"))


def test_hostile_names_are_escaped(client: FlaskClient, staff: StaffUser) -> None:
    make_patient(family_name="<script>alert(1)</script>",
                 given_name="<img src=x onerror=alert(2)>")
    make_doctor(family_name="<b>Evil</b>", given_name="<i>Doc</i>")
    record_consent(client, representative_name="")
    for html in (text(client.get(f"/staff/patients/{PATIENT}")),
                 text(client.get("/staff/patients?q=script")),
                 text(client.get(f"/staff/doctors?q=evil&for={PATIENT}"))):
        assert "<script>alert(1)" not in html
        assert "<img src=x" not in html and "<b>Evil" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text(client.get(f"/staff/patients/{PATIENT}"))


def test_the_gln_from_the_lookup_is_filled_in(client: FlaskClient, staff: StaffUser,
                                              patient: Patient) -> None:
    html = text(client.get(f"/staff/patients/{PATIENT}?gln={GLN}"))
    assert f'name="gln" type="text" value="{GLN}"' in html
    assert f'href="/staff/doctors?for={PATIENT}"' in html
    html = text(client.get(f"/staff/patients/{PATIENT}?gln=<b>"))
    assert 'name="gln" type="text" value=""' in html


# --- recording consents ----------------------------------------------------------------------


def test_staff_record_an_adults_consent(client: FlaskClient, staff: StaffUser, patient: Patient,
                                        doctor: Doctor) -> None:
    answer = record_consent(client, recorded_by="someone-else", family_name="Hacker")
    assert answer.status_code == 303
    assert answer.headers["Location"] == f"/staff/patients/{PATIENT}"
    [consent] = consents()
    assert consent.electronic_sending and consent.revoked_at is None
    assert (consent.given_by, consent.recorded_by) == ("patient", LOGIN)
    assert consent.representative_name is None and consent.minor_agreement is False
    db.session.refresh(patient)
    assert (patient.family_name, patient.given_name) == ("Muster", "Anna")
    [event] = events("consent.recorded")
    assert event.actor == f"staff:{LOGIN}"
    assert event.target == f"consent:{PATIENT}/{GLN}"
    assert event.details["recorded_by"] == LOGIN
    html = text(client.get(f"/staff/patients/{PATIENT}"))
    assert "Consentement enregistré pour Claire Muller" in html
    assert "Révoquer le consentement" in html


def test_a_gln_typed_with_spaces_is_taken(client: FlaskClient, staff: StaffUser,
                                          patient: Patient, doctor: Doctor) -> None:
    assert record_consent(client, gln=" 760 1000 000019 ").status_code == 303
    assert consents()[0].doctor.gln == GLN


def test_an_unknown_gln_creates_a_pending_doctor_and_says_so(
    client: FlaskClient, staff: StaffUser, patient: Patient
) -> None:
    answer = record_consent(client, gln=UNKNOWN_GLN)
    assert answer.status_code == 303
    doctor = db.session.scalar(select(Doctor).where(Doctor.gln == UNKNOWN_GLN))
    assert doctor is not None and doctor.state == "pending"
    assert events("doctor.created_pending")
    html = text(client.get(f"/staff/patients/{PATIENT}"))
    assert "ajouté en attente" in html
    assert "Médecin en attente (nom inconnu)" in html


def test_a_known_inactive_doctor_is_said(client: FlaskClient, staff: StaffUser,
                                         patient: Patient) -> None:
    make_doctor(state="deactivated")
    record_consent(client)
    assert "n'est pas actif" in unescape(text(client.get(f"/staff/patients/{PATIENT}")))


def test_a_designation_without_electronic_sending(client: FlaskClient, staff: StaffUser,
                                                  patient: Patient, doctor: Doctor) -> None:
    assert record_consent(client, electronic_sending="no").status_code == 303
    [consent] = consents()
    assert not consent.electronic_sending and consent.revoked_at is not None
    assert "sans envoi électronique" in text(client.get(f"/staff/patients/{PATIENT}"))


@pytest.mark.parametrize(("fields", "field", "message"), [
    ({"gln": ""}, "gln", "Le GLN n'est pas valable"),
    ({"gln": "7601000000018"}, "gln", "Le GLN n'est pas valable"),
    ({"gln": "760100000001"}, "gln", "Le GLN n'est pas valable"),
    ({"electronic_sending": ""}, "electronic_sending", "Indiquez si l'envoi électronique"),
    ({"electronic_sending": "maybe"}, "electronic_sending", "Indiquez si l'envoi électronique"),
    ({"given_by": ""}, "given_by", "Indiquez qui donne le consentement"),
    ({"given_by": "neighbour"}, "given_by", "Indiquez qui donne le consentement"),
    ({"given_by": "representative", "representative_name": "R" * 201},
     "representative_name", "200 caractères au plus"),
    ({"given_by": "representative", "representative_name": "Jean\x00Dupont"},
     "representative_name", "sans caractères de contrôle"),
    ({"given_by": "representative", "representative_name": "   "},
     "representative_name", "doit nommer ce représentant"),
    ({"given_by": "representative"}, "representative_name", "doit nommer ce représentant"),
])
def test_every_field_error_is_shown_and_nothing_stored(
    client: FlaskClient, staff: StaffUser, patient: Patient, doctor: Doctor,
    fields: dict[str, str], field: str, message: str
) -> None:
    before = count(AuditEvent)
    answer = record_consent(client, **fields)
    assert answer.status_code == 422
    assert message in error_of(answer, field)
    assert "Rien n'a été enregistré" in unescape(text(answer))
    assert consents() == []
    assert count(Doctor) == 1
    # only the view of the page that shows the errors
    assert [e.action for e in events("patient.viewed")] and count(AuditEvent) == before + 1


def test_an_overlong_gln_is_refused_without_storing(client: FlaskClient, staff: StaffUser,
                                                    patient: Patient) -> None:
    answer = record_consent(client, gln="7" * 5000)
    assert answer.status_code == 422
    assert error_of(answer, "gln")
    assert count(Doctor) == 0 and consents() == []


@pytest.mark.parametrize(("years", "days", "fields", "field", "message"), [
    # 11 (12 tomorrow): a representative, named
    (12, -1, {"given_by": "patient"}, "given_by", "moins de 12 ans ne peut pas consentir seul"),
    (12, -1, {"given_by": "representative"}, "representative_name", "doit nommer"),
    (12, -1, {"given_by": "representative", "representative_name": "Jean Dupont"}, None, None),
    # 12 today, and 15: a representative, with the young person's agreement
    (12, 0, {"given_by": "patient", "minor_agreement": "yes"}, "given_by",
     "de 12 à 15 ans ne peut pas consentir seul"),
    (12, 0, {"given_by": "representative", "representative_name": "Jean Dupont"},
     "minor_agreement", "doit aussi signer son accord"),
    (12, 0, {"given_by": "representative", "representative_name": "Jean Dupont",
             "minor_agreement": "yes"}, None, None),
    (16, -1, {"given_by": "representative", "representative_name": "Jean Dupont"},
     "minor_agreement", "doit aussi signer son accord"),
    (16, -1, {"given_by": "representative", "representative_name": "Jean Dupont",
              "minor_agreement": "yes"}, None, None),
    # 16 today: the patient alone
    (16, 0, {"given_by": "patient"}, None, None),
    (16, 0, {"given_by": "representative", "representative_name": "Marie Dupont"}, None, None),
])
def test_the_minors_rule_from_the_page(client: FlaskClient, staff: StaffUser, doctor: Doctor,
                                       years: int, days: int, fields: dict[str, str],
                                       field: str | None, message: str | None) -> None:
    make_patient(birth_date=born(years, days))
    answer = record_consent(client, **fields)
    if field is None:
        assert answer.status_code == 303, error_of(answer, "given_by")
        [consent] = consents()
        assert consent.given_by == fields["given_by"]
        assert consent.minor_agreement is (fields.get("minor_agreement") == "yes")
        return
    assert answer.status_code == 422
    assert message is not None and message in error_of(answer, field)
    assert consents() == [] and events("consent.recorded") == []


def test_the_rule_is_shown_in_english(client: FlaskClient, staff: StaffUser,
                                      doctor: Doctor) -> None:
    make_patient(birth_date=born(14))
    answer = client.post(f"/staff/patients/{PATIENT}/consents",
                         data={"csrf_token": token(client), **ADULT_CONSENT},
                         headers={"Accept-Language": "en"})
    assert answer.status_code == 422
    assert "cannot consent alone" in error_of(answer, "given_by")
    assert "From 12 to 15" in text(answer) or "12 to 15" in text(answer)


# --- revoking ------------------------------------------------------------------------------


def test_revoking_cancels_held_deliveries_and_keeps_delivered_ones(
    client: FlaskClient, staff: StaffUser, doctor: Doctor, api_token: str
) -> None:
    api = Api(client, api_token)
    make_patient()
    record_consent(client)
    ingest(api, "DOC-DELIVERED")
    ingest(api, "DOC-HELD", sensitive=True, signed_at=utcnow().isoformat())
    html = text(client.get(f"/staff/patients/{PATIENT}"))
    assert "Retenu" in html and "Remis" in html and "envoi prévu le" in html

    answer = post(client, f"/staff/patients/{PATIENT}/consents/{GLN}/revoke")
    assert answer.status_code == 303
    [consent] = consents()
    assert consent.revoked_at is not None
    statuses: dict[str, str] = {}
    for document_id, status in db.session.execute(
            select(Document.document_id, Delivery.status).join(Delivery.document)):
        statuses[document_id] = status
    assert statuses == {"DOC-DELIVERED": "delivered", "DOC-HELD": "cancelled"}
    assert [e.actor for e in events("consent.revoked")] == [f"staff:{LOGIN}"]
    assert [e.target for e in events("delivery.cancelled")] == ["document:DOC-HELD"]
    html = text(client.get(f"/staff/patients/{PATIENT}"))
    assert "Consentement révoqué" in html and "Annulé" in html
    assert "Révoquer le consentement" not in html

    # Twice: nothing more happens
    assert post(client, f"/staff/patients/{PATIENT}/consents/{GLN}/revoke").status_code == 303
    assert len(events("consent.revoked")) == 1
    assert "déjà révoqué" in text(client.get(f"/staff/patients/{PATIENT}"))


# --- deliveries ----------------------------------------------------------------------------


def test_deliveries_show_metadata_and_statuses_never_content(
    client: FlaskClient, staff: StaffUser, doctor: Doctor, api_token: str
) -> None:
    api = Api(client, api_token)
    make_patient()
    make_doctor(OTHER_GLN, "Rochat", "Luc")
    record_consent(client)
    ingest(api, "DOC-1", title="<b>Lettre</b> de sortie", recipients=[GLN, OTHER_GLN])
    ingest(api, "DOC-2", third_party_data=True, title="Rapport tiers")
    db.session.execute(update(Delivery).where(Delivery.recipient_gln == GLN)
                       .values(reported_not_my_patient_at=utcnow()))
    db.session.commit()
    html = text(client.get(f"/staff/patients/{PATIENT}"))
    assert "&lt;b&gt;Lettre&lt;/b&gt; de sortie" in html
    assert "Lettre de sortie" in html  # the type, in words
    assert "Bloqué" in html and "Données de tiers" in html
    assert "Pas de consentement à l'envoi électronique" in unescape(html)  # Rochat: no consent
    assert "« pas mon patient » signalé le" in html
    assert "Claire Muller" in html and f"GLN {OTHER_GLN}" in html
    assert "/documents/" not in html and "/content" not in html
    # newest first
    assert html.index("Rapport tiers") < html.index("de sortie</th>")


def test_many_deliveries_are_paged(client: FlaskClient, staff: StaffUser, doctor: Doctor,
                                   api_token: str) -> None:
    api = Api(client, api_token)
    make_patient()
    record_consent(client)
    for n in range(51):
        ingest(api, f"DOC-{n:02d}")
    html = text(client.get(f"/staff/patients/{PATIENT}"))
    assert html.count("<th scope=\"row\">Lettre de sortie</th>") == 50
    assert f"/staff/patients/{PATIENT}?shown=100" in html
    html = text(client.get(f"/staff/patients/{PATIENT}?shown=100"))
    assert html.count("<th scope=\"row\">Lettre de sortie</th>") == 51
    assert "shown=" not in html


# --- a patient not yet known -----------------------------------------------------------------


NEW_PATIENT = {"dpi_id": "P-NEW", "family_name": "Rochat", "given_name": "Léa",
               "birth_date": "1985-03-04", **ADULT_CONSENT}


def test_staff_register_a_patient_with_a_consent(client: FlaskClient, staff: StaffUser,
                                                 doctor: Doctor) -> None:
    assert 'value="P-NEW"' in text(client.get("/staff/patients/new?dpi_id=P-NEW"))
    answer = post(client, "/staff/patients/new", NEW_PATIENT)
    assert answer.status_code == 303
    assert answer.headers["Location"] == "/staff/patients/P-NEW"
    patient = db.session.scalar(select(Patient).where(Patient.dpi_id == "P-NEW"))
    assert patient is not None
    assert (patient.family_name, patient.given_name, patient.birth_date) == (
        "Rochat", "Léa", date(1985, 3, 4))
    [consent] = consents()
    assert consent.recorded_by == LOGIN
    [event] = events("patient.registered")
    assert event.patient == "P-NEW" and event.actor == f"staff:{LOGIN}"
    assert "Rochat" not in audit_text()


def test_registering_a_known_patient_never_overwrites_the_identity(
    client: FlaskClient, staff: StaffUser, patient: Patient, doctor: Doctor
) -> None:
    answer = post(client, "/staff/patients/new", {**NEW_PATIENT, "dpi_id": PATIENT})
    assert answer.status_code == 303
    assert answer.headers["Location"] == f"/staff/patients/{PATIENT}"
    db.session.refresh(patient)
    assert (patient.family_name, patient.given_name) == ("Muster", "Anna")
    assert consents() == []
    assert "déjà connu" in text(client.get(answer.headers["Location"]))


@pytest.mark.parametrize(("fields", "field"), [
    ({"dpi_id": ""}, "dpi_id"),
    ({"dpi_id": "P NEW"}, "dpi_id"),
    ({"dpi_id": "P" * 65}, "dpi_id"),
    ({"family_name": ""}, "family_name"),
    ({"family_name": "R" * 201}, "family_name"),
    ({"given_name": "L\x1ba"}, "given_name"),
    ({"birth_date": ""}, "birth_date"),
    ({"birth_date": "04.03.1985"}, "birth_date"),
    ({"birth_date": "1985-02-30"}, "birth_date"),
    ({"birth_date": (utcnow().date() + timedelta(days=2)).isoformat()}, "birth_date"),
    ({"birth_date": born(10).isoformat()}, "given_by"),
    ({"gln": "123"}, "gln"),
])
def test_registration_errors_store_nothing(client: FlaskClient, staff: StaffUser,
                                           doctor: Doctor, fields: dict[str, str],
                                           field: str) -> None:
    answer = post(client, "/staff/patients/new", {**NEW_PATIENT, **fields})
    assert answer.status_code == 422
    assert error_of(answer, field)
    assert count(Patient) == 0 and consents() == []
    assert events("patient.registered") == [] and events("consent.recorded") == []


def test_a_patient_the_dpi_creates_meanwhile_keeps_the_dpis_identity(
    client: FlaskClient, staff: StaffUser, doctor: Doctor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The DPI stores the patient between the check and the insert: the retry records the
    consent without overwriting the identity the DPI sent."""
    from sqlalchemy.exc import IntegrityError

    from app.dispatch import consent
    from app.staff.patients import consents as staff_consents

    real = consent.record_consent
    calls: list[str] = []

    def racing(*args: Any, **kwargs: Any) -> Any:
        if not calls:
            calls.append("raced")
            with db.engine.begin() as connection:
                connection.execute(Patient.__table__.insert().values(
                    dpi_id="P-NEW", family_name="Rochat-DPI", given_name="Léa",
                    birth_date=date(1985, 3, 4), created_at=utcnow(), updated_at=utcnow()))
            raise IntegrityError("INSERT INTO patients", None, Exception("duplicate"))
        return real(*args, **kwargs)

    monkeypatch.setattr(staff_consents, "record_consent", racing)
    answer = post(client, "/staff/patients/new", NEW_PATIENT)
    assert answer.status_code == 303
    db.session.expire_all()
    patient = db.session.scalar(select(Patient).where(Patient.dpi_id == "P-NEW"))
    assert patient is not None and patient.family_name == "Rochat-DPI"
    assert len(consents()) == 1
