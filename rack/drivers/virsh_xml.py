"""libvirt domain XML: what compose defines, and what a domain is as a DiscoveredVM.  Pure.

A domain vmyard made carries `<metadata><vmyard:machine reservation=…>` listing the volumes
it made (by pool and name, with the disk name the region knows) and its NIC names: delete
removes those volumes only, never a volume it did not make, and a domain without it
(there before vmyard, "pre-existing") is never deleted.

No `<cpu>` element: libvirt's default model starts everywhere, while host-passthrough
aborts on some nested-KVM hosts (shared/harness/real-hosts.md §4).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import attrs

from common.models import ComposeRequest, DiscoveredVM, VMDisk, VMInterface

NS = "https://vmyard.dev/xmlns/libvirt/machine/1"
ET.register_namespace("vmyard", NS)
KIB = 1024
# Debian architecture names (MAAS's) <-> libvirt's.
LIBVIRT_ARCH = {"amd64": "x86_64", "arm64": "aarch64", "i386": "i686", "ppc64el": "ppc64le", "s390x": "s390x"}
DEBIAN_ARCH = {v: k for k, v in LIBVIRT_ARCH.items()}


@attrs.frozen
class MadeVolume:
    disk: str  # the region's disk name ("root", "disk1"…; "seed" for the cloud-init disk)
    pool: str
    name: str


@attrs.frozen
class Ownership:
    """What vmyard made of a domain (None on a domain it did not make)."""

    reservation: str
    volumes: list[MadeVolume]
    nics: list[str]  # NIC names in device order


def disk_target(index: int) -> str:
    """vda, vdb, … vdz, vdaa…"""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("a") + rest) + letters
    return "vd" + letters


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attributes: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attributes)
    if text is not None:
        element.text = text
    return element


def _metadata(parent: ET.Element, owned: Ownership) -> None:
    machine = _sub(_sub(parent, "metadata"), f"{{{NS}}}machine", reservation=owned.reservation)
    for v in owned.volumes:
        _sub(machine, f"{{{NS}}}volume", disk=v.disk, pool=v.pool, name=v.name)
    for name in owned.nics:
        _sub(machine, f"{{{NS}}}nic", name=name)


def disk_element(devices: ET.Element, volume: MadeVolume, target: str, *, cdrom: bool = False) -> None:
    disk = _sub(devices, "disk", type="volume", device="cdrom" if cdrom else "disk")
    _sub(disk, "driver", name="qemu", type="raw")
    _sub(disk, "source", pool=volume.pool, volume=volume.name)
    if cdrom:
        _sub(disk, "target", dev=target, bus="sata")
        _sub(disk, "readonly")
    else:
        _sub(disk, "target", dev=target, bus="virtio")
        _sub(disk, "serial", volume.name[:20])  # virtio-blk serials hold 20 bytes


def domain_xml(request: ComposeRequest, volumes: list[MadeVolume], networks: set[str], virt_type: str) -> str:
    """The domain to define; `networks` are the host's libvirt networks (any other NIC parent is a bridge)."""
    domain = ET.Element("domain", type=virt_type)
    _sub(domain, "name", request.instance_name)
    _metadata(domain, Ownership(request.reservation, volumes, [n.name for n in request.nics]))
    _sub(domain, "memory", str(request.memory // KIB), unit="KiB")
    if request.hugepages_backed:
        _sub(_sub(domain, "memoryBacking"), "hugepages")
    _sub(domain, "vcpu", str(request.cores), placement="static")
    if request.pinned_cores:
        tune = _sub(domain, "cputune")
        for vcpu, core in enumerate(request.pinned_cores):
            _sub(tune, "vcpupin", vcpu=str(vcpu), cpuset=str(core))
    os_element = _sub(domain, "os")
    _sub(os_element, "type", "hvm", arch=LIBVIRT_ARCH.get(request.architecture.split("/")[0], "x86_64"))
    _sub(os_element, "boot", dev="hd")
    _sub(os_element, "boot", dev="network")
    features = _sub(domain, "features")
    _sub(features, "acpi")
    _sub(features, "apic")
    devices = _sub(domain, "devices")
    for index, volume in enumerate(volumes):
        disk_element(devices, volume, disk_target(index))
    for nic in request.nics:
        if nic.parent in networks:
            interface = _sub(devices, "interface", type="network")
            _sub(interface, "source", network=nic.parent)
        elif nic.nictype == "macvlan":
            interface = _sub(devices, "interface", type="direct")
            _sub(interface, "source", dev=nic.parent, mode="bridge")
        else:
            interface = _sub(devices, "interface", type="bridge")
            _sub(interface, "source", bridge=nic.parent)
        if nic.hwaddr:
            _sub(interface, "mac", address=nic.hwaddr)
        _sub(interface, "model", type="virtio")
    _sub(devices, "serial", type="pty")
    _sub(devices, "console", type="pty")
    return ET.tostring(domain, encoding="unicode")


def ownership(root: ET.Element) -> Ownership | None:
    machine = root.find(f"metadata/{{{NS}}}machine")
    if machine is None:
        return None
    return Ownership(machine.get("reservation", ""),
                     [MadeVolume(v.get("disk", ""), v.get("pool", ""), v.get("name", ""))
                      for v in machine.findall(f"{{{NS}}}volume")],
                     [n.get("name", "") for n in machine.findall(f"{{{NS}}}nic")])


def with_seed(xml: str, seed: MadeVolume) -> str:
    """The domain with `seed` (a NoCloud ISO) as a cdrom, recorded as made by vmyard."""
    root = ET.fromstring(xml)
    devices = root.find("devices")
    for disk in devices.findall("disk"):
        if disk.get("device") == "cdrom":
            devices.remove(disk)
    disk_element(devices, seed, "sda", cdrom=True)
    machine = root.find(f"metadata/{{{NS}}}machine")
    for old in machine.findall(f"{{{NS}}}volume"):
        if old.get("disk") == seed.disk:
            machine.remove(old)
    _sub(machine, f"{{{NS}}}volume", disk=seed.disk, pool=seed.pool, name=seed.name)
    return ET.tostring(root, encoding="unicode")


def to_vm(xml: str, project: str, power_state: str, sizes: dict[str, int]) -> DiscoveredVM:
    """A domain as the region sees it; `sizes` by disk target (vda…), from the host."""
    root = ET.fromstring(xml)
    owned = ownership(root)
    made = {(v.pool, v.name): v.disk for v in owned.volumes} if owned else {}
    disks = []
    for disk in root.findall("devices/disk"):
        if disk.get("device") != "disk":
            continue
        source, target = disk.find("source"), disk.find("target")
        dev = target.get("dev", "") if target is not None else ""
        pool = source.get("pool") if source is not None else None
        name = made.get((pool, source.get("volume") if source is not None else None), dev)
        disks.append(VMDisk(name, sizes.get(dev, 0), pool))
    nic_names = owned.nics if owned else []
    interfaces = []
    for index, nic in enumerate(root.findall("devices/interface")):
        source, mac = nic.find("source"), nic.find("mac")
        kind = nic.get("type", "")
        attach = None if source is None else source.get("network") or source.get("bridge") or source.get("dev")
        interfaces.append(VMInterface(
            name=nic_names[index] if index < len(nic_names) else f"eth{index}",
            mac=mac.get("address") if mac is not None else None,
            attach_type={"network": "bridge", "bridge": "bridge", "direct": "macvlan"}.get(kind, kind),
            attach_name=attach, boot=index == 0))
    arch = root.find("os/type")
    unit = int(_scale(root.find("memory")))
    pinned = sorted({int(p.get("cpuset")) for p in root.findall("cputune/vcpupin") if p.get("cpuset", "").isdigit()})
    return DiscoveredVM(
        instance_name=root.findtext("name", ""), project=project,
        architecture=f"{DEBIAN_ARCH.get(arch.get('arch') if arch is not None else '', 'amd64')}/generic",
        power_state=power_state, cores=int(root.findtext("vcpu", "1")), memory=unit, pinned_cores=pinned,
        hugepages_backed=root.find("memoryBacking/hugepages") is not None, disks=disks, interfaces=interfaces)


_UNITS = {"b": 1, "bytes": 1, "k": KIB, "kib": KIB, "m": KIB**2, "mib": KIB**2, "g": KIB**3, "gib": KIB**3,
          "kb": 1000, "mb": 1000**2, "gb": 1000**3}


def _scale(element: ET.Element | None) -> int:
    """A libvirt size element in bytes (its unit defaults to KiB)."""
    if element is None or not (element.text or "").strip().isdigit():
        return 0
    return int(element.text) * _UNITS.get(element.get("unit", "KiB").lower(), KIB)
