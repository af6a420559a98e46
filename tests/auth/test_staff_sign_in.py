"""Staff and desk: password, then a code from their authenticator app (or a recovery code);
the first time, enrolment with a QR code drawn on our side, and recovery codes shown once.

Each test runs on SQLite and, with TEST_DATABASE_URL, on PostgreSQL.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pyotp
from flask.testing import FlaskClient
from sqlalchemy import update

from app.audit import CLI
from app.auth.staff_factors import issue_recovery_codes, totp_secret
from app.extensions import db
from app.models import StaffUser
from app.models.base import utcnow
from tests.support.factories import PASSWORD, make_staff
from tests.support.login import (
    GENERIC,
    isolated_client_fixture,  # noqa: F401
    page_text,
    post_login,
    signed_in_account,
    token,
)
from tests.support.pages import assert_no_inline_code
from tests.support.trail import events

_RECOVERY = re.compile(r"<code>([a-z0-9]{4}-[a-z0-9]{4}-[a-z0-9]{4}-[a-z0-9]{4})</code>")


def now_code(user: StaffUser, offset: int = 0) -> str:
    return pyotp.TOTP(totp_secret(user)).at(utcnow() + timedelta(seconds=30 * offset))


def post_totp(client: FlaskClient, code: str) -> object:
    return client.post("/auth/totp", data={"csrf_token": token(client, "/auth/totp"),
                                           "code": code})


def shown_codes(client: FlaskClient) -> list[str]:
    return _RECOVERY.findall(page_text(client.get("/auth/recovery-codes")))


def test_a_code_from_the_app_signs_staff_in(client: FlaskClient) -> None:
    user = make_staff()
    post_login(client, "m.dupont", next_path="/staff/consents")
    html = page_text(client.get("/auth/totp"))
    assert 'autocomplete="one-time-code"' in html and 'inputmode="numeric"' in html

    answer = post_totp(client, now_code(user))

    assert answer.status_code == 303  # type: ignore[attr-defined]
    assert answer.headers["Location"] == "/staff/consents"  # type: ignore[attr-defined]
    assert signed_in_account(client) == f"staff:{user.id}:{user.session_epoch}"
    assert events("auth.signed_in")[0].details == {"method": "totp"}


def test_a_code_already_used_is_refused(client: FlaskClient) -> None:
    user = make_staff()
    # Given a code seen over the shoulder while it was used
    code = now_code(user)
    post_login(client, "m.dupont")
    post_totp(client, code)
    client.post("/auth/logout", data={"csrf_token": token(client, "/")})
    # When it is typed again within its 30 seconds
    post_login(client, "m.dupont")
    answer = post_totp(client, code)
    # Then it does not sign in, and counts as a failure
    assert "Code incorrect." in page_text(answer)  # type: ignore[arg-type]
    assert signed_in_account(client) is None
    db.session.refresh(user)
    assert user.failed_sign_ins == 1
    assert [e.details["stage"] for e in events("auth.failed")] == ["totp"]


def test_a_wrong_code_is_refused(client: FlaskClient) -> None:
    user = make_staff()
    post_login(client, "m.dupont")
    answer = post_totp(client, now_code(user, offset=10))
    assert "Code incorrect." in page_text(answer)  # type: ignore[arg-type]
    assert signed_in_account(client) is None


def test_a_recovery_code_works_once(client: FlaskClient) -> None:
    user = make_staff()
    recovery = issue_recovery_codes(user, CLI)
    db.session.commit()

    post_login(client, "m.dupont")
    answer = post_totp(client, recovery[0].upper().replace("-", " "))
    assert answer.status_code == 303  # type: ignore[attr-defined]
    assert "il vous en reste 9" in page_text(client.get("/"))
    client.post("/auth/logout", data={"csrf_token": token(client, "/")})

    post_login(client, "m.dupont")
    answer = post_totp(client, recovery[0])
    assert "Code incorrect." in page_text(answer)  # type: ignore[arg-type]
    assert signed_in_account(client) is None


def test_a_deactivated_staff_account_gets_the_generic_message(client: FlaskClient) -> None:
    make_staff()
    db.session.execute(update(StaffUser).values(active=False))
    db.session.commit()
    answer = post_login(client, "m.dupont")
    assert GENERIC in page_text(answer)


def test_no_authenticator_step_without_a_pending_sign_in(client: FlaskClient) -> None:
    make_staff()
    for path in ("/auth/totp", "/auth/totp/enrol"):
        answer = client.get(path)
        assert answer.status_code == 303
        assert answer.headers["Location"].startswith("/auth/login")


# --- first sign-in: enrolment --------------------------------------------------------------


def test_enrolment_shows_a_qr_code_then_the_recovery_codes_once(client: FlaskClient) -> None:
    user = make_staff(enrolled=False)
    secret = totp_secret(user)
    post_login(client, "m.dupont", next_path="/staff/consents")
    assert client.get("/auth/totp").headers["Location"] == "/auth/totp/enrol"

    answer = client.get("/auth/totp/enrol")

    html = page_text(answer)
    assert answer.status_code == 200
    assert re.search(r"<svg\b[^>]*class=\"qr-code\"", html)  # drawn here, inline
    assert "<img" not in html and "http" not in html.split("<svg", 1)[1].split("</svg>")[0]
    assert " ".join(secret[i:i + 4] for i in range(0, len(secret), 4)) in html
    assert_no_inline_code(answer.get_data(as_text=True))

    # A wrong code first: counted, enrolment still pending
    wrong = client.post("/auth/totp/enrol", data={
        "csrf_token": token(client, "/auth/totp/enrol"),
        "code": pyotp.TOTP(secret).at(utcnow() + timedelta(minutes=10))})
    assert "Code incorrect." in page_text(wrong)
    db.session.refresh(user)
    assert user.totp_pending

    confirm = client.post("/auth/totp/enrol", data={
        "csrf_token": token(client, "/auth/totp/enrol"), "code": pyotp.TOTP(secret).now()})

    assert confirm.status_code == 303
    assert confirm.headers["Location"] == "/auth/recovery-codes"
    db.session.refresh(user)
    assert not user.totp_pending
    assert signed_in_account(client) is not None
    recovery_page = client.get("/auth/recovery-codes")
    codes = _RECOVERY.findall(page_text(recovery_page))
    assert len(codes) == 10
    assert 'href="/staff/consents"' in page_text(recovery_page)
    assert "J'ai noté mes codes" in page_text(recovery_page)
    with client.session_transaction() as session:
        assert "recovery_codes" not in session  # shown once, then gone
        assert not any(code in repr(dict(session)) for code in codes)
    assert shown_codes(client) == []
    # The codes work
    client.post("/auth/logout", data={"csrf_token": token(client, "/")})
    post_login(client, "m.dupont")
    assert post_totp(client, codes[3]).status_code == 303  # type: ignore[attr-defined]


def test_the_recovery_codes_never_sit_readable_in_the_cookie(client: FlaskClient) -> None:
    import base64
    import zlib

    user = make_staff(enrolled=False)
    post_login(client, "m.dupont")
    client.post("/auth/totp/enrol", data={"csrf_token": token(client, "/auth/totp/enrol"),
                                          "code": pyotp.TOTP(totp_secret(user)).now()})
    cookie = client.get_cookie("relais", domain="relais.test")
    assert cookie is not None
    payload = cookie.value.lstrip(".").split(".")[0]
    raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    if cookie.value.startswith("."):
        raw = zlib.decompress(raw)
    assert b"ciphertext" in raw
    codes = shown_codes(client)
    assert len(codes) == 10
    assert not any(code.encode() in raw for code in codes)


def test_new_staff_enrol_then_change_their_temporary_password_then_see_their_codes(
    client: FlaskClient,
) -> None:
    user = make_staff(enrolled=False, must_change_password=True)
    post_login(client, "m.dupont")
    client.post("/auth/totp/enrol", data={"csrf_token": token(client, "/auth/totp/enrol"),
                                          "code": pyotp.TOTP(totp_secret(user)).now()})
    answer = client.get("/auth/recovery-codes")
    assert answer.headers["Location"] == "/auth/password"

    changed = client.post("/auth/password", data={
        "csrf_token": token(client, "/auth/password"),
        "new_password": "violet-harbour-cinnamon-piano",
        "confirm_password": "violet-harbour-cinnamon-piano"})

    assert changed.headers["Location"] == "/auth/recovery-codes"
    assert len(shown_codes(client)) == 10


def test_signed_in_staff_can_make_new_recovery_codes_with_their_password(
    client: FlaskClient,
) -> None:
    user = make_staff()
    post_login(client, "m.dupont")
    post_totp(client, now_code(user))
    old = issue_recovery_codes(user, CLI)
    db.session.commit()
    page = page_text(client.get("/auth/recovery-codes"))
    assert 'name="password"' in page

    wrong = client.post("/auth/recovery-codes", data={
        "csrf_token": token(client, "/auth/recovery-codes"), "password": "wrong-password"})
    assert "Mot de passe incorrect." in page_text(wrong)
    db.session.refresh(user)
    assert user.failed_sign_ins == 1

    right = client.post("/auth/recovery-codes", data={
        "csrf_token": token(client, "/auth/recovery-codes"), "password": PASSWORD})
    assert right.headers["Location"] == "/auth/recovery-codes"
    new = shown_codes(client)
    assert len(new) == 10 and not set(new) & set(old)

    # The old codes stopped working
    client.post("/auth/logout", data={"csrf_token": token(client, "/")})
    post_login(client, "m.dupont")
    assert "Code incorrect." in page_text(post_totp(client, old[0]))  # type: ignore[arg-type]


def test_doctors_have_no_recovery_codes(client: FlaskClient) -> None:
    from app.models import Doctor
    from tests.support.signin import sign_in_as

    doctor = Doctor(gln="7601000000019", family_name="Muller", given_name="Claire",
                    state="active", login="cmuller")
    db.session.add(doctor)
    db.session.commit()
    sign_in_as(client, doctor)
    assert client.get("/auth/recovery-codes").status_code == 403
