"""The desk's administration lists (/staff/desk/notifications, /staff/desk/accounts): failed
notification emails with resend, staff accounts with deactivate and reactivate, API clients
with revoke. Attack tests first, then the stories.

Every test runs on SQLite and, with TEST_DATABASE_URL, on PostgreSQL.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.test import TestResponse

from app.audit import CLI, verify
from app.dispatch.clients import create_client
from app.extensions import db
from app.models import ApiClient, Doctor, EmailChange, Notification, StaffUser
from app.models.base import utcnow
from tests.conftest import Api
from tests.support.factories import make_staff
from tests.support.pages import assert_no_inline_code, csrf_token
from tests.support.signin import sign_in_as
from tests.support.trail import events

DESK_ACTOR = "desk:desk-admin"

#: Every route of this module with a method (1 is an id of each kind, absent unless made).
ROUTES = [
    ("GET", "/staff/desk/notifications"),
    ("POST", "/staff/desk/notifications/1/resend"),
    ("GET", "/staff/desk/accounts"),
    ("POST", "/staff/desk/accounts/staff/1/deactivate"),
    ("POST", "/staff/desk/accounts/staff/1/reactivate"),
    ("GET", "/staff/desk/accounts/clients/1/revoke"),
    ("POST", "/staff/desk/accounts/clients/1/revoke"),
]
UNKNOWN = 2_000_000_000


# --- fixtures and helpers --------------------------------------------------------------------


@pytest.fixture()
def desk(client: FlaskClient) -> StaffUser:
    """A desk user, signed in on ``client``."""
    user = make_staff("desk-admin", "desk", password=None)
    sign_in_as(client, user)
    return user


def token(client: FlaskClient, path: str = "/staff/desk/accounts") -> str:
    return csrf_token(client.get(path, follow_redirects=True))


def post(client: FlaskClient, path: str, data: dict[str, str] | None = None) -> TestResponse:
    return client.post(path, data={"csrf_token": token(client), **(data or {})})


def text(response: TestResponse) -> str:
    return response.get_data(as_text=True)


def failed_row(doctor: Doctor, kind: str = "arrival", key: str | None = None,
               **values: object) -> Notification:
    now = utcnow()
    row = Notification(doctor_id=doctor.id, kind=kind, count=2,
                       idempotency_key=key or f"{kind}:{doctor.id}:failed-{utcnow().timestamp()}",
                       created_at=now - timedelta(hours=5), due_at=now - timedelta(hours=5),
                       next_attempt_at=now, attempts=6, failed_at=now,
                       last_error="SMTPRecipientsRefused 550", **values)
    db.session.add(row)
    db.session.commit()
    return row


@pytest.fixture()
def notified(active_doctor: Doctor) -> Doctor:
    active_doctor.email = "claire.muller@cabinet.example"
    active_doctor.notification_mode = "immediate"
    db.session.commit()
    return active_doctor


# --- access and attacks ------------------------------------------------------------------------


@pytest.mark.parametrize("path", [p.replace("/1/", f"/{UNKNOWN}/") for _, p in ROUTES
                                  if "/1/" in p])
def test_unknown_ids_answer_404(client: FlaskClient, desk: StaffUser, path: str) -> None:
    if path.endswith("/revoke") and "clients" in path:
        assert client.get(path).status_code == 404
    assert post(client, path).status_code == 404


def test_every_action_needs_the_csrf_token(
    client: FlaskClient, desk: StaffUser, notified: Doctor
) -> None:
    row = failed_row(notified)
    other = make_staff("other-desk", "desk", password=None)
    api_client, _ = create_client("dpi-csrf", CLI)
    db.session.commit()
    for path in (f"/staff/desk/notifications/{row.id}/resend",
                 f"/staff/desk/accounts/staff/{other.id}/deactivate",
                 f"/staff/desk/accounts/clients/{api_client.id}/revoke"):
        assert client.post(path).status_code == 400, path
        assert client.post(path, data={"csrf_token": "forged"}).status_code == 400, path
    db.session.expire_all()
    assert row.failed_at is not None and other.active and api_client.revoked_at is None
    assert events("notification.resent") == events("staff.deactivated") == []
    assert events("api_client.revoked") == []


def test_markup_in_names_is_escaped(
    client: FlaskClient, desk: StaffUser, active_doctor: Doctor
) -> None:
    active_doctor.family_name = "<script>alert(1)</script>"
    active_doctor.email = "x@example.ch"
    db.session.commit()
    failed_row(active_doctor)
    html = text(client.get("/staff/desk/notifications"))
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert_no_inline_code(html)
    assert_no_inline_code(text(client.get("/staff/desk/accounts")))


# --- failed notification emails ----------------------------------------------------------------


def test_the_desk_lists_failed_emails_with_what_it_needs(
    client: FlaskClient, desk: StaffUser, notified: Doctor
) -> None:
    failed_row(notified)
    # A sent and a pending one are not failures
    now = utcnow()
    db.session.add_all([
        Notification(doctor_id=notified.id, kind="digest", idempotency_key="digest:sent", count=1,
                     due_at=now, next_attempt_at=now, attempts=1, sent_at=now),
        Notification(doctor_id=notified.id, kind="digest", idempotency_key="digest:due", count=1,
                     due_at=now, next_attempt_at=now, attempts=0),
    ])
    db.session.commit()
    html = text(client.get("/staff/desk/notifications"))
    assert html.count("<h1") == 1
    assert "Muller Claire" in html and notified.gln in html
    assert f'href="/staff/desk/doctors/{notified.id}"' in html
    assert "Nouveaux documents" in html and "SMTPRecipientsRefused 550" in html
    assert html.count("Renvoyer") == 2  # the list's sentence and one button
    assert "claire.muller@cabinet.example" not in html  # the address stays on the doctor's page
    # The desk's first page only links to the list, with the count
    index = text(client.get("/staff/desk"))
    assert "1 e-mail n'a pas pu être remis" in index
    assert 'href="/staff/desk/notifications"' in index
    assert "SMTPRecipientsRefused" not in index


def test_the_lists_speak_english(client: FlaskClient, desk: StaffUser, notified: Doctor) -> None:
    failed_row(notified)
    with client.session_transaction() as session:
        session["lang"] = "en"
    html = text(client.get("/staff/desk/notifications"))
    assert "Notification emails that failed" in html and "New documents" in html
    assert "Resend" in html
    accounts = text(client.get("/staff/desk/accounts"))
    assert "Staff and desk accounts" in accounts and "API clients" in accounts


def test_resend_requeues_once_and_is_audited(
    client: FlaskClient, desk: StaffUser, notified: Doctor
) -> None:
    row = failed_row(notified)
    before = utcnow()
    answer = post(client, f"/staff/desk/notifications/{row.id}/resend")
    assert answer.status_code == 303
    assert answer.headers["Location"] == "/staff/desk/notifications"
    db.session.expire_all()
    assert row.failed_at is None and row.attempts == 0 and row.sent_at is None
    assert row.last_error is None and row.next_attempt_at >= before - timedelta(seconds=1)
    (event,) = events("notification.resent")
    assert event.actor == DESK_ACTOR and event.target == f"doctor:{notified.gln}"
    assert event.details == {"notification": row.id, "kind": "arrival",
                             "previous_error": "SMTPRecipientsRefused 550"}
    assert "Aucun e-mail en échec." in text(client.get("/staff/desk/notifications"))
    # A second click (another desk, a double submission) changes nothing and says so
    again = post(client, f"/staff/desk/notifications/{row.id}/resend")
    assert again.status_code == 303
    assert "plus en échec" in text(client.get("/staff/desk/notifications"))
    assert len(events("notification.resent")) == 1
    assert verify() is None


def test_a_confirmation_link_is_never_resent(
    client: FlaskClient, desk: StaffUser, notified: Doctor
) -> None:
    now = utcnow()
    change = EmailChange(doctor_id=notified.id, new_email="new@cabinet.example",
                         token_hash="a" * 64, created_at=now, expires_at=now + timedelta(hours=1))
    db.session.add(change)
    db.session.commit()
    # The token was wiped when the email failed: the link it carried is gone
    row = failed_row(notified, "email_confirm", f"email_confirm:{change.id}",
                     to_address="new@cabinet.example")
    html = text(client.get("/staff/desk/notifications"))
    assert "le lien de confirmation n'est plus valable" in html
    assert f"/staff/desk/notifications/{row.id}/resend" not in html
    post(client, f"/staff/desk/notifications/{row.id}/resend")
    db.session.expire_all()
    assert row.failed_at is not None and events("notification.resent") == []
    # Even with its token still there, an expired link is not sent again
    row.secret = "still-here"
    change.expires_at = now - timedelta(minutes=1)
    db.session.commit()
    post(client, f"/staff/desk/notifications/{row.id}/resend")
    db.session.expire_all()
    assert row.failed_at is not None and events("notification.resent") == []


@pytest.mark.parametrize(("change", "message"), [
    ({"state": "deactivated"}, "le compte du médecin n'est pas actif"),
    ({"email": None}, "le médecin n'a pas d'adresse e-mail"),
    ({"notification_mode": "none"}, "ne souhaite plus recevoir"),
])
def test_resend_is_refused_when_it_cannot_reach_the_doctor(
    client: FlaskClient, desk: StaffUser, notified: Doctor, change: dict[str, object],
    message: str,
) -> None:
    row = failed_row(notified)
    for name, value in change.items():
        setattr(notified, name, value)
    db.session.commit()
    html = text(client.get("/staff/desk/notifications"))
    assert message in html
    assert f"/notifications/{row.id}/resend" not in html
    # A forged POST is refused with the same message, and nothing changes
    post(client, f"/staff/desk/notifications/{row.id}/resend")
    assert message in text(client.get("/staff/desk/notifications"))
    db.session.expire_all()
    assert row.failed_at is not None and row.attempts == 6
    assert events("notification.resent") == []


def test_an_address_change_notice_goes_to_the_old_address_again(
    client: FlaskClient, desk: StaffUser, notified: Doctor
) -> None:
    notified.email = None  # the notice has its own address: the old one
    db.session.commit()
    row = failed_row(notified, "email_changed", to_address="old@cabinet.example")
    post(client, f"/staff/desk/notifications/{row.id}/resend")
    db.session.expire_all()
    assert row.failed_at is None
    assert events("notification.resent")[0].details["kind"] == "email_changed"


# --- staff accounts -----------------------------------------------------------------------------


def test_the_desk_lists_staff_accounts(client: FlaskClient, desk: StaffUser) -> None:
    make_staff("nurse.one", "staff", password=None)
    make_staff("pending.one", "staff", password=None, enrolled=False)
    html = text(client.get("/staff/desk/accounts"))
    assert html.count("<h1") == 1
    for login in ("desk-admin", "nurse.one", "pending.one"):
        assert login in html
    assert "Personnel hospitalier" in html and "Guichet" in html
    assert "Pas encore configurée" in html and "Configurée" in html
    assert "(vous)" in html
    assert "flask --app wsgi users create-staff" in html
    assert "flask --app wsgi api-client create" in html
    # The signed-in desk user is the last desk account: no button on that row
    assert f"/accounts/staff/{desk.id}/deactivate" not in html


def test_deactivating_ends_the_sessions_and_is_audited(
    app: Flask, client: FlaskClient, desk: StaffUser
) -> None:
    nurse = make_staff("nurse.one", "staff", password=None)
    # Given the nurse signed in on another browser
    other = app.test_client()
    sign_in_as(other, nurse)
    assert other.get("/staff/doctors").status_code == 200
    # When the desk deactivates the account
    answer = post(client, f"/staff/desk/accounts/staff/{nurse.id}/deactivate")
    assert answer.status_code == 303 and answer.headers["Location"] == "/staff/desk/accounts"
    db.session.expire_all()
    assert not nurse.active and nurse.deactivated_at is not None
    (event,) = events("staff.deactivated")
    assert event.actor == DESK_ACTOR and event.target == "staff:nurse.one"
    # Then the nurse's open session ends at its next request
    gone = other.get("/staff/doctors")
    assert gone.status_code == 303 and gone.headers["Location"].startswith("/auth/login")
    # And a second click changes nothing
    post(client, f"/staff/desk/accounts/staff/{nurse.id}/deactivate")
    assert len(events("staff.deactivated")) == 1
    assert "était déjà désactivé" in text(client.get("/staff/desk/accounts"))


def test_a_desk_user_cannot_deactivate_themself(
    client: FlaskClient, desk: StaffUser
) -> None:
    # not the last desk account: only "self" stops it
    make_staff("second-desk", "desk", password=None)
    post(client, f"/staff/desk/accounts/staff/{desk.id}/deactivate")
    assert "Vous ne pouvez pas désactiver votre propre compte." in text(
        client.get("/staff/desk/accounts"))
    db.session.expire_all()
    assert desk.active and events("staff.deactivated") == []


def test_the_last_active_desk_account_cannot_be_deactivated(
    app: Flask, client: FlaskClient, desk: StaffUser
) -> None:
    # Given two desk users, each on their own page
    second = make_staff("second-desk", "desk", password=None)
    second_client = app.test_client()
    sign_in_as(second_client, second)
    second_token = token(second_client)
    # When the first deactivates the second, it works (two were active)
    post(client, f"/staff/desk/accounts/staff/{second.id}/deactivate")
    db.session.expire_all()
    assert not second.active
    # And the second's page, loaded before, cannot take the first: its session has ended
    answer = second_client.post(f"/staff/desk/accounts/staff/{desk.id}/deactivate",
                                data={"csrf_token": second_token})
    assert answer.status_code == 401
    db.session.expire_all()
    assert desk.active


def test_two_desks_deactivating_each_other_leave_one(app: Flask) -> None:
    from app.staff.accounts import LAST_DESK, DeskRefusal, deactivate_staff_at_desk

    one = make_staff("desk-one", "desk", password=None)
    two = make_staff("desk-two", "desk", password=None)
    # Given both requests passed the gate while both accounts were active
    assert deactivate_staff_at_desk(two, one, CLI)
    db.session.commit()
    # Then the second to run counts again under the lock and refuses
    with pytest.raises(DeskRefusal) as refused:
        deactivate_staff_at_desk(one, two, CLI)
    assert refused.value.code == LAST_DESK
    db.session.rollback()
    db.session.expire_all()
    assert one.active and not two.active


def test_reactivating_keeps_the_authenticator_but_not_old_sessions(
    app: Flask, client: FlaskClient, desk: StaffUser
) -> None:
    nurse = make_staff("nurse.one", "staff", password=None)
    secret_before = nurse.totp_ciphertext
    other = app.test_client()
    sign_in_as(other, nurse)
    post(client, f"/staff/desk/accounts/staff/{nurse.id}/deactivate")
    answer = post(client, f"/staff/desk/accounts/staff/{nurse.id}/reactivate")
    assert answer.status_code == 303
    db.session.expire_all()
    assert nurse.active and nurse.deactivated_at is None
    assert nurse.totp_ciphertext == secret_before and nurse.totp_confirmed_at is not None
    (event,) = events("staff.reactivated")
    assert event.actor == DESK_ACTOR and event.target == "staff:nurse.one"
    # The session from before the deactivation does not come back
    gone = other.get("/staff/doctors")
    assert gone.status_code == 303 and gone.headers["Location"].startswith("/auth/login")
    # A second click changes nothing
    post(client, f"/staff/desk/accounts/staff/{nurse.id}/reactivate")
    assert len(events("staff.reactivated")) == 1
    assert verify() is None


def test_an_account_that_never_enrolled_its_authenticator_is_not_reactivated(
    client: FlaskClient, desk: StaffUser
) -> None:
    pending = make_staff("pending.one", "staff", password=None, enrolled=False)
    post(client, f"/staff/desk/accounts/staff/{pending.id}/deactivate")
    html = text(client.get("/staff/desk/accounts"))
    assert f"/accounts/staff/{pending.id}/reactivate" not in html
    post(client, f"/staff/desk/accounts/staff/{pending.id}/reactivate")
    assert "ne peut pas être réactivé" in text(client.get("/staff/desk/accounts"))
    db.session.expire_all()
    assert not pending.active and events("staff.reactivated") == []


# --- API clients ----------------------------------------------------------------------------------


def test_revoking_a_client_stops_its_token_at_once(
    client: FlaskClient, desk: StaffUser, api: Api
) -> None:
    # Given the DPI calling the API with its token
    assert api.get("/api/v1/doctors").status_code == 200
    dpi = db.session.scalar(select(ApiClient).where(ApiClient.name == "dpi-test"))
    assert dpi is not None
    html = text(client.get("/staff/desk/accounts"))
    assert "dpi-test" in html
    # When the desk opens the confirmation step, nothing is revoked yet
    confirm = text(client.get(f"/staff/desk/accounts/clients/{dpi.id}/revoke"))
    assert "Révoquer définitivement dpi-test" in confirm
    db.session.expire_all()
    assert dpi.revoked_at is None
    assert api.get("/api/v1/doctors").status_code == 200
    # And confirms
    answer = post(client, f"/staff/desk/accounts/clients/{dpi.id}/revoke")
    assert answer.status_code == 303 and answer.headers["Location"] == "/staff/desk/accounts"
    # Then the next API call with the same token is refused
    assert api.get("/api/v1/doctors").status_code == 401
    db.session.expire_all()
    assert dpi.revoked_at is not None
    (event,) = events("api_client.revoked")
    assert event.actor == DESK_ACTOR and event.target == "api_client:dpi-test"
    # A second submission changes nothing
    post(client, f"/staff/desk/accounts/clients/{dpi.id}/revoke")
    assert len(events("api_client.revoked")) == 1
    page = text(client.get("/staff/desk/accounts"))
    assert "était déjà révoqué" in page
    assert f"/accounts/clients/{dpi.id}/revoke" not in page


def test_a_hostile_client_name_is_escaped(client: FlaskClient, desk: StaffUser) -> None:
    # Names are checked at creation; one written to the table directly is still escaped
    db.session.add(ApiClient(name='<b onmouseover="x">', token_id="f" * 16, token_hash="0" * 64))
    db.session.commit()
    html = text(client.get("/staff/desk/accounts"))
    assert '<b onmouseover="x">' not in html and "&lt;b onmouseover=" in html


def test_the_desk_sees_what_each_client_may_do(client: FlaskClient, desk: StaffUser) -> None:
    # Given the DPI's client (the default set) and an operations client with two scopes
    create_client("dpi-main", CLI)
    create_client("dpi-ops", CLI, ["events:read", "documents:admin"])
    db.session.commit()
    html = text(client.get("/staff/desk/accounts"))
    rows = {name: row.split("</tr>")[0] for row in html.split("<tr>")
            for name in ("dpi-main", "dpi-ops") if f'<th scope="row">{name}</th>' in row}
    # Then each row lists the client's scopes, and only those
    dpi_set = ["documents:write", "documents:read", "consents:write", "patients:write",
               "doctors:read", "events:read"]
    assert all(f"<code>{s}</code>" in rows["dpi-main"] for s in dpi_set)
    assert "documents:admin" not in rows["dpi-main"]
    assert [s for s in [*dpi_set, "documents:admin"] if f"<code>{s}</code>" in rows["dpi-ops"]] \
        == ["events:read", "documents:admin"]
    # And the page says in words what each scope allows, and how to give them
    assert "Lire et retirer les documents de tous les clients" in html
    assert "--scope" in html
