"""nodes/{system_id}/interfaces/ against a real region, rack and LXD: read, link_subnet (AUTO,
STATIC, DHCP, LINK_UP), unlink_subnet, disconnect, who may and when; then a real deploy whose
network-config comes from the links (the STATIC address is on the container's NIC, the AUTO link
got its address at deploy).

Terraform's maas_instance (canonical/terraform-provider-maas `maas/resource_maas_instance.go`)
allocates, then disconnects each interface it configures and links it with mode AUTO or STATIC,
then deploys; the requests below follow that order.
"""

from __future__ import annotations

import datetime
import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import attrs
import yaml

from devstack.debian_image import debian_image
from region.db.interfaces import InterfaceLink
from region.db.machines import Machine, MachineNic
from region.db.pool import run_sync
from region.services import cloudinit, interfaces
from tests.clients.maas_cli import Profile
from tests.fixtures.http import Api
from tests.fixtures.lxd import lxc_json
from tests.test_compose_lxd import bridges, lab, second_pool  # noqa: F401  (fixtures)
from tests.test_deploy_e2e import (PROXY_PROFILE, alice, bob, check_schema, lxc_in, run_in,  # noqa: F401
                                   upload, wait_for_status)
from tests.test_fuzz_api import actions, fuzz
from tests.test_libmaas import libmaas_python  # noqa: F401  (fixture)
from tests.test_vmhosts_lxd import sql


def compose_allocated(admin, owner, host: dict, hostname: str, **extra) -> tuple[str, dict[str, dict]]:
    """A machine with eth0 on the untagged VLAN (10.20.0.0/24) and eth1 on VLAN 30 (10.30.0.0/24),
    allocated to `owner`; returns its system id and its interfaces by name."""
    made = admin.post(f"vm-hosts/{host['id']}/", data={
        "op": "compose", "hostname": hostname, "cores": "1", "memory": "1024", "storage": "root:3",
        "interfaces": "eth0:space=storage;eth1:space=dmz", **extra})
    assert made.status == 200, made.text
    sid = made.json()["system_id"]
    assert owner.post("machines/", data={"op": "allocate", "system_id": sid}).status == 200
    return sid, {n["name"]: n for n in owner.get(f"nodes/{sid}/interfaces/").json()}


def link(api, sid: str, nic: dict, **data):
    return api.post(f"nodes/{sid}/interfaces/{nic['id']}/", data={"op": "link_subnet", **data})


def test_read_link_unlink_and_disconnect_in_maas_shapes(lab, lxd_server, alice, bob, dsn):
    admin, host = lab
    sid, nics = compose_allocated(admin, alice, host, "if1")
    eth0, eth1 = nics["eth0"], nics["eth1"]
    instance = lxc_json(lxd_server, f"/1.0/instances/if1?project={host['project']}")
    assert eth1["mac_address"] == instance["devices"]["eth1"]["hwaddr"]
    assert (eth1["type"], eth1["enabled"], eth1["links"], eth1["system_id"]) == ("physical", True, [], sid)
    assert eth1["vlan"]["vid"] == 30 and eth0["vlan"]["vid"] == 0 and eth1["effective_mtu"] == 1500
    assert eth1["resource_uri"] == f"/MAAS/api/2.0/nodes/{sid}/interfaces/{eth1['id']}/"
    assert alice.get(f"nodes/{sid}/interfaces/{eth1['id']}/").json() == eth1
    assert alice.get(f"machines/{sid}/").json()["interface_set"] == [eth0, eth1]
    assert alice.get(f"nodes/{sid}/interfaces/999999/").status == 404

    # Someone else may neither change nor see it.
    assert link(bob, sid, eth1, mode="STATIC", subnet="10.30.0.0/24").status == 403
    assert bob.get(f"nodes/{sid}/interfaces/").status == 404

    # STATIC with an address: shown in links[] and ip_addresses at once, before any deploy.
    reply = link(alice, sid, eth1, mode="STATIC", subnet="10.30.0.0/24", ip_address="10.30.0.77")
    assert reply.status == 200, reply.text
    static = reply.json()["links"][0]
    assert (static["mode"], static["ip_address"]) == ("static", "10.30.0.77")
    assert static["subnet"]["cidr"] == "10.30.0.0/24" and static["subnet"]["vlan"]["vid"] == 30
    assert static["subnet"]["gateway_ip"] == "10.30.0.1" and static["subnet"]["resource_uri"].startswith("/MAAS/")
    machine = alice.get(f"machines/{sid}/").json()
    assert machine["ip_addresses"] == ["10.30.0.77"] and machine["interface_set"][1]["links"] == [static]

    # Bad requests are a 400 naming the field, and change nothing.
    for data, field in [({"mode": "STATIC", "subnet": "10.20.0.0/24", "ip_address": "10.30.0.5"}, "ip_address"),
                        ({"mode": "STATIC", "subnet": "10.20.0.0/24", "ip_address": "10.20.0.300"}, "ip_address"),
                        ({"mode": "AUTO", "subnet": "10.20.0.0/24", "ip_address": "10.20.0.5"}, "ip_address"),
                        ({"mode": "SOMETIMES", "subnet": "10.20.0.0/24"}, "mode"),
                        ({"mode": "AUTO"}, "subnet"),
                        ({"mode": "AUTO", "subnet": "10.99.0.0/24"}, "subnet"),
                        ({"mode": "AUTO", "subnet": "10.30.0.0/24"}, "subnet"),  # eth0 is not on VLAN 30
                        ({"mode": "DHCP", "subnet": "10.20.0.0/24", "default_gateway": "true"}, "default_gateway"),
                        ({"mode": "STATIC", "subnet": "10.20.0.0/24", "default_gateway": "true"}, "default_gateway"),
                        ({"mode": "STATIC", "subnet": "10.20.0.0/24", "default_gateway": "maybe"},
                         "default_gateway")]:
        reply = link(alice, sid, eth0, **data)
        assert reply.status == 400 and field in reply.json(), (data, reply.text)
    in_use = link(alice, sid, eth0, mode="STATIC", subnet="10.30.0.0/24", ip_address="10.30.0.77", force="true")
    assert in_use.status == 400 and "already in use" in in_use.json()["ip_address"][0], in_use.text
    assert alice.get(f"nodes/{sid}/interfaces/{eth0['id']}/").json()["links"] == []
    assert alice.get(f"machines/{sid}/").json()["ip_addresses"] == ["10.30.0.77"]

    # unlink frees the address; STATIC without one takes the lowest free (.1 is the gateway).
    bad = alice.post(f"nodes/{sid}/interfaces/{eth1['id']}/", data={"op": "unlink_subnet", "id": "999999"})
    assert bad.status == 400 and "id" in bad.json()
    unlinked = alice.post(f"nodes/{sid}/interfaces/{eth1['id']}/", data={"op": "unlink_subnet", "id": static["id"]})
    assert unlinked.status == 200 and unlinked.json()["links"] == []
    assert sql(dsn, "SELECT count(*) FROM static_ips WHERE host(ip) = '10.30.0.77'")[0][0] == 0
    picked = link(alice, sid, eth1, mode="STATIC", subnet="10.30.0.0/24", default_gateway="true").json()["links"]
    assert [(x["mode"], x["ip_address"]) for x in picked] == [("static", "10.30.0.2")]

    # AUTO holds no address until deploy; DHCP none at all; LINK_UP alone.
    auto = link(alice, sid, eth0, mode="AUTO", subnet="10.20.0.0/24").json()["links"]
    assert [(x["mode"], "ip_address" in x, x["subnet"]["cidr"]) for x in auto] == [("auto", False, "10.20.0.0/24")]
    refused = link(alice, sid, eth0, mode="LINK_UP")
    assert refused.status == 400 and "mode" in refused.json()
    up = link(alice, sid, eth0, mode="LINK_UP", subnet="10.20.0.0/24", force="true").json()["links"]
    assert [x["mode"] for x in up] == ["link_up"]
    dhcp = link(alice, sid, eth0, mode="DHCP", subnet="10.20.0.0/24").json()["links"]
    assert [x["mode"] for x in dhcp] == ["dhcp"], "a LINK_UP link gives way to the next link"
    assert link(alice, sid, eth0, mode="DHCP", subnet="10.20.0.0/24").status == 400

    # disconnect: no links, no VLAN; then a subnet of any VLAN may be linked, and the NIC follows it.
    gone = alice.post(f"nodes/{sid}/interfaces/{eth0['id']}/", data={"op": "disconnect"})
    assert gone.status == 200 and gone.json()["links"] == [] and gone.json()["vlan"] is None
    moved = link(alice, sid, eth0, mode="AUTO", subnet="10.30.0.0/24")
    assert moved.status == 200 and moved.json()["vlan"]["vid"] == 30, moved.text

    # set_default_gateway: the machine's one default route (per family) moves to eth0's link.
    def gateway_links():
        return [r[0] for r in sql(dsn, "SELECT id FROM static_ips WHERE default_gateway ORDER BY id")]

    assert gateway_links() == [picked[0]["id"]]
    for data in ({"link_id": "999999"}, {"link_id": "x"}):
        wrong = alice.post(f"nodes/{sid}/interfaces/{eth0['id']}/", data={"op": "set_default_gateway", **data})
        assert wrong.status == 400 and "link_id" in wrong.json(), wrong.text
    moved_gateway = alice.post(f"nodes/{sid}/interfaces/{eth0['id']}/", data={"op": "set_default_gateway"})
    assert moved_gateway.status == 200, moved_gateway.text
    assert gateway_links() == [moved.json()["links"][0]["id"]]

    # Only while Ready, Allocated or Broken (MAAS: 409 otherwise); every change was audited.
    sql(dsn, "UPDATE machines SET status = 'deployed' WHERE system_id = %s", sid)
    late = alice.post(f"nodes/{sid}/interfaces/{eth0['id']}/", data={"op": "disconnect"})
    assert late.status == 409 and "not Ready, Allocated, or Broken" in late.text
    sql(dsn, "UPDATE machines SET status = 'allocated' WHERE system_id = %s", sid)
    audited = [r[0] for r in sql(dsn, "SELECT type FROM events WHERE object_id = %s AND type LIKE 'INTERFACE%%'"
                                      " AND username = 'alice' ORDER BY id", sid)]
    assert audited.count("INTERFACE_LINKED") == 6 and "INTERFACE_UNLINKED" in audited
    assert "INTERFACE_DEFAULT_GATEWAY" in audited
    assert "INTERFACE_DISCONNECTED" in audited
    # An admin may change anyone's machine.
    assert admin.post(f"nodes/{sid}/interfaces/{eth0['id']}/", data={"op": "disconnect"}).status == 200
    assert admin.delete(f"machines/{sid}/").status == 204


def test_a_deploy_configures_the_nics_from_their_links(lab, lxd_server, lxd_region, alice):
    admin, host = lab
    project = host["project"]
    lxc_in(lxd_server, project, "profile", "create", PROXY_PROFILE)
    lxc_in(lxd_server, project, "profile", "device", "add", PROXY_PROFILE, "region", "proxy",
           f"listen=tcp:127.0.0.1:{lxd_region.http_port}", f"connect=tcp:127.0.0.1:{lxd_region.http_port}",
           "bind=instance")
    assert admin.put(f"vm-hosts/{host['id']}/", data={"deploy_profiles": PROXY_PROFILE}).status == 200
    upload(admin, debian_image().rootfs_tgz, "custom/bookworm", "tgz")
    sid, nics = compose_allocated(admin, alice, host, "net1", instance_type="container")
    name = alice.get(f"machines/{sid}/").json()["instance_name"]
    # Terraform's order: disconnect, then link.
    for nic, data in ((nics["eth1"], {"mode": "STATIC", "subnet": "10.30.0.0/24", "ip_address": "10.30.0.61",
                                      "default_gateway": "true"}),
                      (nics["eth0"], {"mode": "AUTO", "subnet": "10.20.0.0/24"})):
        assert alice.post(f"nodes/{sid}/interfaces/{nic['id']}/", data={"op": "disconnect"}).status == 200
        assert link(alice, sid, nic, **data).status == 200
    assert alice.get(f"machines/{sid}/").json()["ip_addresses"] == ["10.30.0.61"]

    reply = alice.post(f"machines/{sid}/", data={"op": "deploy", "distro_series": "custom/bookworm"})
    assert reply.status == 200, reply.text
    deployed = wait_for_status(alice, sid, ("Deployed", "Failed deployment"))
    assert deployed["status_name"] == "Deployed", deployed["status_message"]
    eth0_link = deployed["interface_set"][0]["links"][0]
    assert (eth0_link["mode"], eth0_link["ip_address"]) == ("auto", "10.20.0.1")  # that subnet has no gateway
    assert sorted(deployed["ip_addresses"]) == ["10.20.0.1", "10.30.0.61"]

    network = yaml.safe_load(lxc_json(lxd_server, f"/1.0/instances/{name}?project={project}")["config"]
                             ["cloud-init.network-config"])
    assert network == {"version": 2, "ethernets": {
        "eth0": {"addresses": ["10.20.0.1/24"]},
        "eth1": {"addresses": ["10.30.0.61/24"], "routes": [{"to": "0.0.0.0/0", "via": "10.30.0.1"}]}}}
    assert "10.30.0.61/24" in run_in(lxd_server, project, name, "ip", "-o", "addr", "show", "eth1").stdout
    assert "10.20.0.1/24" in run_in(lxd_server, project, name, "ip", "-o", "addr", "show", "eth0").stdout
    # cloud-init and netplan in the machine accept what was generated.
    root = "/tmp/netplan-check"
    text = yaml.safe_dump(network)
    converted = check_schema(lxd_server, project, name, text, "cloud-init", "devel", "net-convert", "--network-data",
                             "{}", "--kind", "yaml", "--output-kind", "netplan", "--distro", "debian",
                             "--directory", root)
    assert converted.returncode == 0, converted.stderr
    generated = run_in(lxd_server, project, name, "netplan", "generate", "--root-dir", root)
    assert generated.returncode == 0, generated.stderr
    # Released, the AUTO link gives its address back (MAAS's release does); the STATIC one keeps its own.
    released = alice.post(f"machines/{sid}/", data={"op": "release"})
    assert released.status == 200, released.text
    links = [nic["links"][0] for nic in released.json()["interface_set"]]
    assert [(x["mode"], x.get("ip_address")) for x in links] == [("auto", None), ("static", "10.30.0.61")]
    assert admin.delete(f"machines/{sid}/").status == 204


def test_maas_cli_commands_then_fuzzed_requests_never_get_a_server_error(lab, lxd_region, alice):
    """The maas CLI's commands for these endpoints (built from describe/ as the CLI builds them), then
    tests/test_fuzz_api.py's fuzzer on them, with a real machine and NIC ids to reach."""
    admin, host = lab
    sid, nics = compose_allocated(admin, alice, host, "fuzz1")
    cli, eth1 = Profile.login(lxd_region.url, admin.apikey), str(nics["eth1"]["id"])
    assert [n["name"] for n in cli.run("interfaces", "read", sid).json()] == ["eth0", "eth1"]
    linked = cli.run("interface", "link-subnet", sid, eth1, "mode=STATIC", "subnet=10.30.0.0/24",
                     "ip_address=10.30.0.9")
    assert linked.url.endswith(f"/nodes/{sid}/interfaces/{eth1}/?op=link_subnet"), linked.url
    (static,) = linked.json()["links"]
    assert static["ip_address"] == "10.30.0.9"
    assert cli.run("interface", "unlink-subnet", sid, eth1, f"id={static['id']}").json()["links"] == []
    assert cli.run("interface", "disconnect", sid, eth1).json()["vlan"] is None

    # Concurrent links: one AUTO link per subnet on a NIC, one holder per address.
    def both(*requests):
        with ThreadPoolExecutor(2) as pool:
            return sorted(r.status for r in pool.map(lambda ask: link(alice, sid, ask[0], **ask[1]), requests))

    auto = (nics["eth1"], {"mode": "AUTO", "subnet": "10.30.0.0/24"})
    assert both(auto, auto) == [200, 400]
    assert len(alice.get(f"nodes/{sid}/interfaces/{eth1}/").json()["links"]) == 1
    same_ip = {"mode": "STATIC", "subnet": "10.20.0.0/24", "ip_address": "10.20.0.50", "force": "true"}
    assert both((nics["eth0"], same_ip), (nics["eth1"], same_ip)) == [200, 400]
    assert alice.get(f"machines/{sid}/").json()["ip_addresses"] == ["10.20.0.50"]
    targets = [t for t in actions(admin.get("describe/").json()) if "/nodes/{system_id}/interfaces/" in t[0]]
    assert len(targets) == 6, targets
    fuzz({"admin": admin, "alice": alice, "anonymous": Api(lxd_region.api)},
         [sid, *(str(n["id"]) for n in nics.values())], targets, 200)
    assert admin.get(f"nodes/{sid}/interfaces/").status == 200
    assert admin.delete(f"machines/{sid}/").status == 204


def mac(n: int) -> str:
    return f"00:16:3E:00:00:{n:02X}"


def machine_with(nics: list[MachineNic]) -> Machine:
    return Machine(1, "sid", "m1", 1, "default", "m1", "composed", False, "deploying", "on", "amd64/generic", 1, [],
                   2**30, False, [], [], 0, 0, None, datetime.datetime.now(datetime.timezone.utc), interfaces=nics)


def test_network_config_from_links_dhcp_link_up_and_one_default_route_per_family(dsn):
    def subnets_thd(cur):
        cur.execute("SELECT id FROM vlans WHERE vid = 0 ORDER BY id LIMIT 1")
        vlan = cur.fetchone()[0]
        found = []
        for cidr, gateway in (("10.1.0.0/24", "10.1.0.1"), ("10.2.0.0/24", "10.2.0.1"), ("fd00::/64", "fd00::1")):
            cur.execute("INSERT INTO subnets (name, cidr, vlan_id, gateway_ip, dns_servers) VALUES (%s, %s, %s, %s,"
                        " %s) RETURNING id", (cidr, cidr, vlan, gateway, ["10.0.0.53"]))
            found.append(cur.fetchone()[0])
        return found

    a, b, v6 = run_sync(dsn, subnets_thd)
    nics = [MachineNic(1, "eth0", mac(1), "bridged", "br0", 0, True,
                       links=[InterfaceLink(1, "static", "10.1.0.5", a), InterfaceLink(2, "dhcp", None, v6)]),
            MachineNic(2, "eth1", mac(2), "bridged", "br1", 0, False,
                       links=[InterfaceLink(3, "static", "10.2.0.5", b, default_gateway=True)]),
            MachineNic(3, "eth2", mac(3), "bridged", "br2", 0, False, links=[InterfaceLink(4, "link_up", None, None)]),
            MachineNic(4, "eth3", mac(4), "bridged", "br3", 0, False, disconnected=True),
            MachineNic(5, "eth4", mac(5), "bridged", "br4", 0, False),
            MachineNic(6, "eth5", None, "bridged", "br5", 0, False)]  # no MAC yet: not configured
    configs = run_sync(dsn, interfaces.nic_configs_thd, machine_with(nics))
    match = {n.name: {"match": {"macaddress": n.mac.lower()}, "set-name": n.name} for n in nics if n.mac}
    dns = {"nameservers": {"addresses": ["10.0.0.53"]}}
    assert yaml.safe_load(cloudinit.network_config(configs))["ethernets"] == {
        # eth1's link is the default gateway for IPv4, so eth0's subnet gateway is no route.
        "eth0": {**match["eth0"], "addresses": ["10.1.0.5/24"], **dns, "dhcp6": True},
        "eth1": {**match["eth1"], "addresses": ["10.2.0.5/24"], "routes": [{"to": "0.0.0.0/0", "via": "10.2.0.1"}],
                 **dns},
        "eth2": match["eth2"],  # LINK_UP: up, no address
        "eth3": match["eth3"],  # disconnected
        "eth4": {**match["eth4"], "dhcp4": True},  # never linked: vmyard's default
    }
    # Without a marked link, the first addressed link whose subnet has a gateway routes.
    unmarked = [nics[0], attrs.evolve(nics[1], links=[attrs.evolve(nics[1].links[0], default_gateway=False)])]
    configs = run_sync(dsn, interfaces.nic_configs_thd, machine_with(unmarked))
    routes = {c.name: [a.gateway for a in c.addresses] for c in configs}
    assert routes == {"eth0": ["10.1.0.1"], "eth1": [None]}


def test_python_libmaas_reads_disconnects_links_and_unlinks(libmaas_python, lab, alice, lxd_region):
    admin, host = lab
    sid, nics = compose_allocated(admin, alice, host, "lm1")
    script = Path(__file__).parent / "clients" / "libmaas_interfaces.py"
    done = subprocess.run([str(libmaas_python), str(script), lxd_region.url, alice.apikey, sid, "10.30.0.0/24",
                           "10.30.0.33"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["disconnected"] == {"vlan": None, "links": []}
    assert seen["created"]["mode"] == "static" and seen["created"]["ip_address"] == "10.30.0.33"
    assert seen["created"]["cidr"] == "10.30.0.0/24"
    assert seen["interfaces"] == [
        {"name": "eth0", "type": "physical", "mac_address": nics["eth0"]["mac_address"], "params": "", "vid": 0,
         "links": []},
        {"name": "eth1", "type": "physical", "mac_address": nics["eth1"]["mac_address"], "params": "", "vid": 30,
         "links": [{"mode": "static", "ip_address": "10.30.0.33", "cidr": "10.30.0.0/24"}]}]
    assert seen["ip_addresses"] == ["10.30.0.33"] and seen["after_delete"] == []
    assert alice.get(f"machines/{sid}/").json()["ip_addresses"] == []
    assert admin.delete(f"machines/{sid}/").status == 204
