"""Production over TLS, in a real browser (issue 14, point 2).

The production profile as ``deploy/`` describes it, in processes (``tests/support/production.py``):
gunicorn with ``gunicorn.conf.py`` and ``RELAIS_ENV=production`` serving HTTPS itself (a
certificate made by the test, gunicorn's ``--certfile``/``--keyfile``), PostgreSQL, a Redis of
its own, the RQ worker, SMS through the real twilio client to the local Twilio-compatible
server, email over SMTP with STARTTLS and a password (aiosmtpd), and HIN played by a test
identity provider over HTTPS on another site, signing with its own key (production refuses
the development one). Accounts are made as operations make them, with ``flask`` commands.

Headless Chromium (Debian's) drives it as people would, each step checked by what the page
shows, under the app's own CSP (no ``bypass_csp``):

1. a desk user meets the portal for the first time (temporary password, authenticator
   enrolment, recovery codes) and enrols a doctor whose phone receives the code; the doctor
   signs in with the sheet and the SMS code, changes the temporary password, switches the
   language, changes her profile (notifications, email, confirmed from the email that
   arrives); a staff member (another person: the one who enrols a doctor may not direct
   letters to her) signs in with TOTP and records a patient's consent; the DPI posts a letter
   over HTTPS; the worker's send-due mails the notification; she sees the letter, signs out;
2. a doctor signs in through HIN and signs out there too (single logout);
3. a form POST carrying another site's Referer, or none, is refused over HTTPS.

No code, token or password reaches any log of the stack (gunicorn's, the app's, the worker's,
the commands' stderr). Screenshots go to the test's temporary folder (``screenshots/``).
Needs PostgreSQL (TEST_DATABASE_URL), Debian's redis-server and chromium: skipped on a laptop
without them, a failure under CI=true.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pyotp
import pytest
import requests
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from app.gln import make_gln
from app.models.base import utcnow
from tests.conftest import PDF, postgres_url, private_postgres_database, skip_or_fail
from tests.support.production import ProductionStack, production_stack
from tests.support.redis_server import REDIS_SERVER

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.browser]

DESK_LOGIN = "guichet.dupont"
STAFF_LOGIN = "soins.martin"
STAFF_PASSWORD = "orchid-lantern-basalt-meadow"
DESK_PASSWORD = "glacier-violin-copper-tundra"
DOCTOR_PASSWORD = "juniper-harbour-quartz-sonnet"
SMS_GLN = make_gln("760100000301")
HIN_GLN = make_gln("760100000302")
PATIENT = "P-TLS-0001"
HIN_LOGIN = "hin.rochat"
IDENTITIES = {
    HIN_LOGIN: ("hin-subject-rochat-0001", {
        "gln": HIN_GLN, "givenName": "Luc", "surname": "Rochat",
        "email": "luc.rochat@cabinet.example",
    }),
}
_CODE = re.compile(r"\b(\d{6})\b")


# --- the stack and the browser ------------------------------------------------------------


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProductionStack]:
    url = postgres_url()
    if url is None:
        skip_or_fail("TEST_DATABASE_URL is not set: the production stack needs PostgreSQL")
    assert url is not None
    if shutil.which(REDIS_SERVER) is None:
        skip_or_fail(f"{REDIS_SERVER} is missing: the production stack needs Debian's Redis")
    work = tmp_path_factory.mktemp("production-tls")
    with private_postgres_database(url, "prodtls") as database_url, \
            production_stack(work, database_url, IDENTITIES) as running:
        yield running


@pytest.fixture(scope="module")
def chromium(browser: Any) -> Any:
    """The session's Chromium (tests/conftest.py): one Playwright per test session."""
    return browser


@pytest.fixture(scope="module")
def database(stack: ProductionStack) -> Iterator[Engine]:
    """The stack's database, for the few facts a person cannot see (and for the clock)."""
    engine = create_engine(stack.settings["DATABASE_URL"])
    yield engine
    engine.dispose()


class Browser:
    """One person's browser: a context of its own (cookies), trusting our test certificate
    the way a hospital workstation trusts the hospital's, the app's CSP enforced."""

    def __init__(self, chromium: Any, stack: ProductionStack, shots: Path, who: str) -> None:
        self.context = chromium.new_context(locale="fr-CH", ignore_https_errors=True)
        self.page = self.context.new_page()
        self.stack = stack
        self.shots = shots
        self.who = who
        self.problems: list[str] = []
        self.page.on("console", self._console)
        self._count = 0

    def _console(self, message: Any) -> None:
        url = str(message.location.get("url") or "")
        if url.endswith("/favicon.ico"):  # the browser asks on its own; Relais has none
            return
        if message.type == "error" or "Content Security Policy" in message.text:
            self.problems.append(f"{message.text} ({url})")

    def goto(self, path: str) -> None:
        self.page.goto(self.stack.url + path)

    def shot(self, name: str) -> None:
        self._count += 1
        self.shots.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(self.shots / f"{self.who}-{self._count:02d}-{name}.png"),
                             full_page=True)

    def heading(self) -> str:
        return str(self.page.get_by_role("heading", level=1).first.inner_text())

    def flashes(self) -> str:
        flashes = self.page.locator(".flashes")
        return str(flashes.inner_text()) if flashes.count() else ""

    def close(self) -> None:
        self.shot("last")  # where this person stood when the test ended
        self.context.close()
        assert self.problems == [], self.problems


@pytest.fixture()
def people(chromium: Any, stack: ProductionStack, tmp_path: Path) -> Iterator[Any]:
    opened: list[Browser] = []

    def open_browser(who: str) -> Browser:
        browser = Browser(chromium, stack, tmp_path / "screenshots", who)
        opened.append(browser)
        return browser

    yield open_browser
    for browser in opened:
        browser.close()


# --- steps --------------------------------------------------------------------------------


def create_staff(stack: ProductionStack, login: str, role: str) -> tuple[str, str]:
    """``flask users create-staff`` as operations run it: (temporary password, TOTP secret)."""
    out = stack.flask("users", "create-staff", login, "--role", role).stdout
    password = re.search(r"^temporary password: (\S+)$", out, re.M)
    uri = re.search(r"^TOTP provisioning URI: (\S+)$", out, re.M)
    assert password and uri, out
    secret = parse_qs(urlsplit(uri.group(1)).query)["secret"][0]
    return password.group(1), secret


def totp_code(secret: str, steps_ahead: int = 0) -> str:
    """What the authenticator app shows (``steps_ahead``: its next codes, 30 s apart)."""
    totp = pyotp.TOTP(secret)
    return str(totp.at(utcnow(), counter_offset=steps_ahead))


def first_staff_sign_in(person: Browser, login: str, temporary: str, secret: str,
                        new_password: str, landing: str) -> list[str]:
    """A new staff or desk member's first visit: temporary password, authenticator enrolment,
    the forced password change, the recovery codes. Returns the recovery codes."""
    page = person.page
    person.goto(landing)
    page.wait_for_url(re.compile(r"/auth/login"))
    assert person.heading() == "Connexion"
    page.get_by_label("Identifiant").fill(login)
    page.get_by_label("Mot de passe").fill(temporary)
    page.get_by_role("button", name="Continuer").click()

    page.wait_for_url(re.compile(r"/auth/totp/enrol$"))
    assert person.heading() == "Configurer l'application d'authentification"
    assert page.locator("svg.qr-code").is_visible()
    shown = page.locator("code.totp-secret").inner_text().replace(" ", "")
    assert shown == secret  # the key typed by hand is the one in the QR code (the CLI's URI)
    person.shot("totp-enrolment")
    page.get_by_label("Code de l'application").fill(totp_code(secret))
    page.get_by_role("button", name="Confirmer").click()

    page.wait_for_url(re.compile(r"/auth/password$"))
    assert person.heading() == "Changer le mot de passe"
    assert "Votre mot de passe est provisoire." in page.locator("main").inner_text()
    page.get_by_label("Nouveau mot de passe", exact=True).fill(new_password)
    page.get_by_label("Confirmer le nouveau mot de passe").fill(new_password)
    page.get_by_role("button", name="Enregistrer le mot de passe").click()

    page.wait_for_url(re.compile(r"/auth/recovery-codes$"))
    assert "Votre mot de passe a été changé." in person.flashes()
    assert person.heading() == "Codes de secours"
    codes = page.locator("ul.recovery-codes code").all_inner_texts()
    assert len(codes) == 10 and len(set(codes)) == 10
    person.shot("recovery-codes")
    page.get_by_role("link", name="J'ai noté mes codes").click()
    page.wait_for_url(re.compile(re.escape(landing) + "$"))
    return codes


def staff_sign_in(person: Browser, login: str, password: str, secret: str,
                  landing: str) -> None:
    """A later sign-in: password, then the authenticator's code (its next one: the code of
    the enrolment's time step is spent, replays are refused)."""
    page = person.page
    person.goto(landing)
    page.wait_for_url(re.compile(r"/auth/login"))
    page.get_by_label("Identifiant").fill(login)
    page.get_by_label("Mot de passe").fill(password)
    page.get_by_role("button", name="Continuer").click()
    page.wait_for_url(re.compile(r"/auth/totp$"))
    page.get_by_label("Code", exact=True).fill(totp_code(secret, steps_ahead=1))
    page.get_by_role("button", name="Se connecter").click()
    page.wait_for_url(re.compile(re.escape(landing) + "$"))


def sms_code(stack: ProductionStack, count: int) -> tuple[str, str]:
    """The number and the code of the ``count``-th SMS the Twilio server received."""
    message = stack.twilio.wait_for_messages(count)[count - 1]
    match = _CODE.search(message.body)
    assert match is not None, message.body
    return message.to, match.group(1)


def sign_out(person: Browser) -> None:
    page = person.page
    page.get_by_role("button", name="Se déconnecter", exact=True).click()
    page.wait_for_url(person.stack.url + "/")
    assert "Vous êtes déconnecté." in person.flashes()
    assert page.locator(".account-name").count() == 0
    assert person.heading() == "Bienvenue sur Relais"
    person.shot("signed-out")
    # The session is gone: a page for signed-in people sends to the sign-in page.
    person.goto("/documents")
    page.wait_for_url(re.compile(r"/auth/login"))


def assert_no_secret_in_logs(stack: ProductionStack, secrets: dict[str, str]) -> None:
    """None of ``secrets`` (name -> value) appears in any log of the stack."""
    logs = stack.logs()
    assert logs.strip(), "no log at all: the check would prove nothing"
    for line in logs.splitlines():
        if line.startswith("{"):
            json.loads(line)  # every line gunicorn and the app write is one JSON object
    leaked = [name for name, value in secrets.items()
              if re.search(rf"(?<![0-9A-Za-z]){re.escape(value)}(?![0-9A-Za-z])", logs)]
    assert leaked == [], f"in the logs: {leaked}"


def api(stack: ProductionStack, token: str, method: str, path: str,
        body: dict[str, Any] | None = None) -> requests.Response:
    """A DPI call over HTTPS, the server's certificate checked."""
    return requests.request(method, stack.url + path, json=body, timeout=30,
                            headers={"Authorization": f"Bearer {token}"},
                            verify=str(stack.tls[0]))


# --- 1. the desk, a doctor, staff, the DPI, the worker ---------------------------------------


def test_a_doctor_enrolled_at_the_desk_receives_a_letter_over_tls(
    stack: ProductionStack, people: Any, database: Engine
) -> None:
    secrets: dict[str, str] = {}

    # Given operations created a desk account and a staff account on the command line
    desk_temporary, desk_secret = create_staff(stack, DESK_LOGIN, "desk")
    staff_temporary, staff_secret = create_staff(stack, STAFF_LOGIN, "staff")
    secrets.update(desk_temporary=desk_temporary, desk_totp=desk_secret,
                   staff_temporary=staff_temporary, staff_totp=staff_secret,
                   desk_password=DESK_PASSWORD, staff_password=STAFF_PASSWORD,
                   doctor_password=DOCTOR_PASSWORD)

    # When the desk user opens the portal for the first time
    desk = people("desk")
    codes = first_staff_sign_in(desk, DESK_LOGIN, desk_temporary, desk_secret, DESK_PASSWORD,
                                "/staff/desk")
    secrets.update({f"desk_recovery_{n}": code for n, code in enumerate(codes)})
    assert desk.heading() == "Guichet : comptes des médecins"
    desk.shot("desk")

    # And enrols a doctor who shows an identity card and her mobile phone
    page = desk.page
    page.get_by_role("link", name="Inscrire un médecin").first.click()
    page.get_by_label("GLN").fill(SMS_GLN)
    page.get_by_label("Nom de famille").fill("Favre")
    page.get_by_label("Prénom").fill("Élise")
    page.get_by_label("Adresse e-mail").fill("elise.favre@cabinet.example")
    page.get_by_label("Téléphone mobile").fill("079 555 12 34")
    page.get_by_label("Type de pièce").select_option(label="Carte d'identité")
    page.get_by_role("button", name="Envoyer le code par SMS").click()
    page.wait_for_url(re.compile(r"/staff/desk/enrol/verify$"))
    to, code = sms_code(stack, 1)
    assert to == "+41795551234"
    secrets["desk_phone_code"] = code
    page.get_by_label("Code reçu par SMS").fill(code)
    page.get_by_role("button", name="Vérifier le code").click()
    page.wait_for_url(re.compile(r"/staff/desk/credentials$"))
    login, temporary = page.locator("dd.secret").all_inner_texts()
    assert login == "efavre"
    secrets["doctor_temporary"] = temporary
    desk.shot("credentials")
    sign_out(desk)

    # Then the doctor, on her own computer, signs in with the sheet and the SMS code
    doctor = people("doctor")
    page = doctor.page
    doctor.goto("/auth/login")
    assert doctor.heading() == "Connexion"
    page.get_by_label("Identifiant").fill(login)
    page.get_by_label("Mot de passe").fill(temporary)
    page.get_by_role("button", name="Continuer").click()
    page.wait_for_url(re.compile(r"/auth/code$"))
    assert "+41******234" in page.content()
    doctor.shot("sms-code")
    to, code = sms_code(stack, 2)
    assert to == "+41795551234"
    secrets["sign_in_code"] = code
    page.get_by_label("Code reçu par SMS").fill(code)
    page.get_by_role("button", name="Se connecter").click()

    # ... is made to choose her own password first
    page.wait_for_url(re.compile(r"/auth/password$"))
    assert doctor.heading() == "Changer le mot de passe"
    assert page.get_by_label("Mot de passe actuel").count() == 0
    page.get_by_label("Nouveau mot de passe", exact=True).fill(DOCTOR_PASSWORD)
    page.get_by_label("Confirmer le nouveau mot de passe").fill(DOCTOR_PASSWORD)
    page.get_by_role("button", name="Enregistrer le mot de passe").click()
    page.wait_for_url(stack.url + "/documents")
    assert "Votre mot de passe a été changé." in doctor.flashes()
    assert page.locator(".account-name").inner_text() == "Élise Favre"
    assert doctor.heading() == "Mes documents"
    doctor.shot("documents-empty")

    # When she switches to English, and back
    page.get_by_role("button", name="English").click()
    page.wait_for_url(stack.url + "/documents")
    assert page.locator("html").get_attribute("lang") == "en"
    assert doctor.heading() == "My documents"
    doctor.shot("documents-english")
    page.get_by_role("button", name="Français").click()
    page.wait_for_url(stack.url + "/documents")
    assert doctor.heading() == "Mes documents"

    # And in Mon profil asks for an email at each arrival, at a new address
    page.get_by_role("link", name="Mon profil").click()
    page.wait_for_url(stack.url + "/profile")
    page.get_by_label("À chaque arrivée").check()
    page.get_by_label("Adresse e-mail").fill("e.favre@cabinet-favre.example")
    page.get_by_role("button", name="Enregistrer").click()
    page.wait_for_url(stack.url + "/profile")
    assert "Un lien de confirmation a été envoyé à la nouvelle adresse" in doctor.flashes()
    assert page.get_by_label("À chaque arrivée").is_checked()
    doctor.shot("profile-saved")

    # Then the confirmation arrives at the new address over SMTP, and its link confirms it
    [confirmation] = stack.mail.wait_for(1)
    assert confirmation["To"] == "e.favre@cabinet-favre.example"
    body = confirmation.get_body(preferencelist=("plain",)).get_content()
    link = re.search(re.escape(stack.url) + r"/profile/email/confirm/(\S+)", body)
    assert link is not None, body
    secrets["email_token"] = link.group(1)
    doctor.goto(f"/profile/email/confirm/{link.group(1)}")
    assert doctor.heading() == "Confirmer l'adresse e-mail"
    page.get_by_role("button", name="Confirmer mon adresse e-mail").click()
    page.wait_for_url(stack.url + "/profile")
    assert "Votre nouvelle adresse e-mail est confirmée." in doctor.flashes()
    assert page.get_by_label("Adresse e-mail").input_value() == "e.favre@cabinet-favre.example"
    # ... and the old address is told of the change
    notice = stack.mail.wait_for(2)[1]
    assert notice["To"] == "elise.favre@cabinet.example"

    # When a staff member (not the desk user who enrolled her) records a patient's consent
    staff = people("staff")
    first_staff_sign_in(staff, STAFF_LOGIN, staff_temporary, staff_secret, STAFF_PASSWORD,
                        "/staff/patients")
    sign_out(staff)
    staff_sign_in(staff, STAFF_LOGIN, STAFF_PASSWORD, staff_secret, "/staff/patients")
    page = staff.page
    assert staff.heading() == "Patients"
    by_id = page.get_by_role("region", name="Par identifiant DPI")
    by_id.get_by_role("searchbox", name="Identifiant DPI").fill(PATIENT)
    by_id.get_by_role("button", name="Rechercher").click()
    page.get_by_role("link", name="Enregistrer un patient et son consentement").click()
    page.get_by_label("Nom de famille").fill("Muster")
    page.get_by_label("Prénom").fill("Anna")
    page.get_by_label("Date de naissance").fill("1961-04-02")
    page.get_by_label("GLN du médecin").fill(SMS_GLN)
    page.get_by_label("Oui, le patient autorise l'envoi électronique").check()
    page.get_by_label("Le patient", exact=True).check()
    page.get_by_role("button", name="Enregistrer le patient et le consentement").click()
    page.wait_for_url(re.compile(rf"/staff/patients/{PATIENT}$"))
    assert "Élise Favre" in staff.flashes()
    consents = page.locator("section", has_text="Consentements").inner_text()
    assert "Favre" in consents and STAFF_LOGIN in consents
    staff.shot("consent-recorded")

    # And the DPI posts a signed letter over HTTPS (its token made on the command line)
    out = stack.flask("api-client", "create", "dpi").stdout
    token = out.strip().splitlines()[-1]
    secrets["api_token"] = token
    letter = {
        "document_id": "DPI-TLS-0001",
        "patient": {"id": PATIENT, "family_name": "Muster", "given_name": "Anna",
                    "birth_date": "1961-04-02", "deceased": False},
        "encounter": "outpatient", "type": "discharge_letter", "title": "Lettre de sortie TLS",
        "service": "cardiologie", "author": "Dr B. Exemple",
        "signed_at": utcnow().isoformat(), "sensitive": False, "third_party_data": False,
        "category": "report", "content_type": "application/pdf",
        "content": base64.b64encode(PDF).decode(),
    }
    answer = api(stack, token, "POST", "/api/v1/documents", letter)
    assert answer.status_code == 201, answer.text
    [delivery] = answer.json()["deliveries"]
    assert (delivery["recipient"], delivery["status"]) == (SMS_GLN, "delivered")

    # Then the worker's send-due mails her the notification. (Arrivals gather for two minutes
    # into one email; the test does not wait them out: it moves this doctor's open row's due
    # time back by that window, as the clock would.)
    with database.begin() as connection:
        moved = connection.execute(text(
            "UPDATE notifications SET due_at = due_at - interval '2 minutes', "
            "next_attempt_at = next_attempt_at - interval '2 minutes' "
            "WHERE kind = 'arrival' AND sent_at IS NULL")).rowcount
    assert moved == 1
    arrival = stack.mail.wait_for(3, timeout=90)[2]
    assert arrival["To"] == "e.favre@cabinet-favre.example"
    mail_text = arrival.get_body(preferencelist=("plain",)).get_content()
    assert f"{stack.url}/documents" in mail_text
    for private in ("Muster", "Anna", "Lettre de sortie TLS", PATIENT):  # no patient data
        assert private not in arrival.as_string()

    # And she finds the letter in Mes documents
    doctor.goto("/documents")
    row = doctor.page.locator("main", has_text="Lettre de sortie TLS")
    assert row.count() == 1
    doctor.shot("documents-letter")

    # When she signs out, the session ends
    sign_out(doctor)

    # And the worker that sent it ran as production runs it: RQ jobs on the shared Redis
    assert "worker: RQ queue 'relais'" in stack.worker.output()

    # And no code, token or password reached a log
    secrets.update(mail_password=stack.settings["MAIL_PASSWORD"],
                   twilio_token=stack.settings["TWILIO_AUTH_TOKEN"],
                   secret_key=stack.settings["SECRET_KEY"])
    assert_no_secret_in_logs(stack, secrets)



# --- 2. HIN ---------------------------------------------------------------------------------


def test_a_doctor_signs_in_with_hin_and_out_at_hin_too(
    stack: ProductionStack, people: Any
) -> None:
    doctor = people("hin")
    page = doctor.page

    # Given a doctor on the sign-in page, who chooses HIN
    doctor.goto("/auth/login")
    page.get_by_role("link", name="Se connecter avec HIN").click()

    # Then the identity provider (another site) receives an AuthnRequest signed with the SP's
    # production key, and asks who she is
    page.wait_for_url(re.compile(re.escape(stack.idp.url) + r"/sso\?"))
    assert doctor.heading() == "HIN (test) : connexion"
    [request] = stack.idp.authn_requests
    assert request.issuer == f"{stack.url}/auth/hin/metadata"
    assert request.details["acs"] == f"{stack.url}/auth/hin/acs"
    assert request.destination == f"{stack.idp.url}/sso"
    doctor.shot("idp-sign-in")
    page.get_by_label("Identifiant HIN").fill(HIN_LOGIN)
    page.get_by_role("button", name="Se connecter").click()

    # When its signed response is posted back to Relais (a cross-site POST)
    page.get_by_role("button", name="Continuer vers Relais").click()

    # Then she arrives signed in, as the doctor HIN named, a new recipient from now on
    page.wait_for_url(stack.url + "/documents")
    assert page.locator(".account-name").inner_text() == "Luc Rochat"
    assert doctor.heading() == "Mes documents"
    doctor.shot("hin-signed-in")
    assert stack.idp.refusals == []

    # When she signs out, Relais ends the session and asks HIN to end its own (single
    # logout); HIN's signed answer brings her back to Relais, signed out
    page.get_by_role("button", name="Se déconnecter", exact=True).click()
    page.wait_for_url(stack.url + "/")
    assert "Vous êtes déconnecté." in doctor.flashes()
    assert page.locator(".account-name").count() == 0
    assert doctor.heading() == "Bienvenue sur Relais"
    [logout] = stack.idp.logout_requests
    assert logout.details["name_id"] == IDENTITIES[HIN_LOGIN][0]
    assert logout.issuer == f"{stack.url}/auth/hin/metadata"
    doctor.shot("hin-signed-out")
    doctor.goto("/documents")
    page.wait_for_url(re.compile(r"/auth/login"))
    assert stack.idp.refusals == []


# --- 3. what the browser is told, and a forged form -------------------------------------------


def test_over_https_a_form_needs_our_own_referer(stack: ProductionStack) -> None:
    session = requests.Session()
    verify = str(stack.tls[0])  # per request: REQUESTS_CA_BUNDLE would win over session.verify

    # Given the sign-in page, as the server sends it over TLS
    page = session.get(f"{stack.url}/auth/login", timeout=30, verify=verify)
    assert page.status_code == 200
    assert page.headers["Strict-Transport-Security"].startswith("max-age=")
    assert page.headers["Referrer-Policy"] == "same-origin"
    # The sign-out of a HIN session redirects to HIN's single logout: the form may go there.
    assert f"form-action 'self' {stack.idp.url};" in page.headers["Content-Security-Policy"]
    cookie = next(c for c in session.cookies if c.name == "__Host-relais")
    assert cookie.secure and cookie.path == "/" and not cookie.domain_specified
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token is not None
    form = {"csrf_token": token.group(1), "login": "nobody", "password": "wrong-password-x"}

    def post(headers: dict[str, str]) -> requests.Response:
        return session.post(f"{stack.url}/auth/login", data=form, headers=headers, timeout=30,
                            allow_redirects=False, verify=verify)

    # When the form comes from our own page, it is examined (and the sign-in fails, politely)
    ours = post({"Referer": f"{stack.url}/auth/login", "Origin": stack.url})
    assert ours.status_code == 200
    assert "Connexion" in ours.text
    # When the same token and cookie come from another site's page, or with no Referer
    for headers in ({"Referer": "https://evil.example/", "Origin": "https://evil.example"},
                    {"Origin": "https://evil.example"}, {}):
        assert post(headers).status_code == 400, headers
