"""Encryption at rest for secrets kept in PostgreSQL.

A region key (a Fernet key: AES-128-CBC + HMAC-SHA256) lives in a 0600 file in
the data dir, or wherever the operator points `secret_key_file`.  Every region
sharing one database must use the same key file.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from common.tls import write_private


class SecretKeyError(RuntimeError):
    pass


DECRYPTED_KEPT = 1024  # values kept decrypted, by their ciphertext (API token secrets, host keys)


class SecretBox:
    """Encrypts and decrypts small values with the region key.

    Every API request decrypts its token's secret and every host operation the host's key;
    the same ciphertexts come back again and again, so the last `DECRYPTED_KEPT` decryptions
    are kept (the plaintext is in this process's memory while it is used anyway; a changed
    secret is a new ciphertext, so nothing kept can be stale).
    """

    def __init__(self, key: bytes) -> None:
        try:
            self._fernet = Fernet(key)
            self._key = key
        except ValueError as e:
            raise SecretKeyError(f"the region key is malformed: {e}") from None
        self._decrypted: OrderedDict[bytes, str] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def load_or_create(cls, path: Path) -> "SecretBox":
        if not path.exists():
            write_private(path, Fernet.generate_key())
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            os.chmod(path, 0o600)
        return cls(path.read_bytes().strip())

    @classmethod
    def load(cls, path: Path) -> "SecretBox":
        try:
            return cls(path.read_bytes().strip())
        except FileNotFoundError:
            raise SecretKeyError(f"region key file {path} does not exist") from None

    def derive_key(self, purpose: str) -> bytes:
        """A 32-byte key for one purpose (e.g. signing download tokens), derived with HKDF."""
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose.encode()).derive(self._key)

    def encrypt(self, plaintext: str) -> bytes:
        return self._fernet.encrypt(plaintext.encode("utf-8"))

    def decrypt(self, token: bytes) -> str:
        token = bytes(token)
        with self._lock:
            if (kept := self._decrypted.get(token)) is not None:
                self._decrypted.move_to_end(token)
                return kept
        try:
            plaintext = self._fernet.decrypt(token).decode("utf-8")
        except InvalidToken:
            raise SecretKeyError(
                "a secret in the database cannot be decrypted with this region key; "
                "every region sharing a database needs the same key file"
            ) from None
        with self._lock:
            self._decrypted[token] = plaintext
            if len(self._decrypted) > DECRYPTED_KEPT:
                self._decrypted.popitem(last=False)
        return plaintext
