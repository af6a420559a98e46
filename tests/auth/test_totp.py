"""TOTP for staff and desk (issue 3): codes, clock drift, replay, URIs, recovery codes.

No database needed. Expected codes come from pyotp's own TOTP class, an implementation
independent of ``verify``'s window and replay logic.
"""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, unquote, urlsplit

import pyotp
import pytest

from app.auth import totp

# RFC 6238's test secret ("12345678901234567890"), base32.
SECRET = base64.b32encode(b"12345678901234567890").decode()
NOW = datetime(2026, 11, 22, 8, 0, 15, tzinfo=UTC)
STEP = timedelta(seconds=30)


def code(when: datetime, secret: str = SECRET) -> str:
    return pyotp.TOTP(secret).at(when)


def counter(when: datetime) -> int:
    return int(when.timestamp()) // 30


def test_rfc_6238_vector() -> None:
    # RFC 6238 appendix B, SHA-1, T = 59 s: 94287082, whose last 6 digits are the 6-digit code.
    assert totp.code_at(SECRET, 59 // 30) == "287082"


def test_the_current_code_is_accepted_and_its_step_returned() -> None:
    assert totp.verify(SECRET, code(NOW), None, NOW) == counter(NOW)


@pytest.mark.parametrize("steps", [-1, 1])
def test_a_code_one_step_early_or_late_is_accepted(steps: int) -> None:
    when = NOW + steps * STEP
    assert totp.verify(SECRET, code(when), None, NOW) == counter(when)


@pytest.mark.parametrize("steps", [-2, 2, -3, 3])
def test_a_code_two_steps_or_more_away_is_refused(steps: int) -> None:
    assert totp.verify(SECRET, code(NOW + steps * STEP), None, NOW) is None


def test_a_wrong_code_is_refused() -> None:
    right = code(NOW)
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"
    window = {code(NOW + s * STEP) for s in (-1, 0, 1)}
    assert wrong not in window
    assert totp.verify(SECRET, wrong, None, NOW) is None


def test_a_code_from_another_secret_is_refused() -> None:
    other = base64.b32encode(b"abcdefghijabcdefghij").decode()
    theirs = code(NOW, other)
    assert theirs not in {code(NOW + s * STEP) for s in (-1, 0, 1)}
    assert totp.verify(SECRET, theirs, None, NOW) is None


def test_the_same_code_is_refused_the_second_time() -> None:
    # Given a code accepted once
    first = totp.verify(SECRET, code(NOW), None, NOW)
    assert first is not None

    # When it is typed again within its validity, Then it is refused
    assert totp.verify(SECRET, code(NOW), first, NOW) is None
    assert totp.verify(SECRET, code(NOW), first, NOW + STEP) is None


def test_an_older_code_is_refused_after_a_newer_one() -> None:
    # Given the next step's code accepted (a fast clock on the phone)
    newer = totp.verify(SECRET, code(NOW + STEP), None, NOW)
    assert newer == counter(NOW) + 1

    # Then the current and previous steps' codes, still in the window, are refused
    assert totp.verify(SECRET, code(NOW), newer, NOW) is None
    assert totp.verify(SECRET, code(NOW - STEP), newer, NOW) is None


def test_a_later_code_is_accepted_after_an_earlier_one() -> None:
    earlier = totp.verify(SECRET, code(NOW - STEP), None, NOW)
    assert earlier is not None
    assert totp.verify(SECRET, code(NOW), earlier, NOW) == counter(NOW)


@pytest.mark.parametrize(
    "typed",
    ["", "12345", "1234567", "abcdef", "12345a", "１２３４５６", "١٢٣٤٥٦", "123456\n1", "+12345"],
)
def test_malformed_codes_are_refused(typed: str) -> None:
    assert totp.verify(SECRET, typed, None, NOW) is None


def test_a_seven_digit_code_ending_in_the_right_code_is_refused() -> None:
    assert totp.verify(SECRET, "0" + code(NOW), None, NOW) is None
    assert totp.verify(SECRET, code(NOW) + "0", None, NOW) is None


def test_spaces_inside_the_code_are_ignored() -> None:
    right = code(NOW)
    assert totp.verify(SECRET, f" {right[:3]} {right[3:]} ", None, NOW) == counter(NOW)


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(ValueError):
        totp.verify(SECRET, code(NOW), None, NOW.replace(tzinfo=None))


def test_new_secrets_are_160_bit_base32_and_distinct() -> None:
    secrets = {totp.new_secret() for _ in range(20)}
    assert len(secrets) == 20
    for secret in secrets:
        assert re.fullmatch(r"[A-Z2-7]{32}", secret)
        assert len(base64.b32decode(secret)) == 20


def test_the_provisioning_uri_names_issuer_login_and_secret() -> None:
    secret = totp.new_secret()
    uri = totp.provisioning_uri(secret, "m.dupont")

    parts = urlsplit(uri)
    query = parse_qs(parts.query)
    assert parts.scheme == "otpauth"
    assert parts.netloc == "totp"
    assert unquote(parts.path) == "/Relais:m.dupont"
    assert query["secret"] == [secret]
    assert query["issuer"] == ["Relais"]
    # An authenticator reading it computes the same codes.
    parsed = pyotp.parse_uri(uri)
    assert totp.verify(secret, parsed.now(), None, datetime.now(UTC)) is not None


def test_the_issuer_can_be_changed() -> None:
    uri = totp.provisioning_uri(totp.new_secret(), "desk1", issuer="Relais HUG")
    assert parse_qs(urlsplit(uri).query)["issuer"] == ["Relais HUG"]


def test_recovery_codes_are_grouped_unambiguous_and_distinct() -> None:
    codes = totp.recovery_codes()
    assert len(codes) == 10
    assert len(set(codes)) == 10
    for recovery in codes:
        assert re.fullmatch(r"[2-9a-hjkmnp-z]{4}(-[2-9a-hjkmnp-z]{4}){3}", recovery), recovery
        assert not set(recovery) & set("01ilo")
    assert len(totp.recovery_codes(3)) == 3


def test_recovery_code_hash_ignores_case_spaces_and_dashes() -> None:
    recovery = totp.recovery_codes(1)[0]
    digest = totp.recovery_code_hash(recovery)
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert totp.recovery_code_hash(recovery.upper().replace("-", " ")) == digest
    assert recovery not in digest
    with pytest.raises(ValueError):
        totp.recovery_code_hash("not-a-code")
