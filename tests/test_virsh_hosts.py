"""libvirt (virsh) VM hosts: registration over qemu+ssh with a password against a real libvirtd,
discovery compared with what libvirt reports, the pinned SSH host key, bad input."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from common import sshhostkey
from devstack.libvirt import virsh
from tests.fixtures.lxd import unique
from tests.test_cli_vmhosts import vmyard  # noqa: F401  (fixture: the CLI logged in as an admin)
from tests.test_vmhosts_lxd import sql

MIB = 1024 * 1024


def add_virsh_host(api, lab, **extra) -> dict:
    reply = api.post("vm-hosts/", data={"type": "virsh", "power_address": lab.address, "name": unique("v"),
                                        "power_pass": lab.password, **extra})
    assert reply.status == 200, reply.text
    host = reply.json()
    assert host["state"] == "ready", host["state_message"]
    return host


def _node_info() -> dict[str, str]:
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in virsh("nodeinfo").splitlines())}


def test_register_discovers_what_libvirt_reports(lxd_api, lxd_region, libvirt_lab, dsn):
    api, lab = lxd_api, libvirt_lab
    host = add_virsh_host(api, lab)
    info = _node_info()
    assert host["type"] == "virsh" and host["project"] == ""
    assert host["total"]["cores"] == int(info["CPU(s)"])
    assert host["cpu_speed"] == int(info["CPU frequency"].split()[0])
    assert host["total"]["memory"] == int(info["Memory size"].split()[0]) // 1024
    assert host["architectures"] == ["amd64/generic"]
    assert host["version"] == virsh("version", "--daemon").split("daemon:")[-1].split()[-1]
    # The pinned SSH host key: shown to admins as its fingerprint, kept whole in the database.
    assert host["server_fingerprint"] == sshhostkey.fingerprint(lab.sshd.host_public_key)
    stored = sql(dsn, "SELECT server_fingerprint FROM vm_hosts WHERE id = %s", host["id"])[0][0]
    assert stored == lab.sshd.host_public_key
    pool = next(p for p in host["storage_pools"] if p["name"] == lab.pool)
    pool_xml = ET.fromstring(virsh("pool-dumpxml", lab.pool))
    assert pool["type"] == "dir" and pool["path"] == str(lab.pool_dir)
    assert pool["total"] == int(pool_xml.findtext("capacity"))
    assert pool["lxd_used"] == int(pool_xml.findtext("allocation"))
    interfaces = api.get(f"vm-hosts/{host['id']}/interfaces/").json()
    assert set(lab.networks) <= {i["name"] for i in interfaces}
    resources = api.get(f"vm-hosts/{host['id']}/", query={"op": "resources"}).json()
    cells = ET.fromstring(virsh("capabilities")).findall("host/topology/cells/cell")
    assert [n["index"] for n in resources["numa"]] == [int(c.get("id")) for c in cells]
    assert sum(n["cores"]["total"] for n in resources["numa"]) == int(info["CPU(s)"])
    # The password is a secret: encrypted at rest, never in the read object or the host row.
    assert lab.password not in str(host)
    rows = sql(dsn, "SELECT * FROM vm_hosts WHERE id = %s", host["id"])
    secrets_rows = sql(dsn, "SELECT value::text FROM secrets")
    assert lab.password not in str(rows) and lab.password not in str(secrets_rows)
    assert lab.password not in lxd_region.output()
    # Only admins read it back, in MAAS's shape for virsh.
    assert api.get(f"vm-hosts/{host['id']}/", query={"op": "parameters"}).json() == \
        {"power_address": lab.address, "power_pass": lab.password}


def test_existing_domain_is_imported_and_never_deleted(lxd_api, libvirt_lab, tmp_path):
    api, lab = lxd_api, libvirt_lab
    name = unique("vyt-old")
    xml = tmp_path / "old.xml"
    xml.write_text(f"<domain type='qemu'><name>{name}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>"
                   "<os><type arch='x86_64'>hvm</type></os></domain>")
    virsh("define", str(xml))
    try:
        host = add_virsh_host(api, lab)
        machine = next(m for m in api.get("machines/").json() if m["hostname"] == name)
        assert machine["pod"]["id"] == host["id"] and machine["memory"] == 64 and machine["cpu_count"] == 1
        gone = api.delete(f"machines/{machine['system_id']}/")
        assert gone.status >= 400 and "not composed by vmyard" in gone.text, gone.text
        assert name in virsh("list", "--all", "--name")
    finally:
        virsh("undefine", name, check=False)


def test_wrong_password_is_a_400_on_the_password_and_stores_nothing(lxd_api, lxd_region, libvirt_lab, dsn):
    before = sql(dsn, "SELECT count(*) FROM vm_hosts")[0][0]
    reply = lxd_api.post("vm-hosts/", data={"type": "virsh", "power_address": libvirt_lab.address,
                                            "power_pass": "not-" + libvirt_lab.password})
    assert reply.status == 400, reply.text
    assert "password" in reply.json() and "refused" in reply.json()["password"][0]
    assert sql(dsn, "SELECT count(*) FROM vm_hosts")[0][0] == before
    log = lxd_region.output()  # the local rack writes to the region's log
    assert "was refused" in log and libvirt_lab.password not in log


@pytest.mark.parametrize("field, value", [
    ("power_address", "qemu:///system"),
    ("power_address", "qemu+ssh://127.0.0.1/system"),
    ("power_address", "qemu+ssh://u@127.0.0.1/system?command=/bin/sh"),
    ("power_address", "qemu+ssh://u:pw@127.0.0.1/system"),
    ("power_address", "qemu+ssh://u@127.0.0.1:99999/system"),
    ("power_address", "qemu+tcp://u@127.0.0.1/system"),
    ("project", "p1"),
    ("certificate", "-----BEGIN CERTIFICATE-----"),
])
def test_bad_input_is_a_400_naming_the_field(lxd_api, dsn, field, value):
    data = {"type": "virsh", "power_address": "qemu+ssh://u@127.0.0.1/system", field: value}
    reply = lxd_api.post("vm-hosts/", data=data)
    assert reply.status == 400 and field in reply.json(), reply.text
    assert sql(dsn, "SELECT count(*) FROM vm_hosts")[0][0] == 0


def test_changed_host_key_is_refused_until_accepted(lxd_api, libvirt_lab, dsn):
    api, lab = lxd_api, libvirt_lab
    host = add_virsh_host(api, lab)
    old = host["server_fingerprint"]
    lab.sshd.rotate_host_key()
    new = sshhostkey.fingerprint(lab.sshd.host_public_key)
    refreshed = api.post(f"vm-hosts/{host['id']}/", data={"op": "refresh"})
    assert refreshed.status == 503, refreshed.text
    after = api.get(f"vm-hosts/{host['id']}/").json()
    assert after["state"] == "error" and after["server_fingerprint"] == old
    assert "SSH host key" in after["state_message"] and "trust_server" in after["state_message"]
    assert new in after["state_message"]
    # A fingerprint that is not the host's is refused before the password goes out.
    wrong = api.post(f"vm-hosts/{host['id']}/", data={"op": "trust_server", "fingerprint": old})
    assert wrong.status == 503 and api.get(f"vm-hosts/{host['id']}/").json()["state"] == "error"
    accepted = api.post(f"vm-hosts/{host['id']}/", data={"op": "trust_server", "fingerprint": new})
    assert accepted.status == 200, accepted.text
    assert accepted.json()["state"] == "ready" and accepted.json()["server_fingerprint"] == new
    stored = sql(dsn, "SELECT server_fingerprint FROM vm_hosts WHERE id = %s", host["id"])[0][0]
    assert stored == lab.sshd.host_public_key  # the checked key replaces the fingerprint


def test_a_new_password_is_stored_encrypted_and_used(lxd_api, libvirt_lab, dsn):
    api, lab = lxd_api, libvirt_lab
    host = add_virsh_host(api, lab)
    url = f"vm-hosts/{host['id']}/"
    changed = api.put(url, data={"power_pass": "stale-" + lab.password})
    assert changed.status == 200 and changed.json()["state"] == "error", changed.text
    assert "password" in changed.json()["state_message"] and "refused" in changed.json()["state_message"]
    assert api.post(url, data={"op": "refresh"}).status == 503  # the stored (wrong) one is what every job uses
    fixed = api.put(url, data={"power_pass": lab.password})
    assert fixed.status == 200 and fixed.json()["state"] == "ready", fixed.text
    assert api.post(url, data={"op": "refresh"}).json()["state"] == "ready"
    assert lab.password not in str(sql(dsn, "SELECT value::text FROM secrets"))


def test_cli_adds_a_virsh_host_with_the_password_on_stdin(vmyard, libvirt_lab):
    added = vmyard("vm-host", "add", "virsh", libvirt_lab.address, "--name", "kvm1", "--password-stdin",
                   stdin=libvirt_lab.password + "\n")
    assert added.returncode == 0, added.stderr
    assert "kvm1" in added.stdout and libvirt_lab.password not in added.stdout + added.stderr
    shown = vmyard("vm-host", "show", "kvm1")
    assert shown.returncode == 0, shown.stderr
    assert sshhostkey.fingerprint(libvirt_lab.sshd.host_public_key) in shown.stdout
