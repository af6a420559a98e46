"""One-time SMS codes (app/auth/codes.py): 5 minutes, single use, 5 tries, 3 resends after 30 s.

Time is passed as ``now`` (freezegun is not among the dev requirements). Each test runs on
SQLite and, with TEST_DATABASE_URL, on PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from sqlalchemy import select

from app.auth import codes
from app.auth.codes import Check, ResendRefused
from app.extensions import db
from app.models import OneTimeCode
from tests.support.concurrency import Start, race

T0 = datetime(2026, 11, 22, 8, 0, 0, tzinfo=UTC)
PHONE = "+41791234567"


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


@pytest.fixture()
def issued(app: Flask) -> codes.Issued:
    result = codes.issue("sign_in", PHONE, now=T0)
    db.session.commit()
    return result


def test_a_code_works_for_five_minutes(issued: codes.Issued) -> None:
    almost = T0 + timedelta(minutes=5) - timedelta(seconds=1)
    assert codes.check(issued.challenge, issued.code, now=almost) is Check.OK


def test_a_code_expires_after_five_minutes(issued: codes.Issued) -> None:
    assert codes.check(issued.challenge, issued.code, now=T0 + timedelta(minutes=5)) \
        is Check.EXPIRED


def test_a_code_is_used_once(issued: codes.Issued) -> None:
    assert codes.check(issued.challenge, issued.code, now=T0) is Check.OK
    assert codes.check(issued.challenge, issued.code, now=T0) is Check.USED


def test_spaces_typed_in_a_code_are_ignored(issued: codes.Issued) -> None:
    typed = f" {issued.code[:3]} {issued.code[3:]} "
    assert codes.check(issued.challenge, typed, now=T0) is Check.OK


@pytest.mark.parametrize("typed", ["", "12345", "1234567", "abcdef", "١٢٣٤٥٦"])
def test_malformed_codes_are_wrong_and_count(issued: codes.Issued, typed: str) -> None:
    assert codes.check(issued.challenge, typed, now=T0) is Check.WRONG
    assert issued.challenge.tries == 1


def test_five_wrong_tries_end_the_attempt_even_for_the_right_code(issued: codes.Issued) -> None:
    for _ in range(codes.MAX_TRIES):
        assert codes.check(issued.challenge, wrong(issued.code), now=T0) is Check.WRONG
    assert codes.check(issued.challenge, issued.code, now=T0) is Check.TOO_MANY_TRIES
    assert issued.challenge.used_at is None


def test_a_resend_comes_after_30_seconds_and_replaces_the_code(issued: codes.Issued) -> None:
    with pytest.raises(ResendRefused) as early:
        codes.resend(issued.challenge, now=T0 + timedelta(seconds=29))
    assert early.value.reason == "too_early"
    assert early.value.wait == timedelta(seconds=1)
    assert codes.wait_before_resend(issued.challenge, now=T0 + timedelta(seconds=10)) \
        == timedelta(seconds=20)

    later = T0 + timedelta(seconds=30)
    fresh = codes.resend(issued.challenge, now=later)

    assert fresh.challenge.handle == issued.challenge.handle  # the same attempt
    if fresh.code != issued.code:  # one chance in a million they are equal
        assert codes.check(fresh.challenge, issued.code, now=later) is Check.WRONG
    assert codes.check(fresh.challenge, fresh.code, now=later) is Check.OK
    # The new code has its own 5 minutes.
    assert fresh.challenge.expires_at == later + codes.CODE_LIFETIME


def test_tries_carry_over_a_resend(issued: codes.Issued) -> None:
    for _ in range(codes.MAX_TRIES - 1):
        codes.check(issued.challenge, wrong(issued.code), now=T0)
    fresh = codes.resend(issued.challenge, now=T0 + timedelta(seconds=30))
    assert codes.check(fresh.challenge, wrong(fresh.code), now=T0) is Check.WRONG
    assert codes.check(fresh.challenge, fresh.code, now=T0) is Check.TOO_MANY_TRIES
    with pytest.raises(ResendRefused, match="too_many_tries"):
        codes.resend(fresh.challenge, now=T0 + timedelta(minutes=1))


def test_at_most_three_resends(issued: codes.Issued) -> None:
    when = T0
    for _ in range(3):
        when += timedelta(seconds=30)
        codes.resend(issued.challenge, now=when)
    assert codes.resends_left(issued.challenge) == 0
    with pytest.raises(ResendRefused) as refused:
        codes.resend(issued.challenge, now=when + timedelta(minutes=1))
    assert refused.value.reason == "too_many_sends"


def test_no_resend_once_the_code_was_used(issued: codes.Issued) -> None:
    codes.check(issued.challenge, issued.code, now=T0)
    with pytest.raises(ResendRefused, match="used"):
        codes.resend(issued.challenge, now=T0 + timedelta(minutes=1))


def test_a_failed_send_allows_a_retry_at_once_without_using_up_a_resend(
    issued: codes.Issued,
) -> None:
    # Given the first SMS did not go out (the provider failed)
    codes.send_failed(issued.challenge, now=T0)
    # Then the retry needs no waiting, and 3 resends remain after it
    retry = codes.resend(issued.challenge, now=T0)
    assert codes.resends_left(retry.challenge) == 3
    assert codes.check(retry.challenge, retry.code, now=T0) is Check.OK


def test_failed_sends_never_keep_the_attempt_open_past_the_resend_limit(
    issued: codes.Issued,
) -> None:
    when = T0
    for _ in range(3):
        when += timedelta(seconds=30)
        codes.resend(issued.challenge, now=when)
    # A failed last send lets one more go out at once; sends then are 4 again.
    codes.send_failed(issued.challenge, now=when)
    codes.resend(issued.challenge, now=when)
    with pytest.raises(ResendRefused, match="too_many_sends"):
        codes.resend(issued.challenge, now=when + timedelta(minutes=1))


def test_only_a_hash_of_the_code_is_stored(issued: codes.Issued) -> None:
    row = db.session.execute(
        select(OneTimeCode.__table__).where(OneTimeCode.id == issued.challenge.id)
    ).one()
    stored = " ".join(str(value) for value in row)
    assert issued.code not in stored.replace(PHONE, "")
    assert issued.challenge.code_hash == codes.code_hash(issued.challenge.handle, issued.code)
    assert len(issued.challenge.code_hash) == 64


def test_a_code_works_only_for_its_own_attempt(app: Flask) -> None:
    first = codes.issue("sign_in", PHONE, now=T0)
    second = codes.issue("sign_in", PHONE, now=T0)
    db.session.commit()
    if first.code != second.code:
        assert codes.check(second.challenge, first.code, now=T0) is Check.WRONG
    assert codes.find(first.challenge.handle, "phone_check") is None  # another purpose
    assert codes.find("x" * 65, "sign_in") is None
    assert codes.check(first.challenge, first.code, now=T0) is Check.OK


def test_a_stale_copy_of_the_attempt_cannot_spend_the_code_again(
    app: Flask, issued: codes.Issued
) -> None:
    # Given two servers that both loaded the attempt before either checked it
    stale = issued.challenge
    with app.app_context():  # another session, as another server would have
        other = codes.find(stale.handle, "sign_in")
        assert other is not None
        assert codes.check(other, issued.code, now=T0) is Check.OK
        db.session.commit()
    # Then the second check, with the code already spent, fails
    assert stale.used_at is None
    assert codes.check(stale, issued.code, now=T0) is Check.USED


def test_two_racing_checks_of_one_code_give_one_ok(app: Flask, issued: codes.Issued) -> None:
    handle, code = issued.challenge.handle, issued.code
    db.session.remove()

    def attempt(start: Start) -> Check:
        with app.app_context():
            try:
                challenge = codes.find(handle, "sign_in")
                assert challenge is not None
                start()
                result = codes.check(challenge, code, now=T0)
                db.session.commit()
                return result
            finally:
                db.session.remove()

    results = race([attempt, attempt])
    assert sorted(r.value for r in results) == ["ok", "used"]
