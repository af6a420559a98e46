"""Documents at rest: AES-256-GCM under a key ring from DOCUMENT_KEYS.

The first key encrypts; every key decrypts, so keys can be rotated without downtime
(``documents rotate-keys`` re-encrypts under the first key). The associated data binds a
ciphertext to its document, so ciphertexts cannot be swapped between rows unnoticed.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from flask import current_app


class ContentIntegrityError(Exception):
    """The content cannot be decrypted, or its hash does not match: never serve it."""


@dataclass(frozen=True)
class Sealed:
    key_id: str
    nonce: bytes
    ciphertext: bytes


class KeyRing:
    def __init__(self, keys: Sequence[tuple[str, bytes]]) -> None:
        if not keys:
            raise ValueError("a key ring needs at least one key")
        ids = [key_id for key_id, _ in keys]
        if len(set(ids)) != len(ids):
            # A repeated id would silently replace the encrypting key with a later one.
            raise ValueError("a key id appears twice in the key ring")
        if any(len(key) != 32 for _, key in keys):
            raise ValueError("document keys are AES-256 keys: 32 bytes each")
        self._keys = {key_id: AESGCM(key) for key_id, key in keys}
        self.current_key_id = keys[0][0]

    def seal(self, plaintext: bytes, associated: bytes) -> Sealed:
        nonce = os.urandom(12)
        aead = self._keys[self.current_key_id]
        return Sealed(self.current_key_id, nonce, aead.encrypt(nonce, plaintext, associated))

    def unseal(self, sealed: Sealed, associated: bytes) -> bytes:
        """Decrypt and authenticate (GCM's tag covers the ciphertext and associated data)."""
        aead = self._keys.get(sealed.key_id)
        if aead is None:
            raise ContentIntegrityError(f"unknown document key id {sealed.key_id!r}")
        try:
            return aead.decrypt(sealed.nonce, sealed.ciphertext, associated)
        except InvalidTag:
            raise ContentIntegrityError("sealed content failed authentication") from None

    def open(self, sealed: Sealed, associated: bytes, sha256: str) -> bytes:
        """Unseal a document and check it against the hash recorded when it was received."""
        plaintext = self.unseal(sealed, associated)
        if not hmac.compare_digest(hashlib.sha256(plaintext).hexdigest(), sha256):
            raise ContentIntegrityError("document content does not match its hash")
        return plaintext


def associated_data(document_id: str) -> bytes:
    return b"relais-document:" + document_id.encode("utf-8")


def key_ring() -> KeyRing:
    """The app's key ring, built once from ``DOCUMENT_KEYS``: documents, sealed secrets (TOTP,
    recovery codes) and the desk's steps are all sealed under it."""
    ring = current_app.extensions.get("relais.keyring")
    if ring is None:
        ring = KeyRing(current_app.config["DOCUMENT_KEYS"])
        current_app.extensions["relais.keyring"] = ring
    assert isinstance(ring, KeyRing)  # noqa: S101
    return ring
