"""Help and the privacy notice: reachable by anyone, in French and English, with the desk's data."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.extensions import db
from app.models import Doctor
from app.models.base import utcnow
from tests.conftest import sibling_app
from tests.support.pages import assert_no_inline_code
from tests.support.signin import sign_in_as

PAGES = ["/help", "/privacy"]


@pytest.mark.parametrize("path", PAGES)
def test_reachable_without_signing_in_and_without_inline_code(
    client: FlaskClient, path: str
) -> None:
    response = client.get(path)

    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert_no_inline_code(html)
    assert '<html lang="fr">' in html


def test_help_gives_the_desk_of_the_seeds_by_default(client: FlaskClient) -> None:
    html = client.get("/help").get_data(as_text=True)

    assert "+41 22 372 62 01" in html
    assert 'href="tel:+41223726201"' in html
    assert 'href="mailto:myhug@hcuge.ch"' in html
    assert "Rue Gabrielle-Perret-Gentil 4" in html
    assert "Lundi au vendredi" in html
    assert "pièce d'identité" in html  # what to bring to the desk
    assert "0848 830 741" in html  # HIN support for HIN users
    assert "Mot de passe oublié" in html and "Téléphone mobile perdu" in html
    assert 'href="/privacy"' in html


def test_help_in_english(client: FlaskClient) -> None:
    html = client.get("/help", headers={"Accept-Language": "en"}).get_data(as_text=True)

    assert '<html lang="en">' in html
    assert "Forgotten password" in html and "Lost or changed mobile phone" in html
    assert "Monday to Friday" in html
    assert "identity document" in html
    assert "Mot de passe oublié" not in html


def test_the_desk_details_come_from_the_configuration(app: Flask) -> None:
    desk = {
        "DESK_PHONE": "+41 21 555 00 00",
        "DESK_EMAIL": "support@hopital.example",
        "DESK_HOURS": "Mardi et jeudi, 9 h – 11 h",
        "DESK_ADDRESS": "Hôpital Exemple – Avenue du Lac 1 – 1000 Lausanne",
    }
    with sibling_app(app, **desk) as other, other.app_context():
        client = other.test_client()
        for path in PAGES:
            for language in ("fr", "en"):
                html = client.get(path, headers={"Accept-Language": language}).get_data(
                    as_text=True
                )
                assert "support@hopital.example" in html, (path, language)
                assert "+41 21 555 00 00" in html and 'href="tel:+41215550000"' in html
                assert "myhug@hcuge.ch" not in html
        help_page = client.get("/help").get_data(as_text=True)
        assert "Mardi et jeudi, 9 h – 11 h" in help_page
        assert "Avenue du Lac 1" in help_page


def test_the_desk_settings_pass_through_the_environment(tmp_path: object) -> None:
    from app.config import load_settings

    settings = load_settings(str(tmp_path), environ={"DESK_EMAIL": "desk@example.ch"})

    assert settings.flask_config()["DESK_EMAIL"] == "desk@example.ch"
    assert settings.flask_config()["DESK_PHONE"] == "+41 22 372 62 01"


@pytest.mark.parametrize(("language", "expected"), [
    ("fr", ["Responsable du traitement", "Finalités", "Données traitées", "Destinataires",
            "Durée de conservation", "Vos droits", "Droit d'accès",
            "Droit de rectification", "Mesures de sécurité", "Contact", "nLPD"]),
    ("en", ["Controller", "Purposes", "Data processed", "Recipients", "Retention",
            "Your rights", "Right of access", "Right to rectification", "Security measures",
            "Contact", "FADP"]),
])
def test_the_privacy_notice_covers_what_the_law_asks(
    client: FlaskClient, language: str, expected: list[str]
) -> None:
    html = client.get("/privacy", headers={"Accept-Language": language}).get_data(as_text=True)

    for text in expected:
        assert text in html, text
    assert "myhug@hcuge.ch" in html


def test_a_signed_in_doctor_reads_them_too(app: Flask, client: FlaskClient) -> None:
    doctor = Doctor(gln="7601000000019", family_name="Muller", given_name="Claire",
                    state="active", activated_at=utcnow())
    db.session.add(doctor)
    db.session.commit()
    sign_in_as(client, doctor)

    for path in PAGES:
        response = client.get(path)
        assert response.status_code == 200
        assert "Claire Muller" in response.get_data(as_text=True)
