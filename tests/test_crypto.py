"""Documents at rest: the key ring, and what actually lands in the database."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import select, text
from sqlalchemy.engine import make_url

from app.audit import CLI
from app.crypto import ContentIntegrityError, KeyRing, Sealed, associated_data
from app.extensions import db
from app.models import AuditEvent, Document, DocumentContent
from app.pdf import make_pdf
from tests.conftest import TEST_KEY, Api, document_body, sibling_app

K1 = b"1" * 32
K2 = b"2" * 32
MARKER = "RELAIS-PLAINTEXT-MARKER-5b1c9e"
SECRET_PDF = make_pdf(["Lettre de sortie", MARKER, "Diagnostic: confidentiel"])


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- the key ring --------------------------------------------------------------------------


def test_seal_open_round_trip() -> None:
    ring = KeyRing([("k1", K1)])
    ad = associated_data("DPI-1")
    sealed = ring.seal(SECRET_PDF, ad)
    assert sealed.key_id == "k1"
    assert len(sealed.nonce) == 12
    assert SECRET_PDF not in sealed.ciphertext
    assert MARKER.encode() not in sealed.ciphertext
    assert len(sealed.ciphertext) == len(SECRET_PDF) + 16  # the GCM tag
    assert ring.open(sealed, ad, _sha(SECRET_PDF)) == SECRET_PDF


def test_each_seal_uses_a_fresh_nonce() -> None:
    ring = KeyRing([("k1", K1)])
    ad = associated_data("DPI-1")
    first, second = ring.seal(SECRET_PDF, ad), ring.seal(SECRET_PDF, ad)
    assert first.nonce != second.nonce
    assert first.ciphertext != second.ciphertext


def test_first_key_encrypts_every_key_decrypts() -> None:
    old = KeyRing([("k1", K1)])
    both = KeyRing([("k2", K2), ("k1", K1)])
    ad = associated_data("DPI-1")
    sealed_old = old.seal(SECRET_PDF, ad)
    assert both.current_key_id == "k2"
    assert both.seal(SECRET_PDF, ad).key_id == "k2"
    assert both.open(sealed_old, ad, _sha(SECRET_PDF)) == SECRET_PDF


def test_malformed_key_rings_are_refused() -> None:
    with pytest.raises(ValueError, match="at least one key"):
        KeyRing([])
    with pytest.raises(ValueError, match="twice"):
        KeyRing([("k1", K1), ("k1", K2)])
    with pytest.raises(ValueError, match="32 bytes"):
        KeyRing([("k1", b"short key of 16b")])


def test_tampered_ciphertext_is_refused() -> None:
    ring = KeyRing([("k1", K1)])
    ad = associated_data("DPI-1")
    sealed = ring.seal(SECRET_PDF, ad)
    for position in (0, len(sealed.ciphertext) // 2, len(sealed.ciphertext) - 1):
        flipped = bytearray(sealed.ciphertext)
        flipped[position] ^= 0x01
        with pytest.raises(ContentIntegrityError, match="authentication"):
            ring.open(Sealed("k1", sealed.nonce, bytes(flipped)), ad, _sha(SECRET_PDF))
    with pytest.raises(ContentIntegrityError):
        ring.open(Sealed("k1", sealed.nonce, sealed.ciphertext[:-1]), ad, _sha(SECRET_PDF))
    other_nonce = bytes(b ^ 0xFF for b in sealed.nonce)
    with pytest.raises(ContentIntegrityError):
        ring.open(Sealed("k1", other_nonce, sealed.ciphertext), ad, _sha(SECRET_PDF))


def test_ciphertext_swapped_between_documents_is_refused() -> None:
    ring = KeyRing([("k1", K1)])
    sealed = ring.seal(SECRET_PDF, associated_data("DPI-1"))
    with pytest.raises(ContentIntegrityError, match="authentication"):
        ring.open(sealed, associated_data("DPI-2"), _sha(SECRET_PDF))


def test_wrong_hash_is_refused() -> None:
    ring = KeyRing([("k1", K1)])
    ad = associated_data("DPI-1")
    sealed = ring.seal(SECRET_PDF, ad)
    with pytest.raises(ContentIntegrityError, match="hash"):
        ring.open(sealed, ad, _sha(b"something else"))


def test_unknown_key_id_is_refused() -> None:
    sealed = KeyRing([("k1", K1)]).seal(SECRET_PDF, associated_data("DPI-1"))
    with pytest.raises(ContentIntegrityError, match="unknown document key id 'k1'"):
        KeyRing([("k2", K2)]).open(sealed, associated_data("DPI-1"), _sha(SECRET_PDF))


def test_another_key_under_the_same_id_is_refused() -> None:
    sealed = KeyRing([("k1", K1)]).seal(SECRET_PDF, associated_data("DPI-1"))
    with pytest.raises(ContentIntegrityError, match="authentication"):
        KeyRing([("k1", K2)]).open(sealed, associated_data("DPI-1"), _sha(SECRET_PDF))


# --- over the API: nothing readable at rest ------------------------------------------------


def _post_secret(api: Api, document_id: str = "DPI-2026-CRYPTO-1") -> None:
    body = document_body(document_id, content=base64.b64encode(SECRET_PDF).decode())
    response = api.post("/api/v1/documents", json=body)
    assert response.status_code == 201, response.get_json()


def _stored(document_id: str) -> tuple[Document, DocumentContent]:
    db.session.expire_all()
    document = db.session.scalar(select(Document).where(Document.document_id == document_id))
    assert document is not None
    return document, document.content


def test_content_is_encrypted_at_rest(app: Flask, api: Api, db_dialect: str) -> None:
    from app.dispatch.documents import read_content

    _post_secret(api)
    db.session.commit()
    document, content = _stored("DPI-2026-CRYPTO-1")
    assert content.key_id == "test1"
    assert document.sha256 == _sha(SECRET_PDF)
    assert document.size == len(SECRET_PDF)

    if db_dialect == "sqlite":
        db.session.remove()
        db.engine.dispose()  # everything written and the file closed
        path = Path(str(make_url(app.config["SQLALCHEMY_DATABASE_URI"]).database))
        files = [p for p in (path, path.with_name(path.name + "-wal")) if p.exists()]
        assert path in files
        raw = b"".join(p.read_bytes() for p in files)
        # The metadata is there in clear: this is the right file.
        assert b"DPI-2026-CRYPTO-1" in raw
        assert SECRET_PDF not in raw
        assert MARKER.encode() not in raw
        assert base64.b64encode(SECRET_PDF) not in raw
        document, content = _stored("DPI-2026-CRYPTO-1")
    else:
        stored = db.session.execute(
            text("SELECT ciphertext FROM document_contents WHERE document_id = :id"),
            {"id": document.id},
        ).scalar_one()
        stored = bytes(stored)
        assert stored != SECRET_PDF
        assert MARKER.encode() not in stored
        assert b"%PDF" not in stored
        dump = db.session.execute(text(
            "SELECT string_agg(t::text, '') FROM (SELECT * FROM documents) t"
        )).scalar_one()
        assert MARKER not in dump

    # Nothing in the audit trail carries the content either.
    for event in db.session.scalars(select(AuditEvent)):
        assert MARKER not in str(event.details)

    assert read_content(document) == SECRET_PDF
    sealed = Sealed(content.key_id, content.nonce, content.ciphertext)
    right = KeyRing([("test1", base64.b64decode(TEST_KEY))])
    assert right.open(sealed, associated_data(document.document_id), document.sha256) == SECRET_PDF
    wrong = KeyRing([("test1", K2)])
    with pytest.raises(ContentIntegrityError):
        wrong.open(sealed, associated_data(document.document_id), document.sha256)


def test_swapped_ciphertexts_are_not_served(app: Flask, api: Api) -> None:
    from app.dispatch.documents import read_content

    _post_secret(api, "DPI-2026-CRYPTO-1")
    _post_secret(api, "DPI-2026-CRYPTO-2")
    _, first_content = _stored("DPI-2026-CRYPTO-1")
    _, second_content = _stored("DPI-2026-CRYPTO-2")
    first_content.nonce, second_content.nonce = second_content.nonce, first_content.nonce
    first_content.ciphertext, second_content.ciphertext = (
        second_content.ciphertext, first_content.ciphertext,
    )
    db.session.commit()
    for document_id in ("DPI-2026-CRYPTO-1", "DPI-2026-CRYPTO-2"):
        document, _ = _stored(document_id)
        with pytest.raises(ContentIntegrityError):
            read_content(document)


def test_content_read_by_an_app_with_another_key_fails(app: Flask, api: Api) -> None:
    from app.dispatch.documents import read_content

    _post_secret(api)
    with (
        sibling_app(app, DOCUMENT_KEYS=f"test1:{base64.b64encode(K2).decode()}") as other,
        other.app_context(),
    ):
        document, _ = _stored("DPI-2026-CRYPTO-1")
        with pytest.raises(ContentIntegrityError):
            read_content(document)


# --- key rotation --------------------------------------------------------------------------


def test_rotate_keys(app: Flask, api: Api) -> None:
    from app.audit import verify
    from app.dispatch.documents import read_content

    ids = [f"DPI-2026-ROT-{n}" for n in range(3)]
    for document_id in ids:
        _post_secret(api, document_id)
    db.session.commit()
    before = {d: bytes(_stored(d)[1].ciphertext) for d in ids}
    k1 = TEST_KEY
    k2 = base64.b64encode(K2).decode()
    with (
        sibling_app(app, DOCUMENT_KEYS=f"new:{k2},test1:{k1}") as rotating,
        sibling_app(app, DOCUMENT_KEYS=f"new:{k2}") as only_new,
    ):
        # Flask's CLI runs a command in the app context already pushed (the test's ``app``):
        # push the rotating app's own context, or the command would use the old key ring.
        with rotating.app_context():
            result = rotating.test_cli_runner().invoke(args=["documents", "rotate-keys"])
            assert result.exit_code == 0, result.output
            assert "3 document(s) re-encrypted" in result.output
            db.session.remove()
            for document_id in ids:
                document, content = _stored(document_id)
                assert content.key_id == "new"
                assert bytes(content.ciphertext) != before[document_id]
                assert read_content(document) == SECRET_PDF
            event = db.session.scalars(
                select(AuditEvent).where(AuditEvent.action == "documents.keys_rotated")
            ).one()
            assert event.actor == "cli"
            assert event.details == {"documents": 3, "key_id": "new", "failed": []}
            assert verify() is None

        # Run again: nothing left to do, and it says so.
        with rotating.app_context():
            result = rotating.test_cli_runner().invoke(args=["documents", "rotate-keys"])
            assert result.exit_code == 0, result.output
            assert "0 document(s) re-encrypted" in result.output
            db.session.remove()

        with only_new.app_context():
            for document_id in ids:
                document, _ = _stored(document_id)
                assert read_content(document) == SECRET_PDF

        # The old key alone can no longer read them.
        db.session.expire_all()
        document, _ = _stored(ids[0])
        with pytest.raises(ContentIntegrityError, match="unknown document key id 'new'"):
            read_content(document)


def test_rotation_skips_and_reports_a_corrupt_document(app: Flask, api: Api) -> None:
    from app.dispatch.documents import read_content

    # Given three documents, the middle one's ciphertext damaged on disk
    ids = [f"DPI-2026-ROTX-{n}" for n in range(3)]
    for document_id in ids:
        _post_secret(api, document_id)
    db.session.commit()
    _, damaged = _stored(ids[1])
    damaged.ciphertext = bytes([damaged.ciphertext[0] ^ 1]) + bytes(damaged.ciphertext[1:])
    db.session.commit()
    new_first = f"new:{base64.b64encode(K2).decode()},test1:{TEST_KEY}"
    # When the keys are rotated
    with sibling_app(app, DOCUMENT_KEYS=new_first) as rotating, rotating.app_context():
        result = rotating.test_cli_runner().invoke(args=["documents", "rotate-keys"])
        db.session.remove()
        # Then the healthy ones move to the new key, the damaged one is named and left as is
        assert result.exit_code == 1
        assert "2 document(s) re-encrypted" in result.output
        assert ids[1] in result.output
        for document_id in (ids[0], ids[2]):
            document, content = _stored(document_id)
            assert content.key_id == "new"
            assert read_content(document) == SECRET_PDF
        _, content = _stored(ids[1])
        assert content.key_id == "test1"
        event = db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "documents.keys_rotated")
        ).one()
        assert event.outcome == "failure"
        assert event.details["failed"] == [ids[1]]


def test_rotation_re_seals_staff_authenticator_secrets(app: Flask) -> None:
    from app.auth.staff_factors import totp_secret
    from app.models import StaffUser
    from app.staff.accounts import create_staff

    # Given a desk account whose TOTP secret is sealed under the old key
    user, _, _ = create_staff("desk.one", "desk", CLI)
    db.session.commit()
    secret = totp_secret(user)
    assert user.totp_key_id == "test1"
    k2 = base64.b64encode(K2).decode()
    with (
        sibling_app(app, DOCUMENT_KEYS=f"new:{k2},test1:{TEST_KEY}") as rotating,
        sibling_app(app, DOCUMENT_KEYS=f"new:{k2}") as only_new,
    ):
        # When the keys are rotated
        with rotating.app_context():
            result = rotating.test_cli_runner().invoke(args=["documents", "rotate-keys"])
            assert result.exit_code == 0, result.output
            assert "1 staff authenticator secret(s) re-sealed" in result.output
            db.session.remove()
        # Then the old key can be retired: the same secret opens under the new key alone
        with only_new.app_context():
            moved = db.session.scalars(select(StaffUser).where(StaffUser.login == "desk.one")).one()
            assert moved.totp_key_id == "new"
            assert totp_secret(moved) == secret
            db.session.remove()
