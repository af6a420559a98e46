"""Demo data for a laptop: doctors, patients, consents, documents in every state.

Loaded through the same services as the API, so every decision is real and audited.
Idempotent: what exists already is left as it is.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import select

from app.audit import Actor, record
from app.auth.passwords import hash_password
from app.auth.staff_factors import totp_secret
from app.dispatch.consent import record_consent, revoke_consent
from app.dispatch.documents import document_by_dpi_id, mark_first_read
from app.dispatch.ingest import ingest
from app.dispatch.retraction import retract
from app.dispatch.validation import ConsentIn, parse_consent, parse_document
from app.extensions import db
from app.models import ApiClient, Doctor, Document, StaffUser
from app.models.base import utcnow
from app.pdf import make_pdf
from app.staff.accounts import create_staff
from app.staff.enrolment import enrol_sms_doctor
from app.states import DoctorState

DEMO = Actor("cli", "demo")


@dataclass(frozen=True)
class DemoDoctor:
    gln: str
    family_name: str
    given_name: str
    specialties: tuple[str, ...]
    locality: str
    state: str
    email: str
    mobile: str | None = None


#: GLNs with valid GS1 check digits (7601000... is the Swiss range).
DOCTORS = (
    DemoDoctor("7601000000019", "Muller", "Claire", ("medecine_interne_generale",), "Genève",
               "active", "claire.muller@example.ch", "+41790000001"),
    DemoDoctor("7601000000026", "Rochat", "Luc", ("cardiologie",), "Carouge",
               "active", "luc.rochat@example.ch"),
    DemoDoctor("7601000000033", "Favre", "Sophie", ("pediatrie",), "Lancy",
               "active", "sophie.favre@example.ch"),
    DemoDoctor("7601000000040", "Berset", "Marc", ("medecine_interne_generale",), "Vernier",
               "pending", "marc.berset@example.ch"),
    DemoDoctor("7601000000057", "Keller", "Anne", ("psychiatrie_psychotherapie",), "Meyrin",
               "deactivated", "anne.keller@example.ch"),
)

SMS_DOCTOR = DOCTORS[0]


def dev_idp_people() -> list[dict[str, str]]:
    """The people the development identity provider offers to sign in as: the demo's doctors."""
    return [
        {"gln": d.gln, "given_name": d.given_name, "family_name": d.family_name,
         "email": d.email, "state": d.state}
        for d in DOCTORS
    ]


def _doctors() -> None:
    for spec in DOCTORS:
        doctor = db.session.scalar(select(Doctor).where(Doctor.gln == spec.gln))
        if doctor is not None:
            continue
        if spec.mobile is not None:
            enrolled = enrol_sms_doctor(
                spec.gln, spec.family_name, spec.given_name, spec.email, spec.mobile, DEMO
            )
            doctor = enrolled.doctor
            # A known demo password, so that the printed sign-in works on every laptop.
            doctor.password_hash = hash_password(DEMO_PASSWORD)
            doctor.must_change_password = False
        else:
            doctor = Doctor(gln=spec.gln, family_name=spec.family_name, given_name=spec.given_name,
                            email=spec.email)
            db.session.add(doctor)
            now = utcnow()
            if spec.state in ("active", "deactivated"):
                doctor.activated_at = now
            if spec.state == "deactivated":
                doctor.deactivated_at = now
            doctor.state = DoctorState(spec.state).value
        doctor.specialties = list(spec.specialties)
        doctor.locality = spec.locality
        db.session.flush()
        record(DEMO, "doctor.created", target=f"doctor:{spec.gln}")


DEMO_PASSWORD = "demo-Relais-2026!"  # noqa: S105 - demo data on a laptop only


PATIENTS = {
    "P-0042": ("Muster", "Anna", "1961-04-02"),
    "P-0043": ("Dupont", "Jean", "1948-09-15"),
    "P-0044": ("Meier", "Lina", "2012-03-10"),
    "P-0045": ("Rossi", "Paolo", "1939-01-20"),
    "P-0046": ("Nguyen", "Mai", "1987-06-30"),
}


def _consent(patient_id: str, gln: str, **extra: Any) -> None:
    family, given, birth = PATIENTS[patient_id]
    body = {
        "electronic_sending": True,
        "designation": "treating_doctor",
        "given_by": "patient",
        "recorded_by": "demo",
        "patient": {"family_name": family, "given_name": given, "birth_date": birth},
    }
    body.update(extra)
    data: ConsentIn = parse_consent(body)
    record_consent(patient_id, gln, data, DEMO)


def _document(document_id: str, patient_id: str, title: str, recipients: list[str],
              signed_at: datetime, **extra: Any) -> None:
    if db.session.scalar(select(Document).where(Document.document_id == document_id)):
        return
    family, given, birth = PATIENTS[patient_id]
    pdf = make_pdf([title, "Document de démonstration - aucune donnée réelle.",
                    f"Référence {document_id}"])
    body: dict[str, Any] = {
        "document_id": document_id,
        "patient": {"id": patient_id, "family_name": family, "given_name": given,
                    "birth_date": birth},
        "encounter": "outpatient",
        "recipients": recipients,
        "type": "discharge_letter",
        "title": title,
        "service": "cardiologie",
        "author": "Dr B. Exemple",
        "signed_at": signed_at.isoformat(),
        "sensitive": False,
        "third_party_data": False,
        "category": "report",
        "content_type": "application/pdf",
        "content": base64.b64encode(pdf).decode(),
    }
    body.update(extra)
    ingest(parse_document(body, 20 * 1024 * 1024), DEMO)


#: Demo hospital accounts: a desk (enrols doctors) and a staff member.
STAFF = (("accueil", "desk"), ("secretariat", "staff"))


def _staff_account(login: str, role: str) -> str:
    """The demo account ``login`` (created once, with the demo password and a confirmed
    authenticator), and the line telling how to sign in with it, the TOTP code included."""
    user = db.session.scalar(select(StaffUser).where(StaffUser.login == login))
    if user is None:
        user, _, _ = create_staff(login, role, DEMO)
        user.password_hash = hash_password(DEMO_PASSWORD)
        user.must_change_password = False
        user.totp_confirmed_at = utcnow()  # as if the demo authenticator were set up
        db.session.flush()
    secret = totp_secret(user)
    return (
        f"{role.capitalize()} sign-in: login {login}, password {DEMO_PASSWORD}, then the "
        f"authenticator code (secret {secret}) from: "
        f".venv/bin/python -c \"import pyotp; print(pyotp.TOTP('{secret}').now())\""
    )


def load_demo() -> list[str]:
    """Load the demo data; returns the sign-in lines to print."""
    base_url = str(current_app.config["PUBLIC_BASE_URL"]).rstrip("/")
    _doctors()
    muller, rochat, favre, berset = (d.gln for d in DOCTORS[:4])
    keller = DOCTORS[4].gln
    loaded_before = db.session.scalar(select(Document).where(Document.document_id == "DEMO-0001"))
    if loaded_before is None:
        _consent("P-0042", muller)
        _consent("P-0043", muller)
        _consent("P-0043", rochat)
        _consent("P-0044", favre, given_by="representative", representative_name="Pierre Meier",
                 minor_agreement=True)
        _consent("P-0045", muller)
        _consent("P-0046", berset)
        _consent("P-0046", keller)
    base = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)
    now = utcnow()
    _document("DEMO-0001", "P-0042", "Lettre de sortie", [muller], base)
    _document("DEMO-0002", "P-0042", "Compte rendu de consultation", [muller],
              base + timedelta(days=3), type="consultation_report")
    _document("DEMO-0003", "P-0043", "Résultats de laboratoire", [muller, rochat],
              base + timedelta(days=5), type="lab_report", service="laboratoire")
    # Held: sensitive, signed a moment ago (7 days for an outpatient, 24 h for an inpatient).
    _document("DEMO-0004", "P-0042", "Bilan psychosocial", [muller], now, sensitive=True)
    _document("DEMO-0005", "P-0043", "Rapport opératoire", [rochat], now, sensitive=True,
              encounter="inpatient", service="chirurgie")
    # Blocked, one per rule.
    _document("DEMO-0010", "P-0042", "Lettre à un destinataire inconnu", ["7601000000064"], base)
    _document("DEMO-0011", "P-0046", "Lettre à un médecin non activé", [berset], base)
    _document("DEMO-0012", "P-0046", "Lettre à un médecin désactivé", [keller], base)
    _document("DEMO-0013", "P-0042", "Lettre sans consentement", [rochat], base)
    _document("DEMO-0014", "P-0042", "Rapport avec données de tiers", [muller], base,
              third_party_data=True)
    _document("DEMO-0015", "P-0042", "Note de suite", [muller], base, category="follow_up_note")
    _document("DEMO-0016", "P-0044", "Consultation de pédopsychiatrie", [favre], base,
              service="pedopsychiatrie")
    _document("DEMO-0017", "P-0045", "Lettre après décès", [muller], base,
              patient={"id": "P-0045", "family_name": "Rossi", "given_name": "Paolo",
                       "birth_date": "1939-01-20", "deceased": True})
    _document("DEMO-0018", "P-0044", "Lettre de sortie pédiatrique", [favre], base)
    # Cancelled: held, then the consent was revoked.
    if db.session.scalar(select(Document).where(Document.document_id == "DEMO-0020")) is None:
        _consent("P-0043", favre)
        _document("DEMO-0020", "P-0043", "Bilan sensible annulé", [favre], now, sensitive=True)
        revoke_consent("P-0043", favre, DEMO)
    # Retracted: sent in error, withdrawn by the hospital.
    if db.session.scalar(select(Document).where(Document.document_id == "DEMO-0021")) is None:
        _document("DEMO-0021", "P-0042", "Lettre envoyée par erreur", [muller], base)
        retract(document_by_dpi_id("DEMO-0021"), "Mauvais patient", DEMO)
    # Read: the doctor opened it.
    mark_first_read(document_by_dpi_id("DEMO-0001"), muller, DEMO)

    staff_lines = [_staff_account(login, role) for login, role in STAFF]

    client = db.session.scalar(select(ApiClient).where(ApiClient.name == "demo-dpi"))
    hin = DOCTORS[1]
    lines = [
        f"Doctor, SMS sign-in ({SMS_DOCTOR.given_name} {SMS_DOCTOR.family_name}): "
        f"{base_url}/auth/login, login {_login(SMS_DOCTOR.gln)}, password {DEMO_PASSWORD}; "
        "the SMS code is printed in this terminal (console SMS)",
        f"Doctor, HIN sign-in ({hin.given_name} {hin.family_name}): {base_url}/auth/login, "
        "\"Se connecter avec HIN\", then choose this doctor in the development identity provider",
        *staff_lines,
        "Other active demo doctors: "
        + ", ".join(f"{d.given_name} {d.family_name} ({d.gln})" for d in DOCTORS[1:3]),
        "DPI API client: "
        + (
            "demo-dpi (exists)"
            if client
            else "none; create one with: flask --app wsgi api-client create NAME"
        ),
    ]
    db.session.flush()
    return lines


def _login(gln: str) -> str:
    doctor = db.session.scalar(select(Doctor).where(Doctor.gln == gln))
    return doctor.login if doctor and doctor.login else "?"
