"""The MAAS 2.0 machine object, as libmaas, gomaasapi (Juju) and Terraform read it."""

from __future__ import annotations

from typing import Callable

from region.api.domain_handlers import domain_json
from region.api.interface_json import interface_json, nic_vlan
from region.api.network_json import subnet_json, vlan_json
from region.api.site import API_PREFIX
from region.api.streaming import json_list_chunks
from region.api.zone_handlers import pool_json, zone_json
from region.db import allocations, machines
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


def _disk_json(m: machines.Machine, index: int, disk: machines.MachineDisk) -> dict:
    name = "sd" + "abcdefghijklmnopqrstuvwxyz"[index % 26]
    return {
        "id": disk.id, "name": name, "path": f"/dev/disk/by-dname/{name}", "type": "physical",
        "size": disk.size, "block_size": 512, "model": "QEMU HARDDISK", "serial": f"lxd_{disk.name}",
        "id_path": f"/dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_lxd_{disk.name}", "tags": [],
        "storage_pool": disk.pool, "used_for": "", "partitions": [], "system_id": m.system_id,
        "uuid": None, "used_size": 0, "filesystem": None,
        "resource_uri": f"{machine_uri(m.system_id)}blockdevices/{disk.id}/",
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


def machine_json(m: machines.Machine, *, host, zone, pool, owner: str | None, subnets: dict | None = None,
                 host_nic_numa: dict | None = None, host_vlans: dict | None = None, vlans: dict | None = None,
                 allocation: allocations.Allocation | None = None) -> dict:
    """`host` is the VM host row, `subnets` maps subnet id -> subnet JSON for the IP links,
    `host_nic_numa` the host's interfaces' NUMA nodes by name, `host_vlans` their VLAN JSON by
    name, `vlans` VLAN JSON by id (for NICs linked to another VLAN), `allocation` who holds the
    machine for what (agent name, owner data, series)."""
    status, status_name = STATUSES.get(m.status, (0, m.status.capitalize()))
    allocation = allocation or allocations.Allocation()
    nics = [interface_json(m.system_id, n, nic_vlan(n, vlans or {}, host_vlans or {}), subnets or {})
            for n in m.interfaces]
    disks = [_disk_json(m, i, d) for i, d in enumerate(m.disks)]
    return {
        "system_id": m.system_id,
        "hostname": m.hostname,
        "fqdn": f"{m.hostname}.{DEFAULT_DOMAIN.name}",
        "domain": domain_json(DEFAULT_DOMAIN),
        "architecture": m.architecture or None,
        "cpu_count": m.cpu_count,
        "cpu_speed": host.cpu_speed,
        "memory": m.memory // MIB,
        "storage": sum(d.size for d in m.disks) / 1000**2,  # MB, as MAAS reports it
        "status": status,
        "status_name": status_name,
        "status_message": m.status_message,
        "status_action": "",
        "power_state": m.power_state,
        "power_type": host.type,
        "node_type": 0,
        "node_type_name": "Machine",
        "owner": owner,
        "owner_data": dict(allocation.owner_data),
        "zone": zone_json(zone),
        "pool": pool_json(pool),
        "tag_names": list(m.tags),
        "interface_set": nics,
        "blockdevice_set": disks,
        "physicalblockdevice_set": disks,
        "ip_addresses": [ip for n in m.interfaces for ip, _ in n.ips],
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
        "pod": {"id": host.id, "name": host.name, "resource_uri": f"{API_PREFIX}pods/{host.id}/"},
        "virtualmachine_id": m.id,
        "numa_nodes": list(m.numa_nodes),
        "numa_alignment": numa_alignment(m, host_nic_numa or {}),
        "pinned_cores": list(m.pinned_cores),
        "hugepages_backed": m.hugepages_backed,
        "instance_name": m.instance_name,
        "instance_type": m.instance_type,  # vmyard: "virtual-machine" or "container"
        "project": m.project,
        "dynamic": m.dynamic,
        "resource_uri": machine_uri(m.system_id),
    }


def _renderer(found: MachineViews) -> Callable[[MachineView], dict]:
    """Renders one view; what several machines share (subnets, VLANs, each host's interface
    VLANs and NUMA nodes) is built once and the same objects are reused."""
    catalog = found.catalog
    subnets = {s.id: subnet_json(s, catalog) for s in catalog.subnets}
    vlans = {v.id: vlan_json(v, catalog) for v in catalog.vlans.values()}
    per_host: dict[int, tuple[dict, dict]] = {}

    def render(v: MachineView) -> dict:
        if v.host.id not in per_host:
            per_host[v.host.id] = ({i.name: i.numa_node for i in v.host_interfaces},
                                   {i.name: vlans[i.vlan.id] for i in v.host_interfaces if i.vlan})
        host_nic_numa, host_vlans = per_host[v.host.id]
        return machine_json(v.machine, host=v.host, zone=v.zone, pool=v.pool, owner=v.owner, subnets=subnets,
                            host_nic_numa=host_nic_numa, host_vlans=host_vlans, vlans=vlans,
                            allocation=v.allocation)

    return render


def render_views(found: MachineViews) -> list[dict]:
    """Machine objects for views a service returned."""
    render = _renderer(found)
    return [render(v) for v in found.machines]


CHUNK_MACHINES = 100  # per orjson call (~1 ms holding the GIL)


def listing_chunks(found: MachineViews) -> list[bytes]:
    """The JSON list of the views' machine objects, as chunks (call it off the reactor)."""
    return json_list_chunks(found.machines, _renderer(found), CHUNK_MACHINES)
