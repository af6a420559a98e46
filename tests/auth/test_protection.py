"""Attacks on sign-in, each against its defence: enumeration, guessing, fixation, open
redirects, cross-site requests, stolen or forgotten sessions.

Each test runs on SQLite and, with TEST_DATABASE_URL, on PostgreSQL.
"""

from __future__ import annotations

import re
import time
from datetime import timedelta
from typing import Any

import pytest
from argon2 import PasswordHasher
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update

from app.audit import Actor
from app.auth.lockout import LOCKOUT_FAILURES, is_locked, unlock
from app.extensions import db
from app.models import Doctor
from app.models.base import utcnow
from tests.conftest import Api
from tests.support.factories import PASSWORD, make_sms_doctor, make_staff
from tests.support.login import (
    GENERIC,
    code_from,
    copy_session,
    isolated_client_fixture,  # noqa: F401
    page_text,
    post_code,
    post_login,
    sign_in_doctor,
    signed_in_account,
    token,
)
from tests.support.signin import sign_in_as
from tests.support.trail import events
from tests.support.twilio_server import TwilioServer


def normalised(html: str, login: str) -> str:
    """The page without what legitimately differs: the CSRF token and the typed login."""
    html = re.sub(r'name="csrf_token" value="[^"]+"', 'name="csrf_token" value=""', html)
    return html.replace(f'value="{login}"', 'value="LOGIN"')


def lock(doctor: Doctor) -> None:
    db.session.execute(update(Doctor).where(Doctor.id == doctor.id)
                       .values(sign_in_locked_at=utcnow(), sign_in_locked=True))
    db.session.commit()


# --- no account enumeration ---------------------------------------------------------------


def test_every_failure_shows_the_same_page(
    app: Flask, client: FlaskClient, twilio: TwilioServer
) -> None:
    make_sms_doctor("cmuller")
    locked = make_sms_doctor("locked", gln="7601000000026")
    lock(locked)
    make_sms_doctor("gone", gln="7601000000033", state="deactivated")

    pages = {
        "unknown login": normalised(page_text(post_login(client, "nobody")), "nobody"),
        "wrong password": normalised(page_text(post_login(client, "cmuller", "wrong-one")),
                                     "cmuller"),
        "locked, right password": normalised(page_text(post_login(client, "locked")), "locked"),
        "deactivated, right password": normalised(page_text(post_login(client, "gone")),
                                                  "gone"),
    }

    assert GENERIC in pages["unknown login"]
    assert len(set(pages.values())) == 1, [k for k, v in pages.items()
                                           if v != pages["unknown login"]]
    assert twilio.messages == []
    assert [e.details["reason"] for e in events("auth.refused")] == ["locked", "deactivated"]


@pytest.mark.parametrize("case", ["unknown", "wrong", "locked", "deactivated"])
def test_every_failure_costs_one_real_argon2_check(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    doctor = make_sms_doctor("cmuller")
    if case == "locked":
        lock(doctor)
    if case == "deactivated":
        doctor.state = "deactivated"
        db.session.commit()
    csrf = token(client)
    checks: list[str] = []
    real_verify = PasswordHasher.verify

    def counting(self: PasswordHasher, hash: str, password: Any) -> Any:
        checks.append(hash)
        return real_verify(self, hash, password)

    monkeypatch.setattr(PasswordHasher, "verify", counting)
    login = "nobody" if case == "unknown" else "cmuller"
    password = "wrong-password" if case == "wrong" else PASSWORD
    answer = client.post("/auth/login", data={"csrf_token": csrf, "login": login,
                                              "password": password})

    assert GENERIC in page_text(answer)
    assert len(checks) == 1
    if case == "wrong":
        assert checks[0] == doctor.password_hash
    else:
        # A hash of the full production cost, never the account's own
        assert checks[0].startswith("$argon2id$v=19$m=65536,t=3,p=4$")


# --- guessing: lockout and rate limits ----------------------------------------------------


def test_ten_failures_lock_sign_in_for_15_minutes_but_not_the_letters(
    app: Flask, client: FlaskClient, twilio: TwilioServer, api: Api
) -> None:
    doctor = make_sms_doctor()
    for _ in range(LOCKOUT_FAILURES):
        post_login(client, "cmuller", "wrong-password")
    db.session.refresh(doctor)
    assert is_locked(doctor)
    assert len(events("auth.locked")) == 1

    # Even the right password is refused, and no code is sent
    answer = post_login(client, "cmuller")
    assert GENERIC in page_text(answer)
    assert twilio.messages == []

    # Letters still reach the doctor
    listed = api.get("/api/v1/doctors?q=7601000000019").get_json()["doctors"]
    assert [d["active"] for d in listed] == [True]

    # After 15 minutes the right password works again
    db.session.execute(update(Doctor).values(
        sign_in_locked_at=utcnow() - timedelta(minutes=15, seconds=1)))
    db.session.commit()
    assert post_login(client, "cmuller").headers["Location"] == "/auth/code"


def test_wrong_codes_count_towards_the_lockout(client: FlaskClient, twilio: TwilioServer) -> None:
    doctor = make_sms_doctor()
    doctor.failed_sign_ins = LOCKOUT_FAILURES - 1
    db.session.commit()
    post_login(client, "cmuller")
    code = code_from(twilio)
    answer = post_code(client, f"{(int(code) + 1) % 1_000_000:06d}")
    assert answer.headers["Location"].startswith("/auth/login")
    db.session.refresh(doctor)
    assert is_locked(doctor)


def test_a_right_password_gives_back_the_place_it_took(
    client: FlaskClient, twilio: TwilioServer
) -> None:
    # Given 9 failures: the next attempt takes the last place, and locks while it is checked
    doctor = make_sms_doctor()
    doctor.failed_sign_ins = LOCKOUT_FAILURES - 1
    db.session.commit()
    # When it is the right password, it was no failure: the place is given back, the lock lifted
    assert post_login(client, "cmuller").headers["Location"] == "/auth/code"
    db.session.refresh(doctor)
    assert doctor.failed_sign_ins == LOCKOUT_FAILURES - 1 and not is_locked(doctor)
    assert events("auth.locked") == []
    # ... and the right code signs in, starting the count again
    assert post_code(client, code_from(twilio)).status_code == 303
    assert signed_in_account(client) is not None
    db.session.refresh(doctor)
    assert doctor.failed_sign_ins == 0


def test_after_a_lockout_each_failure_locks_again_at_once(
    client: FlaskClient, twilio: TwilioServer
) -> None:
    doctor = make_sms_doctor()
    for _ in range(LOCKOUT_FAILURES):
        post_login(client, "cmuller", "wrong-password")
    db.session.execute(update(Doctor).values(
        sign_in_locked_at=utcnow() - timedelta(minutes=15, seconds=1)))
    db.session.commit()
    # One more wrong password after the 15 minutes: checked, and locked again
    assert GENERIC in page_text(post_login(client, "cmuller", "wrong-password"))
    db.session.refresh(doctor)
    assert is_locked(doctor)
    assert len(events("auth.locked")) == 2
    assert len(events("auth.failed")) == LOCKOUT_FAILURES + 1


def test_the_desk_unlocks_at_once(client: FlaskClient, twilio: TwilioServer) -> None:
    doctor = make_sms_doctor()
    lock(doctor)
    assert GENERIC in page_text(post_login(client, "cmuller"))

    unlock(doctor, Actor("desk", "accueil"))
    db.session.commit()

    assert sign_in_doctor(client, twilio).status_code == 303
    assert signed_in_account(client) is not None


def test_guessing_from_one_address_meets_the_rate_limit(app: Flask, client: FlaskClient) -> None:
    app.config["RATELIMIT_SIGNIN_PER_ADDRESS"] = "3 per minute"
    csrf = token(client)
    statuses = [
        client.post("/auth/login", data={"csrf_token": csrf, "login": f"guess{i}",
                                         "password": "x"}).status_code
        for i in range(4)
    ]
    assert statuses == [200, 200, 200, 429]
    answer = client.post("/auth/login", data={"csrf_token": csrf, "login": "other",
                                              "password": "x"})
    assert answer.status_code == 429
    assert "Trop de tentatives" in page_text(answer)


def test_guessing_one_login_from_many_addresses_meets_the_rate_limit(
    app: Flask, client: FlaskClient
) -> None:
    app.config["RATELIMIT_SIGNIN_PER_ACCOUNT"] = "2 per minute"
    make_sms_doctor()
    csrf = token(client)

    def attempt(login: str, address: str) -> int:
        return client.post("/auth/login", data={"csrf_token": csrf, "login": login,
                                                "password": "wrong"},
                           environ_base={"REMOTE_ADDR": address}).status_code

    assert attempt("cmuller", "192.0.2.1") == 200
    assert attempt("CMULLER", "192.0.2.2") == 200  # the same login, case folded
    assert attempt("cmuller", "192.0.2.3") == 429
    assert attempt("someone.else", "192.0.2.4") == 200


def test_guessing_codes_meets_the_rate_limit(
    app: Flask, client: FlaskClient, twilio: TwilioServer
) -> None:
    app.config["RATELIMIT_SIGNIN_PER_ACCOUNT"] = "3 per minute"
    make_sms_doctor()
    post_login(client, "cmuller")  # the password step draws on the account's budget too
    csrf = token(client, "/auth/code")
    statuses = [client.post("/auth/code", data={"csrf_token": csrf, "code": "000000"},
                            environ_base={"REMOTE_ADDR": f"192.0.2.{i}"}).status_code
                for i in range(3)]
    assert statuses == [200, 200, 429]


# --- the account's budget: chosen by the server, never by a form field --------------------
#
# Each step is posted with fields an attacker adds to land in a new bucket each time (another
# login, an account, a pending sign-in), from a new address each time. The per-account budget
# of 3 must still stop the 4th post: the bucket is the account's, taken from the server's side.


def _junk(i: int) -> dict[str, str]:
    return {"login": f"someone-else-{i}", "account": f"doctor:{1000 + i}",
            "pending": f"staff:{i}", "handle": f"h{i}", "next": f"/x{i}"}


def _step_password(app: Flask, client: FlaskClient, twilio: TwilioServer) -> Any:
    make_sms_doctor()
    csrf = token(client)
    spellings = ["cmuller", " CMuller", "CMULLER ", "cMuLLeR"]

    def post(i: int) -> Any:
        return client.post("/auth/login", data={
            **_junk(i), "csrf_token": csrf, "login": spellings[i], "password": f"wrong-{i}"},
            environ_base={"REMOTE_ADDR": f"192.0.2.{i}"})
    return post


def _after_password(client: FlaskClient, login: str, path: str, data: dict[str, str],
                    page: str | None = None) -> Any:
    """Signs in with the password, then posts ``data`` (and junk) to the step at ``path``."""
    assert post_login(client, login).status_code == 303
    csrf = token(client, page or path)

    def post(i: int) -> Any:
        return client.post(path, data={**_junk(i), **data, "csrf_token": csrf},
                           environ_base={"REMOTE_ADDR": f"192.0.2.{i}"})
    return post


def _step_code(app: Flask, client: FlaskClient, twilio: TwilioServer) -> Any:
    make_sms_doctor()
    return _after_password(client, "cmuller", "/auth/code", {"code": "000000"})


def _step_resend(app: Flask, client: FlaskClient, twilio: TwilioServer) -> Any:
    make_sms_doctor()
    return _after_password(client, "cmuller", "/auth/code/resend", {}, page="/auth/code")


def _step_totp(app: Flask, client: FlaskClient, twilio: TwilioServer) -> Any:
    make_staff()
    return _after_password(client, "m.dupont", "/auth/totp", {"code": "000000"})


def _step_recovery_code(app: Flask, client: FlaskClient, twilio: TwilioServer) -> Any:
    make_staff()
    return _after_password(client, "m.dupont", "/auth/totp", {"code": "aaaa-bbbb-cccc-dddd"})


def _step_totp_enrol(app: Flask, client: FlaskClient, twilio: TwilioServer) -> Any:
    make_staff(enrolled=False)
    return _after_password(client, "m.dupont", "/auth/totp/enrol", {"code": "000000"})


def _signed_in(client: FlaskClient, user: Any, path: str, page: str,
               data: dict[str, str]) -> Any:
    sign_in_as(client, user)
    csrf = token(client, page)

    def post(i: int) -> Any:
        return client.post(path, data={**_junk(i), **data, "csrf_token": csrf},
                           environ_base={"REMOTE_ADDR": f"192.0.2.{i}"})
    return post


def _step_password_again(app: Flask, client: FlaskClient, twilio: TwilioServer) -> Any:
    return _signed_in(client, make_sms_doctor(), "/auth/password", "/auth/password", {
        "current_password": "wrong", "new_password": "x", "confirm_password": "x"})


def _step_recovery_codes_again(app: Flask, client: FlaskClient, twilio: TwilioServer) -> Any:
    return _signed_in(client, make_staff(), "/auth/recovery-codes", "/auth/recovery-codes",
                      {"password": "wrong"})


STEPS = {
    "password": (_step_password, 0),
    "code": (_step_code, 1),
    "resend": (_step_resend, 1),
    "totp": (_step_totp, 1),
    "recovery_code": (_step_recovery_code, 1),
    "totp_enrol": (_step_totp_enrol, 1),
    "password_again": (_step_password_again, 0),
    "recovery_codes_again": (_step_recovery_codes_again, 0),
}


@pytest.mark.parametrize("step", list(STEPS))
def test_form_fields_never_choose_the_account_bucket(
    app: Flask, client: FlaskClient, twilio: TwilioServer, step: str
) -> None:
    setup, used = STEPS[step]
    # A budget of 3 posts of this account's, after what reaching the step used of it
    app.config["RATELIMIT_SIGNIN_PER_ACCOUNT"] = f"{3 + used} per minute"
    app.config["RATELIMIT_SIGNIN_PER_ADDRESS"] = "1000 per minute"
    post = setup(app, client, twilio)
    statuses = [post(i).status_code for i in range(4)]
    assert all(status != 429 for status in statuses[:3]), statuses
    assert statuses[3] == 429, statuses


def test_two_browsers_of_one_account_share_its_budget_and_others_keep_theirs(
    app: Flask, client: FlaskClient, twilio: TwilioServer
) -> None:
    app.config["RATELIMIT_SIGNIN_PER_ACCOUNT"] = "4 per minute"
    make_sms_doctor()
    make_sms_doctor("lrochat", gln="7601000000026")
    laptop, phone, other = app.test_client(), app.test_client(), app.test_client()
    for browser in (laptop, phone):
        assert post_login(browser, "cmuller").status_code == 303  # 2 of 4
    assert post_code(laptop, "000000").status_code == 200  # 3
    assert post_code(phone, "000000").status_code == 200  # 4
    assert post_code(laptop, "000000").status_code == 429
    assert post_code(phone, "000000").status_code == 429
    # Another doctor's budget is untouched
    assert post_login(other, "lrochat").status_code == 303
    assert post_code(other, "000000").status_code == 200


# --- session fixation ---------------------------------------------------------------------


def test_nothing_from_the_session_before_sign_in_survives(
    app: Flask, client: FlaskClient, twilio: TwilioServer
) -> None:
    doctor = make_sms_doctor()
    victim = make_sms_doctor("victim", gln="7601000000026")
    with client.session_transaction() as session:
        session["planted"] = "by an attacker"
        session["_user_id"] = f"doctor:{victim.id}:{victim.session_epoch}"
        session["pending"] = {"account": f"doctor:{victim.id}", "stage": "code",
                              "next": "/", "handle": "planted", "at": time.time()}
        session["lang"] = "en"
    # An attacker keeps a copy of the cookie planted in the doctor's browser
    attacker = app.test_client()
    planted = copy_session(client, attacker)

    post_login(client, "cmuller")
    with client.session_transaction() as session:
        assert "planted" not in session
        assert "_user_id" not in session
        assert session["pending"]["account"] == f"doctor:{doctor.id}"
        assert session["lang"] == "en"  # the language choice is kept
    post_code(client, code_from(twilio))

    with client.session_transaction() as session:
        assert session["_user_id"] == f"doctor:{doctor.id}:{doctor.session_epoch}"
        assert "planted" not in session and "pending" not in session
    after = client.get_cookie("relais", domain="relais.test")
    assert after is not None and after.value != planted
    assert signed_in_account(attacker) == f"doctor:{victim.id}:0"  # still only the forgery
    with attacker.session_transaction() as session:
        session.pop("_user_id")
    assert "Claire Muller" not in page_text(attacker.get("/", follow_redirects=True))


# --- open redirects -----------------------------------------------------------------------


@pytest.mark.parametrize("target", ["//evil.example", "https://evil.example",
                                    "/\\evil.example", "javascript:alert(1)",
                                    "/\t/evil.example", "http:/evil.example"])
def test_next_never_leaves_the_site(
    client: FlaskClient, twilio: TwilioServer, target: str
) -> None:
    make_sms_doctor()
    assert 'name="next" value="/"' in page_text(client.get("/auth/login", query_string={
        "next": target}))
    answer = sign_in_doctor(client, twilio, next_path=target)
    assert answer.status_code == 303
    assert answer.headers["Location"] == "/"


# --- cross-site requests ------------------------------------------------------------------


def test_a_sign_in_post_without_csrf_token_does_nothing(
    client: FlaskClient, twilio: TwilioServer
) -> None:
    doctor = make_sms_doctor()
    answer = client.post("/auth/login", data={"login": "cmuller", "password": PASSWORD})
    assert answer.status_code == 400
    assert twilio.messages == []
    with client.session_transaction() as session:
        assert "pending" not in session
    wrong = client.post("/auth/login", data={"login": "cmuller", "password": "wrong"})
    assert wrong.status_code == 400
    db.session.refresh(doctor)
    assert doctor.failed_sign_ins == 0


def test_a_code_post_without_csrf_token_does_nothing(
    client: FlaskClient, twilio: TwilioServer
) -> None:
    make_sms_doctor()
    post_login(client, "cmuller")
    code = code_from(twilio)
    assert client.post("/auth/code", data={"code": code}).status_code == 400
    assert signed_in_account(client) is None
    assert post_code(client, code).status_code == 303  # the code was not spent


def test_sign_out_is_a_post_with_a_csrf_token(app: Flask, client: FlaskClient) -> None:
    doctor = make_sms_doctor()
    sign_in_as(client, doctor)
    assert client.get("/auth/logout").status_code == 405
    assert client.post("/auth/logout").status_code == 400
    assert signed_in_account(client) is not None
    answer = client.post("/auth/logout", data={"csrf_token": token(client, "/")})
    assert answer.status_code == 303
    assert signed_in_account(client) is None


def test_sign_out_everywhere_ends_the_other_devices_sessions(
    app: Flask, client: FlaskClient, twilio: TwilioServer
) -> None:
    make_sms_doctor()
    laptop = app.test_client()
    sign_in_doctor(laptop, twilio)
    sign_in_doctor(client, twilio)
    assert laptop.get("/auth/password").status_code == 200

    client.post("/auth/logout-everywhere", data={"csrf_token": token(client, "/")})

    assert signed_in_account(client) is None
    gone = laptop.get("/auth/password")
    assert gone.status_code == 303 and gone.headers["Location"].startswith("/auth/login")


def test_a_copy_of_the_cookie_kept_from_before_sign_out_is_refused(
    app: Flask, client: FlaskClient, twilio: TwilioServer
) -> None:
    doctor = make_sms_doctor()
    sign_in_doctor(client, twilio)
    thief = app.test_client()
    copy_session(client, thief)  # e.g. copied off a shared computer before the doctor left
    assert thief.get("/documents").status_code == 200

    client.post("/auth/logout", data={"csrf_token": token(client, "/")})

    refused = thief.get("/documents")
    assert refused.status_code == 303 and refused.headers["Location"].startswith("/auth/login")
    assert thief.post("/auth/password", data={}).status_code in (400, 401)
    # Only that session ended: the doctor signs in again on another device as usual.
    other = app.test_client()
    sign_in_doctor(other, twilio)
    assert other.get("/documents").status_code == 200
    assert doctor.session_epoch == db.session.get(Doctor, doctor.id).session_epoch


def test_a_signed_out_session_is_remembered_only_until_it_would_have_expired(
    app: Flask, client: FlaskClient, twilio: TwilioServer
) -> None:
    from app.models import EndedSession

    make_sms_doctor()
    sign_in_doctor(client, twilio)
    client.post("/auth/logout", data={"csrf_token": token(client, "/")})
    ended = db.session.scalars(db.select(EndedSession)).one()
    assert len(ended.id_hash) == 64  # a hash: the table holds no usable session id
    lifetime = ended.expires_at - ended.ended_at
    assert timedelta(hours=9, minutes=59) < lifetime <= timedelta(hours=10)

    # The next sign-out forgets the rows whose sessions are past the absolute limit anyway.
    db.session.execute(update(EndedSession).values(expires_at=utcnow() - timedelta(seconds=1)))
    db.session.commit()
    sign_in_doctor(client, twilio)
    client.post("/auth/logout", data={"csrf_token": token(client, "/")})
    db.session.expire_all()
    assert len(db.session.scalars(db.select(EndedSession)).all()) == 1


def test_a_session_not_made_by_sign_in_is_refused(app: Flask, client: FlaskClient) -> None:
    doctor = make_sms_doctor()
    sign_in_as(client, doctor)
    assert client.get("/documents").status_code == 200
    with client.session_transaction() as session:
        session.pop("sid")
    answer = client.get("/documents")
    assert answer.status_code == 303 and answer.headers["Location"].startswith("/auth/login")


def session_cookie_attributes(answer: Any, name: str) -> set[str]:
    """The attributes of the Set-Cookie header that sets ``name``, lower-cased, value left out."""
    for header in answer.headers.getlist("Set-Cookie"):
        if header.startswith(name + "="):
            return {part.strip().lower() for part in header.split(";")[1:]}
    raise AssertionError(f"no {name} cookie set: {answer.headers.getlist('Set-Cookie')}")


def test_the_signed_in_session_cookie_is_http_only_and_same_site(
    client: FlaskClient, twilio: TwilioServer
) -> None:
    make_sms_doctor()
    signed_in = sign_in_doctor(client, twilio)
    assert signed_in.status_code == 303
    attributes = session_cookie_attributes(signed_in, "relais")
    assert "httponly" in attributes  # no script reads it
    assert "samesite=lax" in attributes  # not sent with another site's POST
    assert "path=/" in attributes
    assert not any(a.startswith("domain=") for a in attributes)  # this host only


def test_in_production_the_session_cookie_is_secure_and_host_only(tmp_path: Any) -> None:
    from tests.conftest import make_app
    from tests.support.production import safe_production_settings

    production = make_app(f"sqlite:///{tmp_path / 'x.db'}", **safe_production_settings())
    answer = production.test_client().get("/auth/login")
    assert answer.status_code == 200
    # The __Host- prefix: the browser refuses it unless Secure, Path=/ and without Domain.
    attributes = session_cookie_attributes(answer, "__Host-relais")
    assert {"secure", "httponly", "samesite=lax", "path=/"} <= attributes
    assert not any(a.startswith("domain=") for a in attributes)


# --- forgotten sessions -------------------------------------------------------------------


@pytest.mark.parametrize(("key", "age"), [("seen_at", 15 * 60 + 1),
                                          ("signed_in_at", 10 * 3600 + 1)])
def test_sessions_end_after_15_idle_minutes_or_10_hours(
    client: FlaskClient, twilio: TwilioServer, key: str, age: int
) -> None:
    make_sms_doctor()
    sign_in_doctor(client, twilio)
    with client.session_transaction() as session:
        session["seen_at"] = time.time() - 60
        session[key] = time.time() - age

    answer = client.get("/auth/password")

    assert answer.status_code == 303
    assert answer.headers["Location"].startswith("/auth/login?next=%2Fauth%2Fpassword")
    assert signed_in_account(client) is None
    assert "Votre session a expiré" in page_text(client.get(answer.headers["Location"]))


def test_an_active_session_is_kept(client: FlaskClient, twilio: TwilioServer) -> None:
    make_sms_doctor()
    sign_in_doctor(client, twilio)
    with client.session_transaction() as session:
        session["seen_at"] = time.time() - 14 * 60
        session["signed_in_at"] = time.time() - 9 * 3600
    assert client.get("/auth/password").status_code == 200
