"""Who is signed in costs one round trip: the account is read only if the session was not
ended, in the same statement (issue 16's lean request path), and every check of the gate holds."""

from __future__ import annotations

import time

from flask import Flask
from flask.testing import FlaskClient

from app.extensions import db
from app.models import Doctor, EndedSession
from app.models.base import utcnow
from tests.support.factories import make_doctor, make_staff
from tests.support.queries import counted_queries
from tests.support.signin import sign_in_as


def principal_reads(seen: list[str]) -> list[str]:
    return [s for s in seen if "ended_sessions" in s or "FROM doctors" in s
            or "FROM staff_users" in s]


def test_a_signed_in_page_reads_its_principal_in_one_statement(
    app: Flask, client: FlaskClient
) -> None:
    sign_in_as(client, make_doctor())
    with counted_queries() as seen:
        assert client.get("/help").status_code == 200
    reads = principal_reads(seen)
    assert len(reads) == 1, reads
    assert "ended_sessions" in reads[0] and "doctors" in reads[0]


def test_a_staff_page_too(app: Flask, client: FlaskClient) -> None:
    sign_in_as(client, make_staff())
    with counted_queries() as seen:
        assert client.get("/staff/doctors").status_code == 200
    reads = principal_reads(seen)
    assert len(reads) == 1, reads
    assert "ended_sessions" in reads[0] and "staff_users" in reads[0]


def test_an_ended_session_is_refused_in_that_same_statement(
    app: Flask, client: FlaskClient
) -> None:
    sign_in_as(client, make_doctor())
    with client.session_transaction() as session:
        sid = str(session["sid"])
    from app.auth.session import _session_id_hash

    db.session.add(EndedSession(id_hash=_session_id_hash(sid), expires_at=utcnow()))
    db.session.commit()
    answer = client.get("/documents")
    assert answer.status_code == 303 and "/auth/login" in answer.headers["Location"]


def test_a_bumped_epoch_or_a_deactivated_account_ends_the_session(
    app: Flask, client: FlaskClient
) -> None:
    doctor = make_doctor()
    sign_in_as(client, doctor)
    assert client.get("/documents").status_code == 200
    doctor.session_epoch += 1
    db.session.commit()
    assert client.get("/documents").status_code == 303

    sign_in_as(client, doctor)
    assert client.get("/documents").status_code == 200
    db.session.get(Doctor, doctor.id).state = "deactivated"  # type: ignore[union-attr]
    db.session.commit()
    assert client.get("/documents").status_code == 303


def test_a_forged_account_id_is_no_principal(app: Flask, client: FlaskClient) -> None:
    """An id no row can hold (the cookie is signed, but never trust a number's size)."""
    with client.session_transaction() as session:
        session.update({"_user_id": "doctor:99999999999999999999:0", "sid": "x",
                        "signed_in_at": time.time(), "seen_at": time.time()})
    assert client.get("/documents").status_code == 303
