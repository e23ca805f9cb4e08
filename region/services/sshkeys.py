"""Users' SSH public keys: each user manages their own; deployments put them on machines.

A key is checked by decoding it (cryptography's OpenSSH loader), not by its shape, and is
stored normalised ("type base64 comment") with its SHA256 fingerprint, so the same key
added twice is a duplicate whatever its comment.  Other users' keys are invisible (404).
"""

from __future__ import annotations

import base64
import hashlib

import attrs
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from region.db import sshkeys
from region.db.sshkeys import SSHKey
from region.services.context import Context
from region.services.errors import FieldError

KEY_TYPES = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa")
MIN_RSA_BITS = 2048


@attrs.frozen
class PublicKey:
    line: str  # "type base64 [comment]"
    fingerprint: str  # "SHA256:…" (unpadded base64, as ssh-keygen -l prints it)


def _invalid(message: str) -> FieldError:
    return FieldError("key", message)


def parse_public_key(text: str) -> PublicKey:
    """A single OpenSSH public key line, checked by decoding it; FieldError('key') if it is not one."""
    text = text.strip()
    if "PRIVATE KEY" in text:
        raise _invalid("This is a private key: give the public key (the .pub file) instead.")
    if any((ch < " " and ch != "\t") or ch == "\x7f" for ch in text):
        raise _invalid("Give one public key, on one line, without control characters.")
    parts = text.split(None, 2)
    if len(parts) < 2 or parts[0] not in KEY_TYPES:
        raise _invalid("Invalid SSH public key: expected 'TYPE BASE64 [COMMENT]' with TYPE one of "
                       + ", ".join(KEY_TYPES) + ".")
    try:
        loaded = serialization.load_ssh_public_key(f"{parts[0]} {parts[1]}".encode())
    except (ValueError, UnsupportedAlgorithm):
        raise _invalid(f"Invalid SSH public key: the {parts[0]} key data does not decode.") from None
    if isinstance(loaded, rsa.RSAPublicKey) and loaded.key_size < MIN_RSA_BITS:
        raise _invalid(f"RSA keys need at least {MIN_RSA_BITS} bits; this one has {loaded.key_size}.")
    canonical = loaded.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    blob = base64.b64decode(canonical.split()[1])
    fingerprint = "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    comment = parts[2] if len(parts) == 3 else ""
    return PublicKey(f"{canonical} {comment}" if comment else canonical, fingerprint)


def _audit_thd(ctx: Context, cur, description: str, key: SSHKey) -> None:
    """Key changes are AUTHORISATION events, as MAAS records them."""
    ctx.audit_thd(cur, "AUTHORISATION", description, "sshkey", key.id)


async def list_keys(ctx: Context) -> list[SSHKey]:
    """The actor's keys, oldest first."""
    return await ctx.db.run(sshkeys.list_for_user_thd, ctx.actor.id)


async def get_key(ctx: Context, key_id: int | str) -> SSHKey:
    return await ctx.db.run(sshkeys.get_thd, ctx.actor.id, key_id)


async def add_key(ctx: Context, text: str) -> SSHKey:
    """Add a key for the actor; a malformed, private or already added key is FieldError('key')."""
    public = parse_public_key(text)

    def add_thd(cur):
        key = sshkeys.add_thd(cur, ctx.actor.id, public.line, public.fingerprint)
        _audit_thd(ctx, cur, f"Added SSH key {key.id} ({key.fingerprint}).", key)
        return key

    return await ctx.db.run(add_thd)


async def delete_key(ctx: Context, key_id: int | str) -> SSHKey:
    def delete_thd(cur):
        key = sshkeys.delete_thd(cur, ctx.actor.id, key_id)
        _audit_thd(ctx, cur, f"Deleted SSH key {key.id} ({key.fingerprint}).", key)
        return key

    return await ctx.db.run(delete_thd)


def keys_for_user_thd(cur, user_id: int) -> list[str]:
    """The user's public key lines, for a deployment's authorized_keys (inside the caller's transaction)."""
    return [key.key for key in sshkeys.list_for_user_thd(cur, user_id)]
