"""SSH host keys as vmyard pins them: the key ("ssh-ed25519 AAAA…", a known_hosts line less
its host pattern) and its OpenSSH fingerprint ("SHA256:" + unpadded base64 of the blob's
SHA-256, as `ssh-keygen -l` prints it).  Pure: used by the rack and the region alike."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re

FINGERPRINT_PREFIX = "SHA256:"
_FINGERPRINT_RE = re.compile(r"^SHA256:[A-Za-z0-9+/]{43}$")
_KEY_RE = re.compile(r"^(ssh-[a-z0-9-]+|ecdsa-sha2-[a-z0-9-]+|sk-[a-z0-9@.-]+) [A-Za-z0-9+/]+={0,2}$")


def is_fingerprint(value: str) -> bool:
    return bool(_FINGERPRINT_RE.match(value))


def is_public_key(value: str) -> bool:
    return bool(_KEY_RE.match(value))


def fingerprint(public_key: str) -> str:
    """The fingerprint of "type base64" (the base64 blob is what is hashed)."""
    try:
        blob = base64.b64decode(public_key.split()[1], validate=True)
    except (IndexError, binascii.Error):
        raise ValueError("not an SSH public key") from None
    return FINGERPRINT_PREFIX + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def display(pin: str | None) -> str | None:
    """What a pin shows as: a key's fingerprint, a fingerprint as is, None when nothing is pinned."""
    if not pin:
        return None
    return fingerprint(pin) if is_public_key(pin) else pin
