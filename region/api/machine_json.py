"""The MAAS 2.0 machine object, as libmaas, gomaasapi (Juju) and Terraform read it."""

from __future__ import annotations

import hashlib
from typing import Any, Callable, Iterator

import attrs
import orjson

from region.api.domain_handlers import domain_json
from region.api.interface_json import interface_json, nic_vlan
from region.api.network_json import subnet_json, vlan_json
from region.api.site import API_PREFIX
from region.api.streaming import json_list_chunks
from region.api.zone_handlers import pool_json, zone_json
from region.db import allocations, hosts, machines
from region.db.named import NamedObject
from region.db.network_models import HostInterfaceNetwork, Vlan
from region.db.networks import NetworkCatalog
from region.services.domains import DEFAULT_DOMAIN
from region.services.machines import MachineView, MachineViews

MIB = 1024 * 1024

# vmyard status -> (MAAS NodeStatus value, status_name).  A VM being composed
# reads as Commissioning, which is what Terraform waits through.
STATUSES = {
    "composing": (1, "Commissioning"),
    "ready": (4, "Ready"),
    "broken": (8, "Broken"),
    "deploying": (9, "Deploying"),
    "deployed": (6, "Deployed"),
    "allocated": (10, "Allocated"),
    "failed_deployment": (11, "Failed deployment"),
    "releasing": (12, "Releasing"),
}


def machine_uri(system_id: str) -> str:
    return f"{API_PREFIX}machines/{system_id}/"


def _disk_json(system_id: str, index: int, disk: machines.MachineDisk) -> dict:
    name = "sd" + "abcdefghijklmnopqrstuvwxyz"[index % 26]
    return {
        "id": disk.id, "name": name, "path": f"/dev/disk/by-dname/{name}", "type": "physical",
        "size": disk.size, "block_size": 512, "model": "QEMU HARDDISK", "serial": f"lxd_{disk.name}",
        "id_path": f"/dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_lxd_{disk.name}", "tags": [],
        "storage_pool": disk.pool, "used_for": "", "partitions": [], "system_id": system_id,
        "uuid": None, "used_size": 0, "filesystem": None,
        "resource_uri": f"{machine_uri(system_id)}blockdevices/{disk.id}/",
    }


def numa_alignment(m: machines.Machine, host_nic_numa: dict[str, int | None]) -> dict:
    """Whether each NIC's host interface sits on a NUMA node the VM uses (None: unknown)."""
    nics = []
    for nic in m.interfaces:
        node = host_nic_numa.get(nic.attach_name or "")
        aligned = None if node is None or not m.numa_nodes else node in m.numa_nodes
        nics.append({"name": nic.name, "host_interface": nic.attach_name, "numa_node": node, "aligned": aligned})
    known = [n["aligned"] for n in nics if n["aligned"] is not None]
    return {"numa_nodes": list(m.numa_nodes), "aligned": all(known) if known else None, "nics": nics}


@attrs.frozen
class _HostParts:
    """What every machine of one VM host shows of it."""

    pod: Any  # the `pod` object
    nic_numa: dict[str, int | None]  # its interfaces' NUMA nodes by name
    vlans: dict[str, Vlan]  # its interfaces' VLANs by name


class MachineRenderer:
    """Renders machine objects (plain dicts) of views sharing one network catalog; what several
    machines show alike (the domain, zones, pools, VM hosts, VLANs, subnets) is rendered once."""

    def __init__(self, catalog: NetworkCatalog) -> None:
        self._vlan_rows = catalog.vlans
        self._subnets = {s.id: self._part(subnet_json(s, catalog)) for s in catalog.subnets}
        self._vlans = {v.id: self._part(vlan_json(v, catalog)) for v in catalog.vlans.values()}
        self._domain = self._part(domain_json(DEFAULT_DOMAIN))
        self._zones: dict[int, Any] = {}  # by id: one read's rows of one id are alike
        self._pools: dict[int, Any] = {}
        self._hosts: dict[int, _HostParts] = {}

    def _part(self, rendered: Any) -> Any:
        """A rendered part as the machine object holds it."""
        return rendered

    def _host(self, v: MachineView) -> _HostParts:
        return self._host_parts(v.host, v.host_interfaces)

    def _host_parts(self, host: hosts.VMHost, interfaces: list[HostInterfaceNetwork]) -> _HostParts:
        found = self._hosts.get(host.id)
        if found is None:
            found = self._hosts[host.id] = _HostParts(
                self._part({"id": host.id, "name": host.name, "resource_uri": f"{API_PREFIX}pods/{host.id}/"}),
                {i.name: i.numa_node for i in interfaces},
                {i.name: i.vlan for i in interfaces if i.vlan})
        return found

    def _named(self, cache: dict[int, Any], render: Callable[[NamedObject], dict], row: NamedObject) -> Any:
        found = cache.get(row.id)
        if found is None:
            found = cache[row.id] = self._part(render(row))
        return found

    def _interface(self, system_id: str, nic: machines.MachineNic, vlan: Vlan | None) -> Any:
        return interface_json(system_id, nic, vlan, self._vlans[vlan.id] if vlan else None, self._subnets)

    def _disk(self, system_id: str, index: int, disk: machines.MachineDisk) -> Any:
        return _disk_json(system_id, index, disk)

    def _numa(self, m: machines.Machine, host: _HostParts) -> Any:
        return numa_alignment(m, host.nic_numa)

    def render(self, v: MachineView) -> dict:
        m, host = v.machine, self._host(v)
        nics = [self._interface(m.system_id, nic, nic_vlan(nic, self._vlan_rows, host.vlans)) for nic in m.interfaces]
        disks = [self._disk(m.system_id, i, d) for i, d in enumerate(m.disks)]
        status, status_name = STATUSES.get(m.status, (0, m.status.capitalize()))
        allocation = v.allocation or _UNALLOCATED
        return {
            "system_id": m.system_id,
            "hostname": m.hostname,
            "fqdn": f"{m.hostname}.{DEFAULT_DOMAIN.name}",
            "domain": self._domain,
            "architecture": m.architecture or None,
            "cpu_count": m.cpu_count,
            "cpu_speed": v.host.cpu_speed,
            "memory": m.memory // MIB,
            "storage": sum(d.size for d in m.disks) / 1000**2,  # MB, as MAAS reports it
            "status": status,
            "status_name": status_name,
            "status_message": m.status_message,
            "status_action": "",
            "power_state": m.power_state,
            "power_type": v.host.type,
            "node_type": 0,
            "node_type_name": "Machine",
            "owner": v.owner,
            "owner_data": dict(allocation.owner_data),
            "zone": self._named(self._zones, zone_json, v.zone),
            "pool": self._named(self._pools, pool_json, v.pool),
            "tag_names": list(m.tags),
            "interface_set": nics,
            "blockdevice_set": disks,
            "physicalblockdevice_set": disks,
            "ip_addresses": [link.ip for n in m.interfaces for link in n.links if link.ip is not None],
            "boot_interface": nics[0] if nics else None,
            "boot_disk": disks[0] if disks else None,
            "osystem": "ubuntu" if allocation.distro_series else "",
            "distro_series": allocation.distro_series,
            "netboot": False,
            "locked": False,
            "disable_ipv4": False,
            "hwe_kernel": None,
            "min_hwe_kernel": "",
            "hardware_info": {},
            "pod": host.pod,
            "virtualmachine_id": m.id,
            "numa_nodes": list(m.numa_nodes),
            "numa_alignment": self._numa(m, host),
            "pinned_cores": list(m.pinned_cores),
            "hugepages_backed": m.hugepages_backed,
            "instance_name": m.instance_name,
            "instance_type": m.instance_type,  # vmyard: "virtual-machine" or "container"
            "project": m.project,
            "dynamic": m.dynamic,
            "resource_uri": machine_uri(m.system_id),
        }


_UNALLOCATED = allocations.Allocation()


class ListingRenderer(MachineRenderer):
    """Machine objects for orjson only, in a fraction of the time: the parts several machines
    share are serialised once into orjson Fragments, spliced wherever MAAS repeats them
    (`boot_interface` is `interface_set[0]`, `physicalblockdevice_set` and `boot_disk` repeat
    `blockdevice_set`); machines with the same NUMA report share it.  orjson writes the same
    document as for the dicts."""

    def __init__(self, catalog: NetworkCatalog) -> None:
        super().__init__(catalog)
        self._numa_reports: dict[tuple, orjson.Fragment] = {}

    def _part(self, rendered: Any) -> orjson.Fragment:
        return orjson.Fragment(orjson.dumps(rendered))

    def _interface(self, system_id: str, nic: machines.MachineNic, vlan: Vlan | None) -> orjson.Fragment:
        return self._part(super()._interface(system_id, nic, vlan))

    def _disk(self, system_id: str, index: int, disk: machines.MachineDisk) -> orjson.Fragment:
        return self._part(super()._disk(system_id, index, disk))

    def _numa(self, m: machines.Machine, host: _HostParts) -> orjson.Fragment:
        # id(host): one _HostParts per host for this renderer's life
        key = (id(host), tuple(m.numa_nodes), tuple((nic.name, nic.attach_name) for nic in m.interfaces))
        found = self._numa_reports.get(key)
        if found is None:
            found = self._numa_reports[key] = self._part(super()._numa(m, host))
        return found

    def catalog_digest(self) -> bytes:
        """A digest of what any machine may show of the network catalog and the domain, as this
        renderer renders it (VLAN MTUs too: a NIC's `effective_mtu`)."""
        shown = [self._domain, list(self._subnets.items()), list(self._vlans.items()),
                 [(v.id, v.mtu) for v in self._vlan_rows.values()]]
        return hashlib.blake2b(orjson.dumps(shown), digest_size=16).digest()

    def zone_shown(self, zone: NamedObject) -> bytes:
        return orjson.dumps(self._named(self._zones, zone_json, zone))

    def pool_shown(self, pool: NamedObject) -> bytes:
        return orjson.dumps(self._named(self._pools, pool_json, pool))

    def host_shown(self, host: hosts.VMHost, interfaces: list[HostInterfaceNetwork]) -> bytes:
        """What a machine of `host` shows of it, as this renderer renders it (its interfaces'
        VLANs by id: the rendered VLANs are in `catalog_digest`)."""
        parts = self._host_parts(host, interfaces)
        return orjson.dumps([parts.pod, host.cpu_speed, host.type, parts.nic_numa,
                             {name: vlan.id for name, vlan in parts.vlans.items()}])


def render_views(found: MachineViews) -> list[dict]:
    """Machine objects (plain dicts) for views a service returned."""
    renderer = MachineRenderer(found.catalog)
    return [renderer.render(v) for v in found.machines]


CHUNK_MACHINES = 100  # per orjson call (~1 ms holding the GIL)


def listing_chunks(found: MachineViews) -> Iterator[bytes]:
    """The JSON list of the views' machine objects, as chunks made as they are asked for
    (off the reactor); `found.machines` is emptied as they are made."""
    return json_list_chunks(found.machines, ListingRenderer(found.catalog).render, CHUNK_MACHINES, option=0)
