"""Compose, power, decompose and deploy on a real libvirtd reached over qemu+ssh with a password."""

from __future__ import annotations

import io
import subprocess
import time
import xml.etree.ElementTree as ET

import pycdlib
import pytest

from devstack.libvirt import virsh
from tests.fixtures.lxd import unique
from tests.test_deploy_e2e import upload, user_api
from tests.test_virsh_hosts import add_virsh_host

GB = 1000**3
MIB = 1024 * 1024


@pytest.fixture
def virsh_host(lxd_api, libvirt_lab):
    """A ready virsh host whose two lab networks are on two subnets."""
    api, lab = lxd_api, libvirt_lab
    host = add_virsh_host(api, lab)
    untagged = api.get("fabrics/0/vlans/0/").json()
    v30 = api.post("fabrics/0/vlans/", data={"vid": "30"}).json()
    assert api.post("subnets/", data={"cidr": "10.20.0.0/24", "vlan": untagged["id"]}).status == 200
    assert api.post("subnets/", data={"cidr": "10.30.0.0/24", "vlan": v30["id"]}).status == 200
    for network, vlan in zip(lab.networks, (untagged["id"], v30["id"])):
        reply = api.put(f"vm-hosts/{host['id']}/interfaces/{network}/", data={"vlan": vlan})
        assert reply.status == 200, reply.text
    return api, host


def dumpxml(name: str) -> ET.Element:
    return ET.fromstring(virsh("dumpxml", "--inactive", name))


def volumes(pool: str) -> set[str]:
    return set(virsh("vol-list", pool).split()[::2]) if virsh("vol-list", pool).strip() else set()


def test_compose_two_disks_two_nics_power_and_decompose(virsh_host, libvirt_lab):
    api, host = virsh_host
    lab, hid = libvirt_lab, host["id"]
    before = volumes(lab.pool)
    name = unique("vyt-db")
    reply = api.post(f"vm-hosts/{hid}/", data={
        "op": "compose", "hostname": name, "cores": "1", "pinned_cores": "1", "memory": "1024",
        "storage": f"root:1({lab.pool}),data:2({lab.pool})",
        "interfaces": "eth0:subnet=10.20.0.0/24;eth1:subnet=10.30.0.0/24,ip=10.30.0.50"})
    assert reply.status == 200, reply.text
    sid = reply.json()["system_id"]

    domain = dumpxml(name)
    assert domain.findtext("vcpu") == "1" and int(domain.findtext("memory")) == 1024 * 1024
    assert [(p.get("vcpu"), p.get("cpuset")) for p in domain.findall("cputune/vcpupin")] == [("0", "1")]
    # No <cpu> asked for, so libvirt's default model (host-passthrough aborts on nested KVM).
    assert domain.find("cpu") is None or domain.find("cpu").get("mode") not in ("host-passthrough", "host-model")
    disks = domain.findall("devices/disk")
    made = volumes(lab.pool) - before
    assert {d.find("source").get("volume") for d in disks} == made and len(made) == 2
    assert all(d.find("source").get("pool") == lab.pool and d.find("target").get("bus") == "virtio"
               and d.findtext("serial") == d.find("source").get("volume")[:20] for d in disks)
    capacities = sorted(int(ET.fromstring(virsh("vol-dumpxml", v, "--pool", lab.pool)).findtext("capacity"))
                        for v in made)
    assert capacities == [GB, 2 * GB]
    nics = domain.findall("devices/interface")
    assert [(n.get("type"), n.find("source").get("network")) for n in nics] == \
        [("network", lab.networks[0]), ("network", lab.networks[1])]

    machine = api.get(f"machines/{sid}/").json()
    assert machine["status_name"] == "Ready" and machine["pod"]["id"] == hid and machine["pinned_cores"] == [1]
    assert machine["ip_addresses"] == ["10.30.0.50"]
    assert sorted(d["size"] for d in machine["blockdevice_set"]) == [GB, 2 * GB]
    macs = {n["name"]: n["mac_address"] for n in machine["interface_set"]}
    assert macs == {"eth0": nics[0].find("mac").get("address"), "eth1": nics[1].find("mac").get("address")}
    used = api.get(f"vm-hosts/{hid}/").json()["used"]
    assert used == {"cores": host["used"]["cores"] + 1, "memory": host["used"]["memory"] + 1024,
                    "local_storage": host["used"]["local_storage"] + 3 * GB}

    assert api.get(f"machines/{sid}/", query={"op": "query_power_state"}).json() == {"state": "off"}
    on = api.post(f"machines/{sid}/", data={"op": "power_on"})
    assert on.status == 200, on.text
    assert virsh("domstate", name).strip() == "running"
    assert api.get(f"machines/{sid}/", query={"op": "query_power_state"}).json() == {"state": "on"}
    off = api.post(f"machines/{sid}/", data={"op": "power_off"})
    assert off.status == 200, off.text
    assert virsh("domstate", name).strip() == "shut off"

    gone = api.delete(f"machines/{sid}/")
    assert gone.status == 204, gone.text
    assert name not in virsh("list", "--all", "--name").split()
    assert volumes(lab.pool) == before
    assert api.get(f"vm-hosts/{hid}/").json()["used"] == host["used"]


def test_bad_compose_input_is_a_400_and_leaves_nothing(virsh_host, libvirt_lab):
    api, host = virsh_host
    before_domains, before_volumes = virsh("list", "--all", "--name"), volumes(libvirt_lab.pool)
    bad = api.post(f"vm-hosts/{host['id']}/", data={"op": "compose", "cores": "0", "memory": "x",
                                                    "storage": "root:-1", "interfaces": "eth0:nosuch=1"})
    assert bad.status == 400 and {"cores", "memory", "storage", "interfaces"} <= set(bad.json()), bad.text
    assert virsh("list", "--all", "--name") == before_domains and volumes(libvirt_lab.pool) == before_volumes


def test_compose_refused_by_libvirt_removes_its_volumes(virsh_host, libvirt_lab, tmp_path):
    """A domain name libvirt already has: the compose fails after the volumes were made."""
    api, host = virsh_host
    name = unique("vyt-taken")
    xml = tmp_path / "taken.xml"
    xml.write_text(f"<domain type='qemu'><name>{name}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>"
                   "<os><type arch='x86_64'>hvm</type></os></domain>")
    before = volumes(libvirt_lab.pool)
    # Defined after the region's view was taken, so only libvirt can refuse the name.
    virsh("define", str(xml))
    try:
        reply = api.post(f"vm-hosts/{host['id']}/", data={"op": "compose", "hostname": name, "cores": "1",
                                                          "memory": "1024", "storage": f"root:1({libvirt_lab.pool})"})
        assert reply.status >= 400 and "already exists" in reply.text, reply.text
        assert volumes(libvirt_lab.pool) == before
        assert ET.fromstring(virsh("dumpxml", name)).find("metadata") is None  # the old domain is untouched
    finally:
        virsh("undefine", name, check=False)


def _read_iso(path: str) -> dict[str, str]:
    iso = pycdlib.PyCdlib()
    iso.open(path)
    try:
        assert iso.pvd.volume_identifier.decode().strip() == "cidata"
        files = {}
        for name in ("user-data", "meta-data", "network-config"):
            out = io.BytesIO()
            iso.get_file_from_iso_fp(out, rr_path=f"/{name}")
            files[name] = out.getvalue().decode()
        return files
    finally:
        iso.close()


def test_deploy_writes_the_image_into_the_root_volume_and_attaches_a_seed(virsh_host, libvirt_lab, lxd_region,
                                                                         dsn, tmp_path):
    api, host = virsh_host
    lab = libvirt_lab
    raw = tmp_path / "disk.raw"
    with open(raw, "wb") as f:
        f.truncate(64 * MIB)
        f.write(b"vmyard-boot-sector")
        f.seek(40 * MIB)
        f.write(b"vmyard-data-past-a-hole")
    disk = tmp_path / "disk.qcow2"
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(disk)], check=True)
    upload(api, disk, "custom/virshvm", "qcow2")
    name = unique("vyt-dep")
    made = api.post(f"vm-hosts/{host['id']}/", data={"op": "compose", "hostname": name, "cores": "1",
                                                     "memory": "1024", "storage": f"root:1({lab.pool})"})
    assert made.status == 200, made.text
    sid = made.json()["system_id"]
    alice = user_api(lxd_region, dsn, "alice")
    assert alice.post("machines/", data={"op": "allocate", "system_id": sid}).status == 200
    reply = alice.post(f"machines/{sid}/", data={"op": "deploy", "distro_series": "custom/virshvm",
                                                 "user_data": "#cloud-config\npackages: []\n"})
    assert reply.status == 200 and reply.json()["status_name"] == "Deploying", reply.text

    deadline = time.monotonic() + 120
    while virsh("domstate", name).strip() != "running":
        machine = alice.get(f"machines/{sid}/").json()
        assert machine["status_name"] == "Deploying", machine["status_message"]
        assert time.monotonic() < deadline, machine["status_message"]
        time.sleep(1)
    domain = dumpxml(name)
    root, seed = domain.findall("devices/disk")
    assert root.get("device") == "disk" and seed.get("device") == "cdrom"
    assert seed.find("source").get("pool") == lab.pool and seed.find("readonly") is not None
    root_file = lab.pool_dir / root.find("source").get("volume")
    with open(root_file, "rb") as f:
        assert f.read(18) == b"vmyard-boot-sector"
        f.seek(40 * MIB)
        assert f.read(23) == b"vmyard-data-past-a-hole"
    assert root_file.stat().st_size == GB  # still the composed size
    files = _read_iso(str(lab.pool_dir / seed.find("source").get("volume")))
    assert f"local-hostname: {name}" in files["meta-data"]
    assert "packages: []" in files["user-data"] and f"/MAAS/metadata/status/{sid}" in files["user-data"]
    assert "version: 2" in files["network-config"]

    # Release erases: stopped, the seed gone, the root volume empty at its size.
    seed_volume = seed.find("source").get("volume")
    released = alice.post(f"machines/{sid}/", data={"op": "release"})
    assert released.status == 200 and released.json()["status_name"] == "Ready", released.text
    assert virsh("domstate", name).strip() == "shut off"
    assert [d.get("device") for d in dumpxml(name).findall("devices/disk")] == ["disk"]
    assert seed_volume not in volumes(lab.pool)
    with open(root_file, "rb") as f:
        assert f.read(18) == bytes(18)
    assert root_file.stat().st_size == GB
