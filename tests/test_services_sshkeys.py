"""SSH key service against the real schema, without daemons: validation, ownership, audit, deploy lookup."""

from __future__ import annotations

import base64

import pytest
import pytest_twisted

from region.db import events
from region.db.pool import run_sync
from region.services import errors, sshkeys
from tests.fixtures.services import service_region  # noqa: F401  (fixture)
from tests.fixtures.sshkeys import ecdsa_key, ed25519_key, private_key_text, rsa_key


@pytest.mark.parametrize("make", [ed25519_key, ecdsa_key, rsa_key])
def test_a_public_key_is_kept_with_its_comment_and_fingerprinted(make):
    line = make()
    parsed = sshkeys.parse_public_key(f"  {line}   alice@laptop  (work)\n")
    assert parsed.line == f"{line} alice@laptop  (work)", "normalised, the comment kept as written"
    assert parsed.fingerprint.startswith("SHA256:") and not parsed.fingerprint.endswith("=")
    assert sshkeys.parse_public_key(line).line == line, "no comment, no trailing space"


@pytest.mark.parametrize("text, message", [
    (private_key_text(), "private key"),
    ("ssh-ed25519 AAAAnot-base64!", "does not decode"),
    ("ssh-ed25519 " + base64.b64encode(b"\x00\x00\x00\x0bssh-ed25519garbage").decode(), "does not decode"),
    # The type named before the data must be the one inside it.
    ("ssh-rsa " + ed25519_key().split()[1], "does not decode"),
    ("ssh-dss AAAAB3NzaC1kc3M=", "TYPE one of"),
    ("just-one-word", "TYPE one of"),
    (f"{ed25519_key()}\n{ed25519_key()}", "one line"),
    (rsa_key(1024), "at least 2048 bits; this one has 1024"),
])
def test_bad_keys_are_field_errors_naming_key(text, message):
    with pytest.raises(errors.FieldError, match=message) as caught:
        sshkeys.parse_public_key(text)
    assert caught.value.field == "key"


@pytest_twisted.ensureDeferred
async def test_each_user_sees_and_deletes_only_their_own_keys(service_region):
    alice, bob = service_region.as_user("alice", admin=False), service_region.as_user("bob", admin=True)
    first, second = ed25519_key(), rsa_key()
    added = await sshkeys.add_key(alice, first + " alice@laptop")
    await sshkeys.add_key(alice, second)
    with pytest.raises(errors.FieldError, match="already been added") as duplicate:
        await sshkeys.add_key(alice, first + " another comment")
    assert duplicate.value.field == "key"
    bobs = await sshkeys.add_key(bob, first)  # the same key is fine for someone else

    assert [k.key for k in await sshkeys.list_keys(alice)] == [first + " alice@laptop", second]
    assert (await sshkeys.get_key(alice, str(added.id))).key == first + " alice@laptop"
    for key_id in (bobs.id, "not-a-number", "99999999999", "0"):
        with pytest.raises(errors.NotFound):
            await sshkeys.get_key(alice, key_id)
    with pytest.raises(errors.NotFound):
        await sshkeys.delete_key(alice, bobs.id)
    assert run_sync(service_region.dsn, sshkeys.keys_for_user_thd, bob.actor.id) == [first]

    await sshkeys.delete_key(alice, added.id)
    assert run_sync(service_region.dsn, sshkeys.keys_for_user_thd, alice.actor.id) == [second]
    audit = [(e.type, e.username, e.object_id, e.description) for e in
             reversed(run_sync(service_region.dsn, events.list_thd, object_type="sshkey"))]
    assert [a[:3] for a in audit] == [("AUTHORISATION", "alice", str(added.id)),
                                      ("AUTHORISATION", "alice", str(added.id + 1)),
                                      ("AUTHORISATION", "bob", str(bobs.id)),
                                      ("AUTHORISATION", "alice", str(added.id))]
    assert audit[0][3] == f"Added SSH key {added.id} ({added.fingerprint})."
    assert audit[-1][3] == f"Deleted SSH key {added.id} ({added.fingerprint})."
