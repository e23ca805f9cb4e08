"""MAAS 2.0 JSON shapes of fabrics, VLANs, subnets, spaces, IP ranges and host interfaces."""

from __future__ import annotations

from typing import Any, Callable

from region.api.site import API_PREFIX
from region.db.ipam import AddressRun
from region.db.network_models import UNDEFINED_SPACE, Fabric, HostInterfaceNetwork, IPRange, Space, Subnet, Vlan
from region.db.networks import NetworkCatalog
from region.netconstraints import attach_type
from region.services.networks import Catalogued

RDNS_ENABLED = 2  # MAAS RDNS_MODE.ENABLED: the only mode vmyard has


def vlan_json(v: Vlan, cat: NetworkCatalog) -> dict:
    space = cat.space_of(v)
    return {
        "id": v.id, "vid": v.vid, "name": v.name, "mtu": v.mtu,
        "fabric": cat.fabrics[v.fabric_id].name, "fabric_id": v.fabric_id,
        "space": space.name if space else UNDEFINED_SPACE,
        "dhcp_on": v.dhcp_on, "external_dhcp": None, "relay_vlan": None,
        "primary_rack": None, "secondary_rack": None, "description": v.description,
        "resource_uri": f"{API_PREFIX}vlans/{v.id}/",
    }


def fabric_json(f: Fabric, cat: NetworkCatalog) -> dict:
    return {"id": f.id, "name": f.name, "class_type": f.class_type, "description": f.description,
            "vlans": [vlan_json(v, cat) for v in cat.vlans_of(f.id)],
            "resource_uri": f"{API_PREFIX}fabrics/{f.id}/"}


def subnet_json(s: Subnet, cat: NetworkCatalog) -> dict:
    vlan = cat.vlans[s.vlan_id]
    space = cat.space_of(vlan)
    return {
        "id": s.id, "name": s.name, "cidr": s.cidr, "vlan": vlan_json(vlan, cat),
        "space": space.name if space else UNDEFINED_SPACE,
        "gateway_ip": s.gateway_ip, "dns_servers": s.dns_servers, "description": s.description,
        "managed": s.managed, "allow_dns": s.allow_dns, "allow_proxy": s.allow_proxy,
        "active_discovery": False, "rdns_mode": RDNS_ENABLED,
        "resource_uri": f"{API_PREFIX}subnets/{s.id}/",
    }


def space_json(sp: Space, cat: NetworkCatalog) -> dict:
    vlans = [v for v in cat.vlans.values() if v.space_id == sp.id]
    return {"id": sp.id, "name": sp.name, "description": sp.description,
            "vlans": [vlan_json(v, cat) for v in vlans],
            "subnets": [subnet_json(s, cat) for s in cat.subnets_on(v.id for v in vlans)],
            "resource_uri": f"{API_PREFIX}spaces/{sp.id}/"}


def iprange_json(r: IPRange, cat: NetworkCatalog) -> dict:
    subnet = next(s for s in cat.subnets if s.id == r.subnet_id)
    return {"id": r.id, "type": r.type, "start_ip": r.start_ip, "end_ip": r.end_ip, "comment": r.comment,
            "subnet": subnet_json(subnet, cat), "resource_uri": f"{API_PREFIX}ipranges/{r.id}/"}


def interface_json(host_id: int | str, i: HostInterfaceNetwork, cat: NetworkCatalog) -> dict:
    return {
        "id": i.id, "name": i.name, "type": i.type, "mac_address": i.mac, "numa_node": i.numa_node,
        "sriov_max_vf": i.sriov_max_vfs, "link_speed": i.link_speed, "tags": i.tags,
        "attach_type": attach_type(i),
        "vlan": vlan_json(i.vlan, cat) if i.vlan else None,
        "fabric": i.fabric.name if i.fabric else None,
        "space": i.space.name if i.space else UNDEFINED_SPACE,
        "subnets": [subnet_json(s, cat) for s in i.subnets],
        "resource_uri": f"{API_PREFIX}vm-hosts/{host_id}/interfaces/{i.name}/",
    }


def address_run_json(run: AddressRun) -> dict:
    found = {"start": run.start, "end": run.end, "num_addresses": run.num_addresses}
    if run.purposes:
        found["purpose"] = list(run.purposes)
    return found


def catalogued(render: Callable[[Any, NetworkCatalog], dict]) -> Callable[[Catalogued], dict]:
    """`render(row, catalog)` for the network services' results (a row with its catalog)."""
    return lambda found: render(found.row, found.catalog)
