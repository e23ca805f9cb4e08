"""MAAS 2.0 interface objects of a machine's NICs, with their links (nodes/{system_id}/interfaces/).

Pure functions over rows and already rendered VLAN and subnet objects, so machine listings
that load many machines at once render the same objects without a query per NIC (a listing
passes them pre-serialised, as orjson Fragments: the same JSON).
"""

from __future__ import annotations

from typing import Any, Mapping

from region.api.site import API_PREFIX
from region.db.interfaces import InterfaceLink
from region.db.machines import MachineNic
from region.db.network_models import Vlan

DEFAULT_MTU = 1500


def interface_uri(system_id: str, nic_id: int) -> str:
    return f"{API_PREFIX}nodes/{system_id}/interfaces/{nic_id}/"


def link_json(link: InterfaceLink, subnets: Mapping[int, Any]) -> dict:
    """MAAS's link: its id, mode in lower case, the address when it holds one, the whole subnet."""
    found: dict = {"id": link.id, "mode": link.mode}
    if link.ip is not None:
        found["ip_address"] = link.ip
    if link.subnet_id in subnets:
        found["subnet"] = subnets[link.subnet_id]
    return found


def nic_vlan(nic: MachineNic, vlans: Mapping[int, Vlan], host_vlans: Mapping[str, Vlan]) -> Vlan | None:
    """The NIC's VLAN: its own, else its host interface's (as MAAS's VLAN correction copies it);
    None when disconnected."""
    if nic.vlan_id is not None:
        return vlans.get(nic.vlan_id)
    return None if nic.disconnected else host_vlans.get(nic.attach_name or "")


def interface_json(system_id: str, nic: MachineNic, vlan: Vlan | None, vlan_object: Any,
                   subnets: Mapping[int, Any]) -> dict:
    """`vlan` is the NIC's VLAN (`nic_vlan`) and `vlan_object` its rendered object, `subnets`
    the subnet objects by id."""
    return {
        "id": nic.id, "name": nic.name, "type": "physical", "mac_address": nic.mac, "enabled": True,
        "vlan": vlan_object, "links": [link_json(link, subnets) for link in nic.links],
        "tags": [], "params": "", "parents": [], "children": [], "discovered": None,  # MAAS: "" when unset
        "effective_mtu": vlan.mtu if vlan else DEFAULT_MTU,
        "vendor": None, "product": None, "firmware_version": None,
        "link_connected": True, "interface_speed": 0, "link_speed": 0,
        "system_id": system_id,
        "attach_type": nic.attach_type, "attach_name": nic.attach_name,  # vmyard: the host side of the NIC
        "resource_uri": interface_uri(system_id, nic.id),
    }
