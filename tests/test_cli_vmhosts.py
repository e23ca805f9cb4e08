"""`vmyard vm-host` against a real region (with its local rack) and a real private LXD."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from region.cli.vmhost_cli import compact_ids, page_size
from tests.fixtures.daemons import REPO, http_get
from tests.fixtures.lxd import unique
from tests.test_vmhosts_lxd import sql

POOL_HEADER = ["NAME", "TYPE", "PATH", "TOTAL", "USED", "AVAIL"]
NUMA_HEADER = ["NODE", "CORES", "MEMORY", "HUGEPAGES", "VMS", "INTERFACES"]


@pytest.fixture
def vmyard(tmp_path, lxd_region, lxd_api):
    """Run the CLI, logged in as an administrator, with its own config directory."""
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config"), "PYTHONPATH": str(REPO)}

    def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
        # stdin is always a pipe, never the terminal pytest may have been started from.
        return subprocess.run([sys.executable, "-m", "region.cli.user", *args], capture_output=True, text=True,
                              input=stdin, env=env, cwd=REPO, timeout=180)

    login = run("login", "lab", lxd_region.url, lxd_api.apikey)
    assert login.returncode == 0, login.stderr
    return run


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def failed(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1, result.stdout
    assert result.stderr.startswith("vmyard: ")
    return result.stderr


def value(output: str, key: str) -> str:
    """The value of a `Key: value` line."""
    return next(line.split(":", 1)[1].strip() for line in output.splitlines() if line.startswith(key + ":"))


def table_after(output: str, title: str) -> list[list[str]]:
    """The whitespace-split lines of the table printed under `title`."""
    lines = output.splitlines()
    start = lines.index(title) + 1
    end = next((i for i in range(start, len(lines)) if not lines[i].strip()), len(lines))
    return [line.split() for line in lines[start:end]]


def test_formatting_helpers():
    assert compact_ids([8, 0, 1, 2, 3, 10, 11]) == "0-3,8,10-11"
    assert compact_ids([]) == "-"
    assert (page_size(2 * 2**20), page_size(2**30), page_size(4096), page_size(1000)) == \
        ("2MiB", "1GiB", "4KiB", "1000B")


def test_add_list_show_tag_new_identity_and_remove(vmyard, lxd_server, lxd_api, tmp_path):
    name, project = unique("cli"), unique("p")
    added = vmyard("vm-host", "add", lxd_server.address, "--name", name, "--project", project,
                   "--password-stdin", "--tags", "a,b", "--cpu-over-commit", "2",
                   stdin=lxd_server.trust_password + "\n")
    out = ok(added)
    assert out.startswith(f"Added VM host {name} (id ")
    assert value(out, "State") == "ready" and value(out, "Project") == project
    assert lxd_server.trust_password not in out + added.stderr
    host_id = value(out, "ID")

    table = ok(vmyard("vm-host", "list")).splitlines()
    assert table[0].split() == ["ID", "NAME", "TYPE", "STATE", "ADDRESS", "PROJECT", "CORES", "MEMORY",
                                "STORAGE", "ZONE", "POOL"]
    [row] = [line.split() for line in table[1:] if name in line.split()]
    assert row[:6] == [host_id, name, "lxd", "ready", lxd_server.address, project]
    assert row[6].startswith("0/") and row[-2:] == ["default", "default"]
    assert [h["name"] for h in json.loads(ok(vmyard("--json", "vm-hosts", "list")))].count(name) == 1

    shown = ok(vmyard("vm-host", "show", name))
    assert ok(vmyard("vm-host", "show", host_id)) == shown
    assert value(shown, "Tags") == "a,b" and value(shown, "CPU overcommit") == "2.0"
    assert value(shown, "Default storage pool") == "default" and value(shown, "Zone") == "default"
    pools = table_after(shown, "Storage pools (* = default):")
    assert pools[0] == POOL_HEADER
    [pool] = pools[1:]
    assert pool[:3] == ["default*", "dir", str(lxd_server.lxd_dir / "storage-pools" / "default")]
    numa = table_after(shown, "NUMA nodes (memory allocated/total):")
    resources = lxd_api.get(f"vm-hosts/{host_id}/", query={"op": "resources"}).json()
    assert numa[0] == NUMA_HEADER
    assert [(r[0], r[1]) for r in numa[1:]] == \
        [(str(n["index"]), compact_ids(n["cores"]["ids"])) for n in resources["numa"]]
    assert json.loads(ok(vmyard("--json", "vm-host", "show", name)))["storage_pools"][0]["name"] == "default"
    assert "no VM host named nope" in failed(vmyard("vm-host", "show", "nope"))

    assert ok(vmyard("vm-host", "tag", name, "add", "c")).strip() == f"Tags of {name}: a,b,c"
    assert ok(vmyard("vm-host", "tag", name, "remove", "a")).strip() == f"Tags of {name}: b,c"

    # A new generated identity is not trusted yet; a trust token or password fixes that.
    renewed = ok(vmyard("vm-host", "update", name, "--new-certificate"))
    assert value(renewed, "State") == "awaiting-trust" and "lxc config trust add" in renewed
    token = lxd_server.trust_token(unique("tok"))
    assert value(ok(vmyard("vm-host", "update", name, "--trust-token-stdin", stdin=token + "\n")), "State") == "ready"
    assert value(ok(vmyard("vm-host", "update", name, "--new-certificate")), "State") == "awaiting-trust"
    secret = tmp_path / "trust.pw"
    secret.write_text(lxd_server.trust_password + "\n")
    assert value(ok(vmyard("vm-host", "update", name, "--password-file", str(secret))), "State") == "ready"
    assert "no LXD trust password in stdin" in failed(vmyard("vm-host", "refresh", name, "--password-stdin"))

    refused = failed(vmyard("vm-host", "remove", name))
    assert "--yes" in refused
    assert name in ok(vmyard("vm-host", "list"))
    removed = ok(vmyard("vm-host", "remove", name, "--yes"))
    assert removed.startswith(f"Removed VM host {name} (id {host_id})")
    assert name not in ok(vmyard("vm-host", "list"))


def test_untrusted_host_cert_refresh_update_and_trust_server(vmyard, lxd_server, lxd_region, dsn):
    name = unique("cli")
    wrong = vmyard("vm-host", "add", lxd_server.address, "--name", name, "--project", unique("p"),
                   "--password-stdin", stdin="not-the-password\n")
    assert "password: " in failed(wrong) and "not-the-password" not in wrong.stderr

    added = ok(vmyard("vm-host", "add", lxd_server.address, "--name", name, "--project", unique("p")))
    assert value(added, "State") == "awaiting-trust"
    assert f"== VM host {name} is awaiting-trust ==" in added and "lxc config trust add" in added

    cert = ok(vmyard("vm-host", "cert", name))
    assert cert.startswith("-----BEGIN CERTIFICATE-----")
    assert cert == http_get(lxd_region.url + "vmhost-certificate/" + name)[1].decode()

    assert "lxc config trust add" in failed(vmyard("vm-host", "refresh", name))
    lxd_server.trust_add(cert, name)
    refreshed = ok(vmyard("vm-host", "refresh", name))
    assert refreshed.startswith(f"Refreshed {name}: ready\n")

    assert "nothing to update" in failed(vmyard("vm-host", "update", name))
    assert "cpu_over_commit_ratio: " in failed(vmyard("vm-host", "update", name, "--cpu-over-commit", "11"))
    assert "zone: " in failed(vmyard("vm-host", "update", name, "--zone", "mars"))
    zone = unique("lab")
    ok(vmyard("zones", "create", zone))
    assert ok(vmyard("vm-host", "update", name, "--zone", zone)).startswith(f"Updated VM host {name}.")
    assert value(ok(vmyard("vm-host", "show", name)), "Zone") == zone

    # The host presents another server certificate than the pinned one: refused until trusted again.
    host = json.loads(ok(vmyard("--json", "vm-host", "show", name)))
    real = host["server_fingerprint"]
    sql(dsn, "UPDATE vm_hosts SET server_fingerprint = %s WHERE id = %s", "ab" * 32, host["id"])
    mismatch = failed(vmyard("vm-host", "refresh", str(host["id"])))
    assert "certificate changed" in mismatch and "trust-server" in mismatch
    assert "fingerprint: " in failed(vmyard("vm-host", "trust-server", name, "--fingerprint", "xyz"))
    trusted = ok(vmyard("vm-host", "trust-server", name, "--fingerprint", real))
    assert trusted.startswith(f"Trusted the server certificate of {name} (fingerprint {real}).")
    assert value(trusted, "State") == "ready"

    removed = ok(vmyard("vm-host", "remove", name, "--decompose", "--yes"))
    assert removed.strip() == f"Removed VM host {name} (id {host['id']}) (it had no VMs)."


def test_walkthrough_forms_type_address_option_token_and_overcommit(vmyard, lxd_server):
    name = unique("lab")
    out = ok(vmyard("vm-host", "add", "lxd", "--name", name, "--address", lxd_server.address,
                    "--project", unique("lab")))
    assert "awaiting-trust" in out and "lxc config trust add" in out
    assert "-----BEGIN CERTIFICATE-----" in out  # the certificate is printed with the command
    token = lxd_server.trust_token(unique("tok"))
    second = unique("tok")
    out = ok(vmyard("vm-host", "add", "lxd", lxd_server.address, "--name", second, "--project", unique("p"),
                    "--trust-token", token))
    assert "ready" in out and token not in out
    out = ok(vmyard("vm-host", "update", second, "--cpu-overcommit", "2.0", "--memory-overcommit", "1.5"))
    host = json.loads(ok(vmyard("--json", "vm-host", "show", second)))
    assert (host["cpu_over_commit_ratio"], host["memory_over_commit_ratio"]) == (2.0, 1.5)
    assert "give the address once" in failed(vmyard("vm-host", "add", "lxd", "h:1", "--address", "h:2"))


def test_bring_your_own_certificate_and_a_passphrase_key_is_refused(vmyard, lxd_server, tmp_path):
    from cryptography.hazmat.primitives import serialization

    from common import tls

    pair = tls.make_self_signed(unique("byo"), kind="ec")
    crt, key, locked = tmp_path / "crt.pem", tmp_path / "key.pem", tmp_path / "locked.pem"
    crt.write_text(pair.cert_pem)
    key.write_text(pair.key_pem)
    locked.write_text(tls.load_key(pair.key_pem).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret")).decode())
    error = failed(vmyard("vm-host", "add", "lxd", "--address", lxd_server.address, "--name", unique("byo"),
                          "--certificate", str(crt), "--key", str(locked)))
    assert "key" in error and "passphrase" in error
    lxd_server.trust_add(pair.cert_pem, unique("byo"))
    out = ok(vmyard("vm-host", "add", "lxd", "--address", lxd_server.address, "--name", unique("byo"),
                    "--project", unique("p"), "--certificate", str(crt), "--key", str(key)))
    assert "ready" in out
