"""SSH keys over the real API (account/prefs/sshkeys/ and its alias sshkeys/) and `vmyard sshkeys`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.fixtures.daemons import REPO
from tests.fixtures.sshkeys import ecdsa_key, ed25519_key, private_key_text, rsa_key

PREFS = "account/prefs/sshkeys/"


def test_a_user_adds_lists_reads_and_deletes_their_keys(user_api):
    first, second = ed25519_key(), rsa_key()
    plain = user_api.post("sshkeys/", data={"key": first + " alice@laptop"})  # MAAS: a plain POST
    assert plain.status == 201, plain.text
    key = plain.json()
    assert key == {"id": key["id"], "key": first + " alice@laptop", "keysource": "",
                   "resource_uri": f"/MAAS/api/2.0/{PREFS}{key['id']}/"}
    by_op = user_api.post(PREFS, query={"op": "add"}, data={"key": second})
    assert by_op.status == 201, by_op.text

    listed = user_api.get("sshkeys/").json()
    assert listed == user_api.get(PREFS).json()
    assert [k["key"] for k in listed] == [first + " alice@laptop", second]
    assert user_api.get(f"sshkeys/{key['id']}/").json() == key
    assert user_api.get(key["resource_uri"].removeprefix("/MAAS/api/2.0/")).json() == key

    gone = user_api.delete(f"sshkeys/{key['id']}/")
    assert gone.status == 204
    assert user_api.get(f"sshkeys/{key['id']}/").status == 404
    assert [k["key"] for k in user_api.get("sshkeys/").json()] == [second]
    assert user_api.get("sshkeys/nonsense/").status == 404


def test_other_users_keys_are_not_found_even_by_an_admin(admin_api, user_api):
    alices = user_api.post("sshkeys/", data={"key": ecdsa_key()}).json()
    assert admin_api.get("sshkeys/").json() == []
    assert admin_api.get(f"sshkeys/{alices['id']}/").status == 404
    assert admin_api.delete(f"sshkeys/{alices['id']}/").status == 404
    assert user_api.get(f"sshkeys/{alices['id']}/").status == 200, "still there"


def test_bad_keys_are_a_400_naming_key_and_add_nothing(user_api):
    key = ed25519_key()
    assert user_api.post("sshkeys/", data={"key": key}).status == 201
    for bad in (key + " same key, other comment", private_key_text(), "ssh-ed25519 AAAA-not-a-key",
                rsa_key(1024), ""):
        reply = user_api.post("sshkeys/", query={"op": "add"}, data={"key": bad})
        assert reply.status == 400, (bad, reply.text)
        assert list(reply.json()) == ["key"], reply.text
    assert user_api.post("sshkeys/", data={}).json() == {"key": ["This field is required."]}
    assert [k["key"] for k in user_api.get("sshkeys/").json()] == [key]


def test_vmyard_sshkeys_add_list_delete(region, user_api, tmp_path):
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config"), "PYTHONPATH": str(REPO)}

    def vmyard(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "region.cli.user", *args], capture_output=True, text=True,
                              env=env, cwd=REPO, timeout=120, input=stdin)

    assert vmyard("login", "lab", region.url, user_api.apikey).returncode == 0
    first, second = ed25519_key(), ecdsa_key()
    pub = tmp_path / "keys.pub"
    pub.write_text(f"# my keys\n{first} alice@laptop\n\n{second}\n")
    added = vmyard("sshkeys", "add", str(pub))
    assert added.returncode == 0, added.stderr
    assert added.stdout.splitlines()[0].split() == ["ID", "TYPE", "FINGERPRINT", "COMMENT"]
    assert vmyard("sshkeys", "add", "-", stdin=rsa_key()).returncode == 0

    listed = json.loads(vmyard("--json", "sshkeys", "list").stdout)
    assert [k["key"].split()[:2] for k in listed][:2] == [first.split(), second.split()]
    table = vmyard("sshkeys", "list").stdout.splitlines()
    assert table[1].split()[1:] == ["ssh-ed25519", table[1].split()[2], "alice@laptop"]
    assert table[1].split()[2].startswith("SHA256:")

    refused = vmyard("sshkeys", "add", "-", stdin=f"{ed25519_key()}\nssh-ed25519 broken\n")
    assert refused.returncode == 1 and "key 2 not added (1 added before it): key:" in refused.stderr
    assert vmyard("sshkeys", "delete", str(listed[0]["id"])).stdout.strip() == f"Deleted SSH key {listed[0]['id']}."
    assert len(json.loads(vmyard("--json", "sshkeys", "list").stdout)) == 3
    missing = vmyard("sshkeys", "delete", str(listed[0]["id"]))
    assert missing.returncode == 1 and "404" in missing.stderr
