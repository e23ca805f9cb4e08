"""What a libvirt host has: CPUs, memory, NUMA cells, storage pools, networks, domains."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import libvirt

from common.models import DiscoveredVM, HostInterface, HugepageInfo, NumaNode, StoragePool
from rack.drivers.virsh_xml import DEBIAN_ARCH, KIB, to_vm

CAPABILITIES = ["composable", "dynamic_local_storage", "over_commit", "storage_pools"]
RUNNING_STATES = (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_BLOCKED, libvirt.VIR_DOMAIN_PAUSED,
                  libvirt.VIR_DOMAIN_PMSUSPENDED)
STOPPED_STATES = (libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_SHUTDOWN, libvirt.VIR_DOMAIN_CRASHED)


def power_state(domain: libvirt.virDomain) -> str:
    state = domain.state()[0]
    return "on" if state in RUNNING_STATES else "off" if state in STOPPED_STATES else "unknown"


def version(conn: libvirt.virConnect) -> str:
    number = conn.getLibVersion()
    return f"{number // 1_000_000}.{number // 1000 % 1000}.{number % 1000}"


def architectures(capabilities: ET.Element) -> list[str]:
    arch = capabilities.findtext("host/cpu/arch", "")
    return [f"{DEBIAN_ARCH[arch]}/generic"] if arch in DEBIAN_ARCH else []


def virt_type(capabilities: ET.Element) -> str:
    """kvm when the host offers it for its own architecture, else qemu (TCG)."""
    arch = capabilities.findtext("host/cpu/arch", "")
    for guest in capabilities.findall("guest"):
        if guest.find(f"arch[@name='{arch}']/domain[@type='kvm']") is not None:
            return "kvm"
    return "qemu"


def numa_nodes(conn: libvirt.virConnect, capabilities: ET.Element) -> list[NumaNode]:
    nodes = []
    for cell in capabilities.findall("host/topology/cells/cell"):
        index = int(cell.get("id", "0"))
        pages = []
        for page in cell.findall("pages"):
            size_kib, total = int(page.get("size", "0")), int(page.text or "0")
            if size_kib > 4 and total:
                free = conn.getFreePages([size_kib], index, 1).get(index, {}).get(size_kib, 0)
                pages.append(HugepageInfo(size_kib * KIB, total, free))
        memory = cell.find("memory")
        nodes.append(NumaNode(index=index, cores=sorted(int(c.get("id")) for c in cell.findall("cpus/cpu")),
                              memory=int(memory.text) * KIB if memory is not None else 0, hugepages=pages))
    return nodes


def storage_pools(conn: libvirt.virConnect) -> list[StoragePool]:
    found = []
    for pool in conn.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE):
        pool.refresh(0)
        _, capacity, allocation, available = pool.info()
        root = ET.fromstring(pool.XMLDesc(0))
        found.append(StoragePool(name=pool.name(), type=root.get("type", "unknown"),
                                 path=root.findtext("target/path") or root.findtext("source/name") or "Unknown",
                                 total=capacity, used=allocation, available=available))
    return sorted(found, key=lambda p: p.name)


def interfaces(conn: libvirt.virConnect) -> list[HostInterface]:
    """Active libvirt networks, as bridges VMs attach to (compose names the network)."""
    found = []
    for network in conn.listAllNetworks(libvirt.VIR_CONNECT_LIST_NETWORKS_ACTIVE):
        root = ET.fromstring(network.XMLDesc(0))
        mac = root.find("mac")
        found.append(HostInterface(name=network.name(), type="bridge",
                                   mac=mac.get("address", "") if mac is not None else ""))
    return sorted(found, key=lambda i: i.name)


def disk_sizes(conn: libvirt.virConnect, domain: libvirt.virDomain, xml: str) -> dict[str, int]:
    """Capacity by disk target: the volume's, else what the domain reports for the disk."""
    sizes = {}
    for disk in ET.fromstring(xml).findall("devices/disk"):
        target, source = disk.find("target"), disk.find("source")
        if target is None or disk.get("device") != "disk":
            continue
        dev = target.get("dev", "")
        try:
            if source is not None and source.get("pool"):
                volume = conn.storagePoolLookupByName(source.get("pool")).storageVolLookupByName(source.get("volume"))
                sizes[dev] = volume.info()[1]
            else:
                sizes[dev] = domain.blockInfo(dev)[0]
        except libvirt.libvirtError:
            sizes[dev] = 0  # a disk whose file is gone still shows, with no size
    return sizes


def domain_vm(conn: libvirt.virConnect, domain: libvirt.virDomain, project: str) -> DiscoveredVM:
    xml = domain.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    return to_vm(xml, project, power_state(domain), disk_sizes(conn, domain, xml))


def domains(conn: libvirt.virConnect, project: str) -> list[DiscoveredVM]:
    vms = []
    for domain in conn.listAllDomains(0):
        try:
            vms.append(domain_vm(conn, domain, project))
        except libvirt.libvirtError as e:
            if e.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:  # undefined while we looked
                raise
    return sorted(vms, key=lambda v: v.instance_name)
