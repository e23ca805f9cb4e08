"""The pure parts of virsh support: address rules, SSH fingerprints, domain XML both ways."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import xml.etree.ElementTree as ET

import pytest

from common import sshhostkey
from common.models import ComposeRequest, RequestedDisk, RequestedNic
from rack.drivers.virsh_conn import parse_address
from rack.drivers.virsh_xml import MadeVolume, disk_target, domain_xml, ownership, to_vm, with_seed
from region.vmhost_address import virsh_address_problem


@pytest.mark.parametrize("address", ["qemu+ssh://kvm@10.0.0.2/system", "qemu+ssh://kvm@host.example:2222/system",
                                     "qemu+ssh://kvm@[2001:db8::1]:22/system"])
def test_good_addresses(address):
    assert virsh_address_problem(address) is None
    user, host, port = parse_address(address)
    assert user == "kvm" and host in address and port in (22, 2222)


@pytest.mark.parametrize("address", ["qemu:///system", "qemu+ssh://10.0.0.2/system", "qemu+ssh://u@/system",
                                     "qemu+ssh://u@h/session", "qemu+ssh://u@h/system?no_verify=1",
                                     "qemu+ssh://u:pw@h/system", "qemu+ssh://u@h:0/system",
                                     "qemu+ssh://u@h:70000/system", "qemu+ssh://u@bad host/system",
                                     "qemu+libssh://u@h/system", "qemu+ssh://u@h/system#x"])
def test_bad_addresses_are_explained(address):
    assert virsh_address_problem(address)


def test_fingerprint_matches_ssh_keygen(tmp_path):
    key = tmp_path / "k"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    public = " ".join(key.with_suffix(".pub").read_text().split()[:2])
    printed = subprocess.run(["ssh-keygen", "-lf", str(key.with_suffix(".pub"))], capture_output=True,
                             text=True, check=True).stdout.split()[1]
    assert sshhostkey.is_public_key(public) and sshhostkey.fingerprint(public) == printed
    assert sshhostkey.is_fingerprint(printed) and sshhostkey.display(printed) == printed
    blob = base64.b64decode(public.split()[1])
    assert printed == "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    assert sshhostkey.display(None) is None and not sshhostkey.is_public_key("ssh-ed25519 not base64!")


def test_domain_xml_round_trip():
    request = ComposeRequest(
        instance_name="db1", architecture="amd64/generic", cores=2, memory=2 * 1024**3, pinned_cores=[3, 5],
        disks=[RequestedDisk("root", 10**9, "fast"), RequestedDisk("disk1", 2 * 10**9, "slow")],
        nics=[RequestedNic("eth0", "bridged", "maas"), RequestedNic("eth1", "bridged", "br0", hwaddr="52:54:00:00:00:01")],
        reservation="abc123")
    made = [MadeVolume("root", "fast", "v-root"), MadeVolume("disk1", "slow", "v-data")]
    xml = domain_xml(request, made, {"maas"}, "kvm")
    root = ET.fromstring(xml)
    assert root.get("type") == "kvm" and root.find("cpu") is None and root.find("memoryBacking") is None
    assert [(p.get("vcpu"), p.get("cpuset")) for p in root.findall("cputune/vcpupin")] == [("0", "3"), ("1", "5")]
    assert [d.find("target").get("dev") for d in root.findall("devices/disk")] == ["vda", "vdb"]
    assert [(i.get("type"), i.find("source").attrib) for i in root.findall("devices/interface")] == \
        [("network", {"network": "maas"}), ("bridge", {"bridge": "br0"})]
    assert ownership(root).reservation == "abc123" and ownership(root).volumes == made
    vm = to_vm(xml, "", "off", {"vda": 10**9, "vdb": 2 * 10**9})
    assert (vm.cores, vm.memory, vm.pinned_cores, vm.architecture) == (2, 2 * 1024**3, [3, 5], "amd64/generic")
    assert [(d.name, d.size, d.pool) for d in vm.disks] == [("root", 10**9, "fast"), ("disk1", 2 * 10**9, "slow")]
    assert [(n.name, n.mac, n.attach_name) for n in vm.interfaces] == \
        [("eth0", None, "maas"), ("eth1", "52:54:00:00:00:01", "br0")]
    seeded = ET.fromstring(with_seed(xml, MadeVolume("seed", "fast", "s.iso")))
    cdrom = [d for d in seeded.findall("devices/disk") if d.get("device") == "cdrom"]
    assert len(cdrom) == 1 and cdrom[0].find("readonly") is not None
    assert ownership(seeded).volumes[-1] == MadeVolume("seed", "fast", "s.iso")
    assert [d.name for d in to_vm(ET.tostring(seeded, encoding="unicode"), "", "on", {}).disks] == ["root", "disk1"]


def test_a_domain_vmyard_did_not_make_has_no_ownership():
    xml = "<domain type='qemu'><name>old</name><memory>65536</memory><vcpu>1</vcpu></domain>"
    assert ownership(ET.fromstring(xml)) is None
    vm = to_vm(xml, "", "off", {})
    assert (vm.instance_name, vm.memory, vm.cores) == ("old", 64 * 1024**2, 1)


def test_disk_targets():
    assert [disk_target(i) for i in (0, 1, 25, 26, 27)] == ["vda", "vdb", "vdz", "vdaa", "vdab"]
