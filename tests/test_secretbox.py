"""The region key's box: values round-trip, a foreign ciphertext is refused, and the decryptions
it keeps are bounded and never answer for another ciphertext."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from region import secretbox
from region.secretbox import SecretBox, SecretKeyError


def test_decryptions_are_kept_bounded_and_exact(monkeypatch):
    monkeypatch.setattr(secretbox, "DECRYPTED_KEPT", 3)
    box = SecretBox(Fernet.generate_key())
    tokens = {value: box.encrypt(value) for value in ("a", "b", "c", "d")}
    again = box.encrypt("a")
    assert again != tokens["a"]  # Fernet: a fresh IV each time
    for value, token in tokens.items():
        assert box.decrypt(token) == value
        assert box.decrypt(memoryview(token)) == value  # as psycopg2 hands bytea over
    assert box.decrypt(again) == "a"
    assert len(box._decrypted) == 3 and list(box._decrypted) == [tokens["c"], tokens["d"], again]


def test_a_ciphertext_of_another_key_is_refused_every_time():
    box, other = SecretBox(Fernet.generate_key()), SecretBox(Fernet.generate_key())
    token = other.encrypt("x")
    for _ in range(2):
        with pytest.raises(SecretKeyError):
            box.decrypt(token)
    assert box.decrypt(box.encrypt("x")) == "x"
