"""python-libmaas 0.6.8 on a machine's interfaces, run in the libmaas virtualenv by
tests/test_machine_interfaces.py: read them from the machine, disconnect eth1, link it STATIC
(`InterfaceLinks.create`, which finds the new link by id in the interface the API returns),
read the machine again, delete the link as read there (`InterfaceLink.delete`: op=unlink_subnet;
the link `create` returns lacks the interface it needs for that, in libmaas itself).  Prints one
JSON line of what libmaas saw.

Usage: libmaas_interfaces.py URL APIKEY SYSTEM_ID CIDR IP
"""

from __future__ import annotations

import json
import sys

from maas.client import connect
from maas.client.enum import LinkMode


def links_of(interface) -> list[dict]:
    return [{"mode": link.mode.value, "ip_address": link.ip_address,
             "cidr": link.subnet.cidr if link.subnet else None} for link in interface.links]


def main(url: str, apikey: str, system_id: str, cidr: str, ip: str) -> None:
    client = connect(url, apikey=apikey)
    machine = client.machines.get(system_id=system_id)
    eth1 = next(i for i in machine.interfaces if i.name == "eth1")
    subnet = next(s for s in client.subnets.list() if s.cidr == cidr)
    eth1.disconnect()
    disconnected = {"vlan": eth1.vlan.vid if eth1.vlan else None, "links": links_of(eth1)}
    link = eth1.links.create(LinkMode.STATIC, subnet=subnet, ip_address=ip, default_gateway=True)
    created = {"id": link.id, "mode": link.mode.value, "ip_address": link.ip_address, "cidr": link.subnet.cidr}
    again = client.machines.get(system_id=system_id)
    interfaces = [{"name": i.name, "type": i.type.value, "mac_address": i.mac_address, "params": i.params,
                   "vid": i.vlan.vid if i.vlan else None, "links": links_of(i)} for i in again.interfaces]
    linked_eth1 = next(i for i in again.interfaces if i.name == "eth1")
    next(x for x in linked_eth1.links if x.id == link.id).delete()
    print(json.dumps({"disconnected": disconnected, "created": created, "interfaces": interfaces,
                      "after_delete": links_of(linked_eth1), "ip_addresses": again.ip_addresses}))


if __name__ == "__main__":
    main(*sys.argv[1:])
