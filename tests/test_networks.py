"""Fabrics, VLANs, subnets, spaces, IP ranges and host-interface links (real region + PostgreSQL),
and static IP allocation (the db functions compose calls, on PostgreSQL, concurrently)."""

from __future__ import annotations

import threading
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from region.db import hosts, ipam, named, networks, subnets
from region.db.errors import FieldError
from region.db.pool import run_sync

VLAN_KEYS = {"id", "vid", "name", "mtu", "fabric", "fabric_id", "space", "dhcp_on", "external_dhcp",
             "relay_vlan", "primary_rack", "secondary_rack", "description", "resource_uri"}
SUBNET_KEYS = {"id", "name", "cidr", "vlan", "space", "gateway_ip", "dns_servers", "description", "managed",
               "allow_dns", "allow_proxy", "active_discovery", "rdns_mode", "resource_uri"}


def ok(reply, status: int = 200):
    assert reply.status == status, reply.text
    return reply.json() if status != 204 else None


def everything(api) -> dict:
    """The whole network model as the API shows it (to prove a failed write changed nothing)."""
    return {path: api.get(path).json() for path in ("fabrics/", "subnets/", "ipranges/", "spaces/")}


# -- fabrics and VLANs --------------------------------------------------------------------------

def test_default_fabric_has_an_untagged_vlan_in_maas_shape(user_api):
    [fabric] = ok(user_api.get("fabrics/"))
    assert fabric["id"] == 0 and fabric["name"] == "fabric-0" and fabric["class_type"] is None
    assert fabric["resource_uri"] == "/MAAS/api/2.0/fabrics/0/"
    [vlan] = fabric["vlans"]
    assert set(vlan) == VLAN_KEYS
    assert vlan | {"id": 0} == {
        "id": 0, "vid": 0, "name": "untagged", "mtu": 1500, "fabric": "fabric-0", "fabric_id": 0,
        "space": "undefined", "dhcp_on": False, "external_dhcp": None, "relay_vlan": None, "primary_rack": None,
        "secondary_rack": None, "description": "", "resource_uri": f"/MAAS/api/2.0/vlans/{vlan['id']}/"}
    assert ok(user_api.get("fabrics/fabric-0/")) == fabric
    assert ok(user_api.get(f"vlans/{vlan['id']}/")) == vlan


def test_fabric_crud(admin_api):
    unnamed = ok(admin_api.post("fabrics/", data={}))
    assert unnamed["name"] == f"fabric-{unnamed['id']}"
    assert [(v["vid"], v["name"]) for v in unnamed["vlans"]] == [(0, "untagged")], "every fabric gets vid 0"

    fabric = ok(admin_api.post("fabrics/", data={"name": "storage", "class_type": "10g", "description": "SAN"}))
    assert fabric["class_type"] == "10g" and fabric["resource_uri"] == f"/MAAS/api/2.0/fabrics/{fabric['id']}/"
    assert ok(admin_api.get("fabrics/storage/")) == ok(admin_api.get(f"fabrics/{fabric['id']}/")) == fabric

    updated = ok(admin_api.put(f"fabrics/{fabric['id']}/", data={"name": "san", "class_type": ""}))
    assert updated["name"] == "san" and updated["class_type"] is None and updated["description"] == "SAN"
    assert admin_api.get("fabrics/storage/").status == 404

    ok(admin_api.delete("fabrics/san/"), 204)
    assert admin_api.get(f"fabrics/{fabric['id']}/").status == 404
    assert sorted(f["name"] for f in ok(admin_api.get("fabrics/"))) == ["fabric-0", unnamed["name"]]


def test_vlan_crud(admin_api):
    fabric = ok(admin_api.post("fabrics/", data={"name": "lab"}))
    space = ok(admin_api.post("spaces/", data={"name": "dmz"}))
    vlan = ok(admin_api.post(f"fabrics/{fabric['id']}/vlans/",
                             data={"vid": "100", "mtu": "9000", "space": "dmz", "dhcp_on": "true"}))
    assert set(vlan) == VLAN_KEYS
    assert (vlan["vid"], vlan["name"], vlan["mtu"], vlan["space"], vlan["dhcp_on"], vlan["fabric"],
            vlan["fabric_id"]) == (100, "100", 9000, "dmz", True, "lab", fabric["id"])
    assert ok(admin_api.get(f"fabrics/{fabric['id']}/vlans/100/")) == vlan
    assert ok(admin_api.get(f"vlans/{vlan['id']}/")) == vlan
    assert [v["vid"] for v in ok(admin_api.get(f"fabrics/{fabric['id']}/vlans/"))] == [0, 100]

    moved = ok(admin_api.put(f"fabrics/{fabric['id']}/vlans/100/",
                             data={"vid": "200", "name": "web", "space": "undefined", "dhcp_on": "false"}))
    assert (moved["vid"], moved["name"], moved["space"], moved["dhcp_on"]) == (200, "web", "undefined", False)
    assert admin_api.get(f"fabrics/{fabric['id']}/vlans/100/").status == 404
    assert ok(admin_api.put(f"vlans/{vlan['id']}/", data={"space": str(space["id"])}))["space"] == "dmz"

    ok(admin_api.delete(f"fabrics/{fabric['id']}/vlans/200/"), 204)
    assert admin_api.get(f"vlans/{vlan['id']}/").status == 404


def test_default_vlan_and_default_fabric_cannot_be_deleted(admin_api):
    fabric = ok(admin_api.post("fabrics/", data={"name": "edge"}))
    before = everything(admin_api)
    for path in (f"fabrics/{fabric['id']}/vlans/0/", f"vlans/{fabric['vlans'][0]['id']}/", "fabrics/0/",
                 "fabrics/0/vlans/0/"):
        reply = admin_api.delete(path)
        assert reply.status == 400 and "default" in reply.text and "cannot be deleted" in reply.text, path
    reply = admin_api.put(f"fabrics/{fabric['id']}/vlans/0/", data={"vid": "5"})
    assert reply.status == 400 and "vid" in reply.json()
    assert everything(admin_api) == before


def test_vlans_and_fabrics_with_subnets_cannot_be_deleted(admin_api):
    fabric = ok(admin_api.post("fabrics/", data={"name": "busy"}))
    ok(admin_api.post(f"fabrics/{fabric['id']}/vlans/", data={"vid": "7"}))
    ok(admin_api.post("subnets/", data={"cidr": "10.7.0.0/24", "fabric": "busy", "vid": "7"}))
    for path in (f"fabrics/{fabric['id']}/vlans/7/", "fabrics/busy/"):
        reply = admin_api.delete(path)
        assert reply.status == 400 and "10.7.0.0/24" in reply.text, path
    ok(admin_api.delete(f"subnets/{quote('10.7.0.0/24', safe='')}/"), 204)
    ok(admin_api.delete("fabrics/busy/"), 204)


# -- subnets, spaces, IP ranges -----------------------------------------------------------------

def test_subnet_crud(admin_api):
    ok(admin_api.post("fabrics/", data={"name": "prod"}))
    vlan = ok(admin_api.post("fabrics/prod/vlans/", data={"vid": "42"}))
    subnet = ok(admin_api.post("subnets/", data={
        "cidr": "192.168.42.0/24", "fabric": "prod", "vid": "42", "gateway_ip": "192.168.42.1",
        "dns_servers": "8.8.8.8, 1.1.1.1", "description": "web tier"}))
    assert set(subnet) == SUBNET_KEYS
    assert subnet | {"id": 0} == {
        "id": 0, "name": "192.168.42.0/24", "cidr": "192.168.42.0/24", "vlan": vlan, "space": "undefined",
        "gateway_ip": "192.168.42.1", "dns_servers": ["8.8.8.8", "1.1.1.1"], "description": "web tier",
        "managed": True, "allow_dns": True, "allow_proxy": True, "active_discovery": False, "rdns_mode": 2,
        "resource_uri": f"/MAAS/api/2.0/subnets/{subnet['id']}/"}
    for key in (subnet["id"], quote("192.168.42.0/24", safe=""), quote("cidr:192.168.42.0/24", safe="")):
        assert ok(admin_api.get(f"subnets/{key}/")) == subnet

    default_vlan = ok(admin_api.get("fabrics/0/vlans/0/"))
    plain = ok(admin_api.post("subnets/", data={"cidr": "10.9.8.7/16", "name": "office"}))
    assert (plain["cidr"], plain["vlan"], plain["name"]) == ("10.9.0.0/16", default_vlan, "office")
    assert ok(admin_api.get("subnets/office/"))["id"] == plain["id"]
    by_vlan_id = ok(admin_api.post("subnets/", data={"cidr": "fd00:42::/64", "vlan": str(vlan["id"])}))
    assert by_vlan_id["vlan"]["id"] == vlan["id"]

    updated = ok(admin_api.put(f"subnets/{subnet['id']}/", data={
        "cidr": "192.168.40.0/22", "gateway_ip": "", "dns_servers": "", "managed": "false", "vlan": str(
            default_vlan["id"])}))
    assert (updated["cidr"], updated["name"], updated["gateway_ip"], updated["dns_servers"], updated["managed"],
            updated["vlan"]["id"]) == ("192.168.40.0/22", "192.168.40.0/22", None, [], False, default_vlan["id"])
    ok(admin_api.delete(f"subnets/{subnet['id']}/"), 204)
    assert admin_api.get(f"subnets/{subnet['id']}/").status == 404
    assert sorted(s["cidr"] for s in ok(admin_api.get("subnets/"))) == ["10.9.0.0/16", "fd00:42::/64"]


def test_a_subnet_space_is_its_vlans_space(admin_api):
    space = ok(admin_api.post("spaces/", data={"name": "storage", "description": "Ceph"}))
    assert space | {"id": 0} == {"id": 0, "name": "storage", "description": "Ceph", "vlans": [], "subnets": [],
                                 "resource_uri": f"/MAAS/api/2.0/spaces/{space['id']}/"}
    vlan = ok(admin_api.post("fabrics/0/vlans/", data={"vid": "30", "space": "storage"}))
    subnet = ok(admin_api.post("subnets/", data={"cidr": "10.30.0.0/24", "vid": "30"}))
    assert subnet["space"] == "storage" and subnet["vlan"]["id"] == vlan["id"]
    shown = ok(admin_api.get("spaces/storage/"))
    assert [v["id"] for v in shown["vlans"]] == [vlan["id"]] and [s["id"] for s in shown["subnets"]] == [subnet["id"]]
    assert ok(admin_api.get(f"spaces/{space['id']}/")) == shown
    reply = admin_api.put(f"subnets/{subnet['id']}/", data={"space": "storage"})
    assert reply.status == 400 and "space" in reply.json()

    renamed = ok(admin_api.put("spaces/storage/", data={"name": "ceph"}))
    assert renamed["name"] == "ceph" and ok(admin_api.get(f"subnets/{subnet['id']}/"))["space"] == "ceph"
    ok(admin_api.delete("spaces/ceph/"), 204)
    assert ok(admin_api.get(f"subnets/{subnet['id']}/"))["space"] == "undefined"
    assert ok(admin_api.get(f"vlans/{vlan['id']}/"))["space"] == "undefined"
    assert ok(admin_api.post("spaces/", data={}))["name"].startswith("space-")


def test_ip_ranges_and_reserved_and_unreserved_ops(admin_api):
    subnet = ok(admin_api.post("subnets/", data={"cidr": "10.1.0.0/24", "gateway_ip": "10.1.0.1",
                                                 "dns_servers": "10.1.0.2"}))
    dynamic = ok(admin_api.post("ipranges/", data={"type": "dynamic", "start_ip": "10.1.0.100",
                                                   "end_ip": "10.1.0.199", "comment": "DHCP"}))
    assert dynamic | {"id": 0} == {"id": 0, "type": "dynamic", "start_ip": "10.1.0.100", "end_ip": "10.1.0.199",
                                   "comment": "DHCP", "subnet": subnet,
                                   "resource_uri": f"/MAAS/api/2.0/ipranges/{dynamic['id']}/"}
    reserved = ok(admin_api.post("ipranges/", data={"type": "reserved", "start_ip": "10.1.0.10",
                                                    "end_ip": "10.1.0.19", "subnet": str(subnet["id"])}))
    assert ok(admin_api.get(f"ipranges/{reserved['id']}/")) == reserved
    assert [r["id"] for r in ok(admin_api.get("ipranges/"))] == [reserved["id"], dynamic["id"]]

    assert ok(admin_api.get(f"subnets/{subnet['id']}/", query={"op": "reserved_ip_ranges"})) == [
        {"start": "10.1.0.1", "end": "10.1.0.1", "num_addresses": 1, "purpose": ["gateway-ip"]},
        {"start": "10.1.0.2", "end": "10.1.0.2", "num_addresses": 1, "purpose": ["dns-server"]},
        {"start": "10.1.0.10", "end": "10.1.0.19", "num_addresses": 10, "purpose": ["reserved"]},
        {"start": "10.1.0.100", "end": "10.1.0.199", "num_addresses": 100, "purpose": ["dynamic"]},
    ]
    assert ok(admin_api.get(f"subnets/{subnet['id']}/", query={"op": "unreserved_ip_ranges"})) == [
        {"start": "10.1.0.3", "end": "10.1.0.9", "num_addresses": 7},
        {"start": "10.1.0.20", "end": "10.1.0.99", "num_addresses": 80},
        {"start": "10.1.0.200", "end": "10.1.0.254", "num_addresses": 55},
    ]
    moved = ok(admin_api.put(f"ipranges/{reserved['id']}/", data={"end_ip": "10.1.0.29", "comment": "VIPs"}))
    assert (moved["start_ip"], moved["end_ip"], moved["comment"]) == ("10.1.0.10", "10.1.0.29", "VIPs")
    ok(admin_api.delete(f"ipranges/{reserved['id']}/"), 204)
    assert admin_api.get(f"ipranges/{reserved['id']}/").status == 404
    ok(admin_api.delete(f"subnets/{subnet['id']}/"), 204)
    assert ok(admin_api.get("ipranges/")) == [], "ranges go with their subnet"


@pytest.mark.parametrize("path,data,field", [
    ("subnets/", {"cidr": "not-a-cidr"}, "cidr"),
    ("subnets/", {"cidr": "10.0.0.0/33"}, "cidr"),
    ("subnets/", {}, "cidr"),
    ("subnets/", {"cidr": "10.50.0.0/24", "gateway_ip": "10.51.0.1"}, "gateway_ip"),
    ("subnets/", {"cidr": "10.50.0.0/24", "gateway_ip": "10.50.0.255"}, "gateway_ip"),
    ("subnets/", {"cidr": "10.50.0.0/24", "gateway_ip": "fd00::1"}, "gateway_ip"),
    ("subnets/", {"cidr": "10.50.0.0/24", "dns_servers": "8.8.8.8,nope"}, "dns_servers"),
    ("subnets/", {"cidr": "10.50.0.0/24", "vlan": "9999"}, "vlan"),
    ("subnets/", {"cidr": "10.50.0.0/24", "fabric": "nowhere"}, "fabric"),
    ("subnets/", {"cidr": "10.50.0.0/24", "vid": "3000"}, "vid"),
    ("subnets/", {"cidr": "10.50.0.0/24", "space": "dmz"}, "space"),
    ("subnets/", {"cidr": "10.0.0.0/24"}, "cidr"),  # duplicate of the existing one
    ("subnets/", {"cidr": "10.50.0.0/24", "name": "existing"}, "name"),
    ("fabrics/0/vlans/", {"vid": "4095"}, "vid"),
    ("fabrics/0/vlans/", {"vid": "-1"}, "vid"),
    ("fabrics/0/vlans/", {"vid": "ten"}, "vid"),
    ("fabrics/0/vlans/", {}, "vid"),
    ("fabrics/0/vlans/", {"vid": "10"}, "vid"),  # duplicate on this fabric
    ("fabrics/0/vlans/", {"vid": "11", "mtu": "551"}, "mtu"),
    ("fabrics/0/vlans/", {"vid": "11", "mtu": "65536"}, "mtu"),
    ("fabrics/0/vlans/", {"vid": "11", "space": "nope"}, "space"),
    ("fabrics/0/vlans/", {"vid": "11", "dhcp_on": "maybe"}, "dhcp_on"),
    ("fabrics/", {"name": "fabric-0"}, "name"),
    ("fabrics/", {"name": "has space"}, "name"),
    ("fabrics/", {"name": "123"}, "name"),
    ("spaces/", {"name": "undefined"}, "name"),
    ("ipranges/", {"type": "reserved", "start_ip": "10.0.1.1", "end_ip": "10.0.1.9", "subnet": "10"}, "subnet"),
    ("ipranges/", {"type": "reserved", "start_ip": "10.0.0.250", "end_ip": "10.0.1.9"}, "end_ip"),
    ("ipranges/", {"type": "reserved", "start_ip": "10.0.0.50", "end_ip": "10.0.0.40"}, "end_ip"),
    ("ipranges/", {"type": "reserved", "start_ip": "10.0.0.25", "end_ip": "10.0.0.35"}, "start_ip"),
    ("ipranges/", {"type": "static", "start_ip": "10.0.0.60", "end_ip": "10.0.0.70"}, "type"),
    ("ipranges/", {"type": "reserved", "start_ip": "10.99.0.1", "end_ip": "10.99.0.2"}, "subnet"),
    ("ipranges/", {"type": "reserved", "end_ip": "10.0.0.70"}, "start_ip"),
])
def test_bad_input_is_a_400_naming_the_field_and_changes_nothing(admin_api, path, data, field):
    ok(admin_api.post("fabrics/0/vlans/", data={"vid": "10"}))
    subnet = ok(admin_api.post("subnets/", data={"cidr": "10.0.0.0/24", "name": "existing"}))
    ok(admin_api.post("ipranges/", data={"type": "dynamic", "start_ip": "10.0.0.20", "end_ip": "10.0.0.30",
                                         "subnet": str(subnet["id"])}))
    before = everything(admin_api)
    reply = admin_api.post(path, data=data)
    assert reply.status == 400, reply.text
    assert reply.content_type == "application/json"
    assert field in reply.json(), reply.json()
    assert everything(admin_api) == before


def test_bad_updates_change_nothing(admin_api):
    subnet = ok(admin_api.post("subnets/", data={"cidr": "10.2.0.0/24", "gateway_ip": "10.2.0.1"}))
    ok(admin_api.post("ipranges/", data={"type": "reserved", "start_ip": "10.2.0.200", "end_ip": "10.2.0.210"}))
    vlan = ok(admin_api.post("fabrics/0/vlans/", data={"vid": "20"}))
    before = everything(admin_api)
    for path, data, field in [
        (f"subnets/{subnet['id']}/", {"cidr": "10.2.0.0/25"}, "cidr"),  # the range would fall outside
        (f"subnets/{subnet['id']}/", {"gateway_ip": "10.3.0.1"}, "gateway_ip"),
        (f"vlans/{vlan['id']}/", {"mtu": "70000", "vid": "5000"}, "mtu"),
        (f"vlans/{vlan['id']}/", {"vid": "0"}, "vid"),  # taken by the default VLAN
    ]:
        reply = admin_api.put(path, data=data)
        assert reply.status == 400 and field in reply.json(), (path, reply.text)
    assert set(admin_api.put(f"vlans/{vlan['id']}/", data={"mtu": "70000", "vid": "5000"}).json()) == {"mtu", "vid"}
    reply = admin_api.post("ipranges/", data={"type": "dynamic", "start_ip": "10.2.0.1", "end_ip": "10.2.0.9"})
    assert reply.status == 400 and "the gateway" in reply.json()["start_ip"][0]
    assert everything(admin_api) == before


@pytest.mark.parametrize("method,path,data", [
    ("post", "fabrics/", {"name": "mine"}),
    ("put", "fabrics/0/", {"description": "x"}),
    ("delete", "fabrics/0/", None),
    ("post", "fabrics/0/vlans/", {"vid": "5"}),
    ("put", "fabrics/0/vlans/0/", {"mtu": "9000"}),
    ("post", "subnets/", {"cidr": "10.5.0.0/24"}),
    ("post", "spaces/", {"name": "mine"}),
    ("post", "ipranges/", {"type": "reserved", "start_ip": "10.0.0.1", "end_ip": "10.0.0.2"}),
    ("put", "vm-hosts/1/interfaces/eth0/", {"vlan": "1"}),
])
def test_writes_are_for_admins_only(user_api, method, path, data):
    reply = getattr(user_api, method)(path, **({"data": data} if data is not None else {}))
    assert reply.status == 403, reply.text
    assert user_api.get("fabrics/").status == 200 and user_api.get("subnets/").status == 200


def test_events_record_network_changes(admin_api, dsn):
    ok(admin_api.post("fabrics/", data={"name": "audited"}))
    ok(admin_api.post("subnets/", data={"cidr": "10.77.0.0/24"}))

    def types_thd(cur):
        cur.execute("SELECT type, username FROM events WHERE level = 'AUDIT' ORDER BY id")
        return cur.fetchall()

    assert {("FABRIC_CREATED", "admin"), ("SUBNET_CREATED", "admin")} <= set(run_sync(dsn, types_thd))


# -- VM-host interfaces -------------------------------------------------------------------------

def make_host_thd(cur, name: str = "lxd1", interfaces=("br0", "eth0")) -> int:
    zone, pool = named.get_default_thd(cur, named.ZONES), named.get_default_thd(cur, named.RESOURCE_POOLS)
    new = hosts.NewHost(name, "lxd", "10.0.0.9", "default", None, None, zone.id, pool.id, [], 1.0, 1.0, None)
    host_id = hosts.create_thd(cur, None, new).id
    for iface in interfaces:
        cur.execute("INSERT INTO vm_host_interfaces (host_id, name, type, mac, sriov_max_vfs, link_speed)"
                    " VALUES (%s, %s, 'physical', '00:16:3e:00:00:01', 0, 1000)", (host_id, iface))
    return host_id


def test_link_host_interfaces_over_the_api(admin_api, dsn):
    host_id = run_sync(dsn, make_host_thd)
    space = ok(admin_api.post("spaces/", data={"name": "public"}))
    vlan = ok(admin_api.post("fabrics/0/vlans/", data={"vid": "12", "space": "public", "dhcp_on": "true"}))
    subnet = ok(admin_api.post("subnets/", data={"cidr": "10.12.0.0/24", "vid": "12"}))

    listed = ok(admin_api.get(f"vm-hosts/{host_id}/interfaces/"))
    assert [(i["name"], i["vlan"], i["space"], i["subnets"], i["tags"]) for i in listed] == [
        ("br0", None, "undefined", [], []), ("eth0", None, "undefined", [], [])]

    linked = ok(admin_api.put(f"vm-hosts/{host_id}/interfaces/br0/",
                              data={"subnet": "10.12.0.0/24", "tags": "sriov,fast"}))
    assert (linked["vlan"]["id"], linked["fabric"], linked["space"], linked["tags"]) == (
        vlan["id"], "fabric-0", space["name"], ["sriov", "fast"])
    assert [s["id"] for s in linked["subnets"]] == [subnet["id"]]
    assert ok(admin_api.get(f"vm-hosts/{host_id}/interfaces/{linked['id']}/")) == linked

    retagged = ok(admin_api.put(f"vm-hosts/{host_id}/interfaces/{linked['id']}/", data={"tags": "slow"}))
    assert retagged["tags"] == ["slow"] and retagged["vlan"]["id"] == vlan["id"], "the VLAN stays"
    by_vid = ok(admin_api.put(f"vm-hosts/{host_id}/interfaces/eth0/", data={"fabric": "fabric-0", "vid": "0"}))
    assert by_vid["vlan"]["vid"] == 0 and by_vid["space"] == "undefined" and by_vid["subnets"] == []
    unlinked = ok(admin_api.put(f"vm-hosts/{host_id}/interfaces/eth0/", data={"vlan": ""}))
    assert unlinked["vlan"] is None

    assert admin_api.put(f"vm-hosts/{host_id}/interfaces/eth9/", data={"vlan": "1"}).status == 404
    assert admin_api.get("vm-hosts/999/interfaces/").status == 404
    bad = admin_api.put(f"vm-hosts/{host_id}/interfaces/eth0/", data={"vlan": "9999"})
    assert bad.status == 400 and "vlan" in bad.json()


def test_host_interface_networks_after_linking(dsn):
    host_id = run_sync(dsn, make_host_thd)

    def setup_thd(cur):
        space = networks.create_space_thd(cur, "internal")
        fabric = networks.create_fabric_thd(cur, "fast", "25g")
        vlan = networks.create_vlan_thd(cur, fabric.id, 300, space_id=space.id, dhcp_on=True)
        subnet = subnets.create_subnet_thd(cur, cidr="172.16.0.0/16", vlan_id=vlan.id)
        return space, fabric, vlan, subnet

    space, fabric, vlan, subnet = run_sync(dsn, setup_thd)
    before = run_sync(dsn, networks.host_interface_networks_thd, host_id)
    assert [(i.name, i.vlan, i.tags) for i in before] == [("br0", None, []), ("eth0", None, [])]

    linked = run_sync(dsn, networks.link_host_interface_thd, host_id, "br0", vlan.id, ["a", "b"])
    assert (linked.vlan, linked.fabric, linked.space, linked.subnets, linked.tags) == (
        vlan, fabric, space, [subnet], ["a", "b"])
    found = {i.name: i for i in run_sync(dsn, networks.host_interface_networks_thd, host_id)}
    assert found["br0"] == linked
    assert (found["eth0"].vlan, found["eth0"].fabric, found["eth0"].space, found["eth0"].subnets) == (
        None, None, None, [])
    assert found["br0"].id != found["eth0"].id and found["br0"].link_speed == 1000

    by_id = run_sync(dsn, networks.link_host_interface_thd, host_id, found["eth0"].id, vlan.id, None)
    assert by_id.name == "eth0" and by_id.tags == []
    run_sync(dsn, networks.delete_space_thd, space.id)
    assert run_sync(dsn, networks.host_interface_networks_thd, host_id)[0].space is None


# -- static IP allocation -----------------------------------------------------------------------

@pytest.fixture
def subnet_24(dsn):
    """10.0.0.0/24, gateway .1, reserved .2-.4, dynamic .200-.250."""

    def make_thd(cur):
        vlan = networks.default_vlan_thd(cur)
        subnet = subnets.create_subnet_thd(cur, cidr="10.0.0.0/24", vlan_id=vlan.id, gateway_ip="10.0.0.1")
        subnets.create_range_thd(cur, subnet.id, "reserved", "10.0.0.2", "10.0.0.4")
        subnets.create_range_thd(cur, subnet.id, "dynamic", "10.0.0.200", "10.0.0.250")
        return subnet.id

    return run_sync(dsn, make_thd)


def test_allocate_a_specific_ip(dsn, subnet_24):
    assert run_sync(dsn, ipam.allocate_ip_thd, subnet_24, "10.0.0.10", None) == "10.0.0.10"
    with pytest.raises(ipam.IPUnavailable, match="already in use"):
        run_sync(dsn, ipam.allocate_ip_thd, subnet_24, "10.0.0.10", None)


@pytest.mark.parametrize("ip,reason", [
    ("10.0.1.5", "not inside the subnet"),
    ("fd00::5", "not inside the subnet"),
    ("10.0.0.3", "inside a reserved range"),
    ("10.0.0.220", "inside a dynamic range"),
    ("10.0.0.1", "is the gateway"),
    ("10.0.0.0", "network or broadcast"),
    ("10.0.0.255", "network or broadcast"),
    ("nonsense", "valid IPv4 or IPv6 address"),
])
def test_unusable_ips_are_refused_clearly(dsn, subnet_24, ip, reason):
    with pytest.raises(FieldError, match=reason) as caught:
        run_sync(dsn, ipam.allocate_ip_thd, subnet_24, ip, None)
    assert caught.value.field == "ip"
    assert run_sync(dsn, ipam.static_ips_thd, subnet_24) == []


def test_auto_allocation_picks_the_lowest_free_address(dsn, subnet_24):
    run_sync(dsn, ipam.allocate_ip_thd, subnet_24, "10.0.0.6", None)
    picked = [run_sync(dsn, ipam.allocate_ip_thd, subnet_24, None, None) for _ in range(3)]
    assert picked == ["10.0.0.5", "10.0.0.7", "10.0.0.8"], "skips gateway, reserved range and taken .6"


def test_a_full_subnet_says_so(dsn):
    def make_thd(cur):
        subnet = subnets.create_subnet_thd(cur, cidr="10.9.9.0/30", vlan_id=networks.default_vlan_thd(cur).id,
                                           gateway_ip="10.9.9.1")
        return subnet.id

    subnet_id = run_sync(dsn, make_thd)
    assert run_sync(dsn, ipam.allocate_ip_thd, subnet_id, None, None) == "10.9.9.2"
    with pytest.raises(FieldError, match="No free addresses in 10.9.9.0/30") as caught:
        run_sync(dsn, ipam.allocate_ip_thd, subnet_id, None, None)
    assert caught.value.field == "subnet"


def test_ipv6_auto_allocation(dsn):
    def make_thd(cur):
        return subnets.create_subnet_thd(cur, cidr="fd00:1::/64", vlan_id=networks.default_vlan_thd(cur).id,
                                         gateway_ip="fd00:1::1").id

    subnet_id = run_sync(dsn, make_thd)
    assert run_sync(dsn, ipam.allocate_ip_thd, subnet_id, None, None) == "fd00:1::2"
    assert run_sync(dsn, ipam.allocate_ip_thd, subnet_id, "FD00:1::00ff", None) == "fd00:1::ff"


def _in_threads(count: int, fn) -> tuple[list, list]:
    results, errors, barrier = [], [], threading.Barrier(count)

    def run():
        barrier.wait()
        try:
            results.append(fn())
        except Exception as e:
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results, errors


def test_a_dynamic_range_cannot_cover_allocated_addresses(dsn, subnet_24):
    run_sync(dsn, ipam.allocate_ip_thd, subnet_24, "10.0.0.150", None)
    with pytest.raises(FieldError, match="10.0.0.150"):
        run_sync(dsn, subnets.create_range_thd, subnet_24, "dynamic", "10.0.0.140", "10.0.0.160")
    reserved = run_sync(dsn, subnets.create_range_thd, subnet_24, "reserved", "10.0.0.140", "10.0.0.160")
    assert (reserved.start_ip, reserved.end_ip) == ("10.0.0.140", "10.0.0.160"), "reserving around it is fine"


def test_concurrent_auto_allocations_get_distinct_addresses(dsn, subnet_24):
    results, errors = _in_threads(20, lambda: run_sync(dsn, ipam.allocate_ip_thd, subnet_24, None, None))
    assert errors == []
    assert len(set(results)) == 20
    expected = [f"10.0.0.{n}" for n in range(5, 25)]
    assert sorted(results, key=lambda ip: int(ip.rsplit(".", 1)[1])) == expected, "the lowest 20, no gaps"
    assert sorted(ip.ip for ip in run_sync(dsn, ipam.static_ips_thd, subnet_24)) == sorted(results)


def test_concurrent_requests_for_one_ip_let_exactly_one_win(dsn, subnet_24):
    results, errors = _in_threads(10, lambda: run_sync(dsn, ipam.allocate_ip_thd, subnet_24, "10.0.0.77", None))
    assert results == ["10.0.0.77"]
    assert len(errors) == 9 and all(isinstance(e, ipam.IPUnavailable) and e.field == "ip" for e in errors)


def test_release_and_machine_interface_deletion_free_addresses(dsn, subnet_24):
    host_id = run_sync(dsn, make_host_thd)

    def machine_interfaces_thd(cur):
        zone, pool = named.get_default_thd(cur, named.ZONES), named.get_default_thd(cur, named.RESOURCE_POOLS)
        cur.execute("INSERT INTO machines (system_id, hostname, host_id, project, instance_name, origin, cpu_count,"
                    " memory, zone_id, pool_id) VALUES ('abc123', 'vm1', %s, 'default', 'vm1', 'composed', 1, 1,"
                    " %s, %s) RETURNING id", (host_id, zone.id, pool.id))
        machine_id = cur.fetchone()[0]
        ids = []
        for name in ("eth0", "eth1"):
            cur.execute("INSERT INTO machine_interfaces (machine_id, name) VALUES (%s, %s) RETURNING id",
                        (machine_id, name))
            ids.append(cur.fetchone()[0])
        return machine_id, ids

    machine_id, (eth0, eth1) = run_sync(dsn, machine_interfaces_thd)
    a = run_sync(dsn, ipam.allocate_ip_thd, subnet_24, None, eth0)
    b = run_sync(dsn, ipam.allocate_ip_thd, subnet_24, "10.0.0.99", eth1)
    assert [(s.ip, s.machine_interface_id) for s in run_sync(dsn, ipam.static_ips_thd, subnet_24)] == [
        (a, eth0), (b, eth1)]
    run_sync(dsn, networks.release_ips_thd, [eth0])
    assert [s.ip for s in run_sync(dsn, ipam.static_ips_thd, subnet_24)] == [b]
    assert run_sync(dsn, networks.allocate_ip_thd, subnet_24, None, None) == a, "a released address is reused"

    def delete_machine_thd(cur):
        cur.execute("DELETE FROM machines WHERE id = %s", (machine_id,))

    run_sync(dsn, delete_machine_thd)
    assert [s.ip for s in run_sync(dsn, ipam.static_ips_thd, subnet_24)] == [a], "eth1's IP went with it"


def test_subnet_for_ip_is_the_most_specific(dsn):
    def make_thd(cur):
        vlan_id = networks.default_vlan_thd(cur).id
        return [subnets.create_subnet_thd(cur, cidr=c, vlan_id=vlan_id).id
                for c in ("10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "fd00::/48")]

    wide, mid, narrow, v6 = run_sync(dsn, make_thd)
    assert run_sync(dsn, networks.subnet_for_ip_thd, "10.1.2.3").id == narrow
    assert run_sync(dsn, networks.subnet_for_ip_thd, "10.1.9.9").id == mid
    assert run_sync(dsn, networks.subnet_for_ip_thd, "10.200.0.1").id == wide
    assert run_sync(dsn, networks.subnet_for_ip_thd, "fd00::10").id == v6
    assert run_sync(dsn, networks.subnet_for_ip_thd, "192.168.1.1") is None


# -- the span arithmetic behind allocation and the reserved/unreserved ops ----------------------

spans = st.lists(st.tuples(st.integers(0, 80), st.integers(0, 20)).map(lambda t: ipam.Span(t[0], t[0] + t[1])),
                 max_size=12)


@settings(max_examples=300, deadline=None)
@given(used=spans, first=st.integers(0, 40), length=st.integers(0, 60))
def test_free_spans_are_exactly_the_unused_addresses(used, first, length):
    last = first + length
    free = list(ipam.free_spans(first, last, used))
    free_addresses = [a for s in free for a in range(s.first, s.last + 1)]
    expected = [a for a in range(first, last + 1) if not any(u.first <= a <= u.last for u in used)]
    assert free_addresses == expected
    assert all(a.last + 1 < b.first for a, b in zip(free, free[1:])), "maximal runs, in order"


# -- the vmyard command line --------------------------------------------------------------------

def test_network_cli(admin_api, tmp_path):
    import json
    import os
    import subprocess
    import sys

    from tests.fixtures.daemons import REPO

    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config"), "PYTHONPATH": str(REPO)}

    def vmyard(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "region.cli.user", *args], capture_output=True, text=True,
                              env=env, cwd=REPO, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout

    vmyard("login", "lab", admin_api.base, admin_api.apikey)
    assert "fabric-0" in vmyard("fabrics", "list")
    vmyard("fabrics", "create", "lab", "--class-type", "10g")
    vmyard("spaces", "create", "web", "--description", "Web tier")
    vlan = json.loads(vmyard("--json", "vlans", "create", "lab", "100", "--mtu", "9000", "--space", "web",
                             "--dhcp-on"))
    assert (vlan["vid"], vlan["mtu"], vlan["space"], vlan["dhcp_on"]) == (100, 9000, "web", True)
    table = vmyard("vlans", "list", "lab").splitlines()
    assert table[0].split()[:3] == ["ID", "FABRIC", "VID"] and len(table) == 3
    assert "9000" in vmyard("vlans", "update", "lab", "100", "--name", "web", "--no-dhcp-on")

    vmyard("subnets", "create", "10.100.0.0/24", "--fabric", "lab", "--vid", "100", "--gateway", "10.100.0.1",
           "--dns", "10.100.0.2,10.100.0.3")
    subnet = json.loads(vmyard("--json", "subnets", "show", "10.100.0.0/24"))
    assert (subnet["vlan"]["id"], subnet["space"], subnet["dns_servers"]) == (
        vlan["id"], "web", ["10.100.0.2", "10.100.0.3"])
    reserved = json.loads(vmyard("--json", "subnets", "reserve", "10.100.0.0/24", "10.100.0.10", "10.100.0.20",
                                 "--comment", "VIPs"))
    assert (reserved["type"], reserved["subnet"]["id"], reserved["comment"]) == ("reserved", subnet["id"], "VIPs")
    assert "10.100.0.0/24" in vmyard("spaces", "show", "web")
    assert "10.100.0.0/23" in vmyard("subnets", "update", str(subnet["id"]), "--cidr", "10.100.0.0/23")
    refused = subprocess.run([sys.executable, "-m", "region.cli.user", "subnets", "update", "10.100.0.0/23",
                              "--cidr", "10.100.0.0/28"], capture_output=True, text=True, env=env, cwd=REPO,
                             timeout=120)
    assert refused.returncode == 1 and "cidr:" in refused.stderr and "10.100.0.10-10.100.0.20" in refused.stderr
    vmyard("subnets", "delete", "10.100.0.0/23")
    vmyard("vlans", "delete", "lab", "100")
    vmyard("fabrics", "delete", "lab")
    vmyard("spaces", "delete", "web")
    assert json.loads(vmyard("--json", "fabrics", "list"))[0]["name"] == "fabric-0"
