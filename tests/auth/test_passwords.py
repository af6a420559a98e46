"""Password hashing and the rules a new password must meet (issue 3). No database needed."""

from __future__ import annotations

import re

import pytest

from app.auth import passwords
from app.auth.passwords import (
    COMMON,
    CONTAINS_PERSONAL_DATA,
    MAX_LENGTH,
    MESSAGES,
    MIN_LENGTH,
    REASONS,
    TOO_LONG,
    TOO_SHORT,
    WEAK,
    check_new_password,
    common_passwords,
    describe,
    hash_password,
    needs_rehash,
    temporary_password,
    verify_password,
)

STRONG = "cheval-agrafe-orbite-tulipe"

# What the desk knows of Dr Jean Dupont, as the views pass it.
DUPONT = ("drjeandupont", "Jean", "Dupont", "jean.dupont@hin.ch", "7601000123456")


# --- argon2id ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def strong_hash() -> str:
    return hash_password(STRONG)


def test_hash_is_argon2id_with_the_rfc_9106_profile(strong_hash: str) -> None:
    assert strong_hash.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert not needs_rehash(strong_hash)


def test_hash_is_salted() -> None:
    assert hash_password(STRONG) != hash_password(STRONG)


def test_verify_accepts_the_right_password(strong_hash: str) -> None:
    assert verify_password(strong_hash, STRONG) is True


@pytest.mark.parametrize(
    "attempt",
    [STRONG.upper(), STRONG + " ", "", "cheval-agrafe-orbite"],
    ids=["upper-case", "trailing-space", "empty", "prefix"],
)
def test_verify_refuses_a_wrong_password(strong_hash: str, attempt: str) -> None:
    assert verify_password(strong_hash, attempt) is False


@pytest.mark.parametrize(
    "garbage",
    ["", "not a hash", "$argon2id$v=19$m=65536,t=3,p=4$garbage", "$2b$12$" + "a" * 53],
    ids=["empty", "text", "truncated-argon2id", "bcrypt"],
)
def test_verify_returns_false_on_a_garbage_hash(garbage: str) -> None:
    assert verify_password(garbage, STRONG) is False


def test_weaker_parameters_need_a_rehash() -> None:
    from argon2 import PasswordHasher, Type

    old = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1, type=Type.ID)
    assert needs_rehash(old.hash(STRONG))


# --- refusals ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "password",
    ["", "a", "Xq7#vLm2@pZ", "é" * 11],
    ids=["empty", "one-char", "11-random-chars", "11-accented"],
)
def test_too_short(password: str) -> None:
    assert TOO_SHORT in check_new_password(password)


@pytest.mark.parametrize(
    "password",
    ["Kq7#vLm2@pXz" * 11, "x" * (MAX_LENGTH + 1), "a" * 10_000],
    ids=["132-random-chars", "129-chars", "10000-chars"],
)
def test_too_long_is_the_only_reason(password: str) -> None:
    assert check_new_password(password) == [TOO_LONG]


def test_exactly_max_length_is_not_too_long() -> None:
    password = "Kq7#vLm2@pXz" * 10 + "Tr4!wQ9e"
    assert len(password) == MAX_LENGTH
    assert check_new_password(password) == []


@pytest.mark.parametrize(
    "password",
    [
        "password123456",
        "Motdepasse2026!",
        "azertyuiop123",
        "Password2026!",
        "PASSWORD!!!!2026",
        "hôpital-2026-2026",
        "Soleil_12345678",
        "qwertzuiop2026",
        "Relais2026!!!!",
        "!!2026docteur2026",
        "iloveyou12345",
    ],
    ids=lambda p: p,
)
def test_common(password: str) -> None:
    assert COMMON in check_new_password(password)


@pytest.mark.parametrize(
    "password",
    ["aaaaaaaaaaaa", "abcdefghijklmnop", "123456789012", "qwertyuiopasdfgh", "monkeymonkey12"],
    ids=lambda p: p,
)
def test_weak(password: str) -> None:
    assert WEAK in check_new_password(password)


@pytest.mark.parametrize(
    ("password", "inputs"),
    [
        ("drjeandupont2026", DUPONT),
        ("Drjeandupont2026!", DUPONT),
        ("DRJEANDUPONT-1975", DUPONT),
        ("verte-Dupont-lune-orbite", DUPONT),
        ("verte-DUPONT-lune-orbite", DUPONT),
        ("mon-numero-7601000123456", DUPONT),
        ("verte-Dûpont-lune-orbite", DUPONT),
        ("cheval-de-la-harpe-orbite", ("mdelaharpe", "Marie", "de La Harpe")),
        ("cheval-delaharpe-orbite", ("mdelaharpe", "Marie", "de La Harpe")),
    ],
    ids=[
        "login+year",
        "login+year+punctuation",
        "login-upper-case",
        "family-name",
        "family-name-upper-case",
        "gln",
        "family-name-with-accent",
        "compound-family-name",
        "compound-family-name-squeezed",
    ],
)
def test_contains_personal_data(password: str, inputs: tuple[str, ...]) -> None:
    assert CONTAINS_PERSONAL_DATA in check_new_password(password, user_inputs=inputs)


def test_login_plus_year_is_also_weak_for_zxcvbn() -> None:
    """The user inputs reach zxcvbn: the same password scores well without them."""
    assert WEAK in check_new_password("drjeandupont2026", user_inputs=DUPONT)
    assert WEAK not in check_new_password("drjeandupont2026")


@pytest.mark.parametrize(
    ("password", "inputs"),
    [
        ("cheval-agrafe-hin-orbite", ("jean.dupont@hin.ch",)),
        ("cheval-lee-agrafe-orbite", ("Lee",)),
        ("cheval-agrafe-orbite-tulipe", ("",)),
    ],
    ids=["email-domain-ignored", "3-letter-name-ignored", "empty-input-ignored"],
)
def test_short_or_irrelevant_personal_data_is_not_looked_for(
    password: str, inputs: tuple[str, ...]
) -> None:
    assert check_new_password(password, user_inputs=inputs) == []


def test_several_reasons_at_once() -> None:
    assert check_new_password("password") == [TOO_SHORT, COMMON, WEAK]


# --- accepted ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "password",
    [
        STRONG,
        "Cheval Agrafe Orbite Tulipe",
        "horloge-pivoine-marteau-lac",
        "Kq7#vLm2@pXz",
        "Le chat de Zoé mange 3 oranges bleues!",
        "dürüm-Ökonom-Straße-Fjord",
    ],
    ids=["passphrase", "passphrase-spaces", "passphrase-2", "12-random", "sentence", "unicode"],
)
def test_strong_passwords_are_accepted(password: str) -> None:
    assert check_new_password(password, user_inputs=DUPONT) == []


# --- unicode -------------------------------------------------------------------------------


def test_length_is_counted_after_nfkc() -> None:
    decomposed = "e\u0301"  # e + combining acute: one character once composed
    assert TOO_SHORT in check_new_password(decomposed * 11)  # 22 code points, 11 characters
    assert TOO_SHORT not in check_new_password(decomposed * 12)


def test_compatibility_characters_expand_under_nfkc() -> None:
    ligature = "\ufb03"  # "ffi", three characters after NFKC
    assert check_new_password(ligature * 43) == [TOO_LONG]  # 43 typed, 129 counted
    assert TOO_LONG not in check_new_password(ligature * 42)  # 126 counted


def test_composed_and_decomposed_forms_are_judged_alike() -> None:
    composed = "Zoé-pivoine-marteau-lac"
    decomposed = composed.replace("é", "e\u0301")
    assert check_new_password(composed) == check_new_password(decomposed) == []


def test_a_password_typed_in_another_unicode_form_is_the_same_password() -> None:
    import unicodedata

    chosen = "Café-crème du matin à l'hôpital"
    # Chosen on a keyboard that sends "é" decomposed and a fullwidth hyphen...
    stored = passwords.hash_password(unicodedata.normalize("NFD", chosen).replace("-", "\uff0d"))
    # ...and typed later on another that sends the composed form and a plain hyphen.
    assert passwords.verify_password(stored, unicodedata.normalize("NFC", chosen))
    assert passwords.verify_password(stored, unicodedata.normalize("NFD", chosen))
    assert not passwords.verify_password(stored, chosen.replace("é", "e"))


def test_a_hash_made_before_normalisation_still_verifies() -> None:
    import unicodedata

    typed = unicodedata.normalize("NFD", "Café-crème du matin à l'hôpital")
    legacy = passwords._hasher.hash(typed)  # what hash_password stored before NFKC
    assert passwords.verify_password(legacy, typed)
    assert not passwords.verify_password(legacy, typed + "x")


def test_fullwidth_common_password_is_common() -> None:
    fullwidth = "".join(chr(ord(c) + 0xFEE0) for c in "password2026")
    assert COMMON in check_new_password(fullwidth)


# --- the bundled list ----------------------------------------------------------------------


def test_bundled_list_has_at_least_10000_entries() -> None:
    assert len(common_passwords()) >= 10_000


@pytest.mark.parametrize(
    "word",
    ["password", "123456", "qwerty", "iloveyou", "dragon"],
    ids=lambda w: w,
)
def test_bundled_list_has_the_zxcvbn_classics(word: str) -> None:
    assert word in common_passwords()


@pytest.mark.parametrize(
    "word",
    [
        "motdepasse",
        "soleil",
        "hopital",
        "hug",
        "relais",
        "medecin",
        "docteur",
        "bonjour",
        "azerty",
        "azertyuiop",
        "qwertz",
        "motdepasse123",
    ],
    ids=lambda w: w,
)
def test_bundled_list_has_the_french_and_hospital_ones(word: str) -> None:
    assert word in common_passwords()


def test_bundled_list_is_a_cached_frozenset_of_folded_entries() -> None:
    entries = common_passwords()
    assert isinstance(entries, frozenset)
    assert common_passwords() is entries
    assert all(e and e == e.strip().casefold() for e in entries)


# --- temporary passwords -------------------------------------------------------------------


def test_temporary_password_format() -> None:
    assert re.fullmatch(r"[a-zA-Z2-9]{4}(-[a-zA-Z2-9]{4}){3}", temporary_password())
    assert not set(temporary_password()) & set("0O1lIio")


def test_200_temporary_passwords_are_all_accepted() -> None:
    generated = [temporary_password() for _ in range(200)]
    assert len(set(generated)) == 200
    refused = {p: r for p in generated if (r := check_new_password(p, user_inputs=DUPONT))}
    assert refused == {}


# --- messages ------------------------------------------------------------------------------


def test_every_reason_has_a_french_and_english_message() -> None:
    assert set(REASONS) == {TOO_SHORT, TOO_LONG, COMMON, WEAK, CONTAINS_PERSONAL_DATA}
    for code in REASONS:
        assert set(MESSAGES[code]) == {"fr", "en"}
        assert describe(code, "fr") != describe(code, "en")


@pytest.mark.parametrize(
    ("locale", "expected"),
    [
        ("fr", "Le mot de passe doit compter au moins 12 caractères."),
        ("fr_CH", "Le mot de passe doit compter au moins 12 caractères."),
        ("en", "The password must have at least 12 characters."),
        ("en-GB", "The password must have at least 12 characters."),
        ("de", "Le mot de passe doit compter au moins 12 caractères."),
        (None, "Le mot de passe doit compter au moins 12 caractères."),
    ],
    ids=["fr", "fr_CH", "en", "en-GB", "unknown-falls-back-to-fr", "none-is-fr"],
)
def test_describe(locale: str | None, expected: str) -> None:
    assert describe(TOO_SHORT, locale) == expected
    assert str(MIN_LENGTH) in expected


def test_describe_unknown_code_raises() -> None:
    with pytest.raises(KeyError):
        describe("nope", "fr")


def test_module_does_not_import_flask() -> None:
    source = passwords.__file__
    with open(source, encoding="utf-8") as f:
        text = f.read()
    assert "flask" not in text.lower().replace("no flask here", "")
