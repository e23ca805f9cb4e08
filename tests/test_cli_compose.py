"""`vmyard vm-host interfaces|link|compose` and `vmyard machine …` against a real region and real LXD."""

from __future__ import annotations

import json
import re

import pytest

from region.cli.table import decimal_bytes
from region.cli.vmhost_interfaces_cli import attach_type, link_speed
from tests.test_cli_vmhosts import failed, ok, value, vmyard  # noqa: F401 (vmyard is a fixture)
from tests.fixtures.lxd import lxc_json, lxc_missing, unique
from tests.test_compose_lxd import bridges  # noqa: F401 (bridges is a fixture)
from tests.test_vmhosts_lxd import add_trusted_host

IFACE_HEADER = ["NAME", "TYPE", "ATTACH", "MAC", "NUMA", "VFS", "SPEED", "FABRIC", "VLAN", "SPACE", "SUBNETS",
                "TAGS"]


def columns(table: str) -> list[dict[str, str]]:
    """A table's rows as {HEADER: cell}, cut at the header's column starts (cells may hold spaces)."""
    header, *rows = table.splitlines()
    found = list(re.finditer(r"\S+(?: \S+)*", header))  # headers are 2+ spaces apart ("VM HOST" is one)
    names, starts = [m.group() for m in found], [m.start() for m in found]
    ends = starts[1:] + [None]
    return [{n: row[s:e].strip() for n, s, e in zip(names, starts, ends)} for row in rows]


def table_titled(output: str, title: str) -> list[dict[str, str]]:
    lines = output.splitlines()
    start = lines.index(title) + 1
    end = next((i for i in range(start, len(lines)) if not lines[i].strip()), len(lines))
    return columns("\n".join(lines[start:end]))


@pytest.fixture
def lab(lxd_api, lxd_server, bridges):  # noqa: F811
    """A ready host (own project), a space on fabric-0's untagged VLAN with a subnet, an unlinked bridge."""
    api = lxd_api
    host = add_trusted_host(api, lxd_server)
    space = unique("db")
    assert api.post("spaces/", data={"name": space}).status == 200
    untagged = api.put("fabrics/0/vlans/0/", data={"space": space})
    assert untagged.status == 200, untagged.text
    subnet = api.post("subnets/", data={"cidr": "10.44.0.0/24", "vlan": untagged.json()["id"]})
    assert subnet.status == 200, subnet.text
    return {"host": host, "space": space, "vlan": untagged.json(), "cidr": "10.44.0.0/24", "bridge": bridges[0]}


def test_attach_and_speed_helpers():
    assert attach_type({"type": "bridge", "sriov_max_vf": 0}) == "bridge"
    assert attach_type({"type": "physical", "sriov_max_vf": 8}) == "sriov"
    assert attach_type({"type": "physical", "sriov_max_vf": 0}) == "macvlan"
    assert attach_type({"type": "bond", "sriov_max_vf": 0, "attach_type": "bridge"}) == "bridge"
    assert (link_speed(None), link_speed(100), link_speed(1000), link_speed(2500)) == \
        ("-", "100Mb/s", "1Gb/s", "2.5Gb/s")
    assert (decimal_bytes(10**9), decimal_bytes(1.5e9), decimal_bytes(None)) == ("1 GB", "1.5 GB", "-")


def interface_row(vmyard, host: str, name: str) -> dict[str, str]:
    return next(r for r in columns(ok(vmyard("vm-host", "interfaces", host))) if r["NAME"] == name)


def test_interfaces_lists_the_bridge_and_link_puts_it_on_a_vlan(vmyard, lab):
    host, bridge, space, cidr = lab["host"]["name"], lab["bridge"], lab["space"], lab["cidr"]
    vlan = f"untagged (id {lab['vlan']['id']})"
    assert ok(vmyard("vm-host", "refresh", host)).startswith(f"Refreshed {host}: ready")

    out = ok(vmyard("vm-host", "interfaces", host))
    assert out.splitlines()[0].split() == IFACE_HEADER
    row = next(r for r in columns(out) if r["NAME"] == bridge)
    with open(f"/sys/class/net/{bridge}/address") as mac:
        assert row["MAC"] == mac.read().strip()
    assert (row["TYPE"], row["ATTACH"], row["VLAN"], row["SPACE"], row["SUBNETS"]) == \
        ("bridge", "bridge", "-", "undefined", "-")
    listed = json.loads(ok(vmyard("--json", "vm-host", "interfaces", str(lab["host"]["id"]))))
    assert [i["vlan"] for i in listed if i["name"] == bridge] == [None]

    # By subnet (its CIDR), with tags; the space and subnet show at once.
    linked = ok(vmyard("vm-host", "link", host, bridge, "--subnet", cidr, "--tags", "db,fast"))
    assert linked.startswith(f"Linked {bridge} of {host} to {vlan} on fabric-0: space {space}, subnets {cidr}.\n"
                             f"Tags of {bridge} of {host}: db,fast\n")
    [row] = columns(linked.split("\n\n", 1)[1])
    assert (row["NAME"], row["VLAN"], row["SPACE"], row["SUBNETS"], row["TAGS"]) == (bridge, vlan, space, cidr,
                                                                                    "db,fast")
    unlinked = ok(vmyard("vm-host", "link", host, bridge, "--unlink"))
    assert unlinked.startswith(f"Unlinked {bridge} of {host}: it is on no VLAN.")
    assert interface_row(vmyard, host, bridge)["VLAN"] == "-"
    assert f"space {space}" in ok(vmyard("vm-host", "link", host, bridge, "--fabric", "fabric-0", "--vid", "0"))
    ok(vmyard("vm-host", "link", host, bridge, "--unlink"))
    # By VLAN id: tags not given are kept.
    linked = ok(vmyard("vm-host", "link", host, bridge, "--vlan", str(lab["vlan"]["id"])))
    assert linked.startswith(f"Linked {bridge} of {host} to {vlan} on fabric-0: space {space}, subnets {cidr}.\n\n")
    row = interface_row(vmyard, host, bridge)
    assert (row["ATTACH"], row["FABRIC"], row["VLAN"], row["SPACE"], row["SUBNETS"], row["TAGS"]) == \
        ("bridge", "fabric-0", vlan, space, cidr, "db,fast")
    assert ok(vmyard("vm-host", "link", host, bridge, "--tags", "")).startswith(f"Linked {bridge} of {host} to {vlan}")
    assert interface_row(vmyard, host, bridge)["TAGS"] == "-"

    assert "nothing to change" in failed(vmyard("vm-host", "link", host, bridge))
    assert "--vid goes with --fabric" in failed(vmyard("vm-host", "link", host, bridge, "--vlan", "1", "--vid", "3"))
    assert "vlan: " in failed(vmyard("vm-host", "link", host, bridge, "--vlan", "99999"))
    assert "vid: No VLAN with VID 77" in failed(vmyard("vm-host", "link", host, bridge, "--vid", "77"))
    assert "subnet: " in failed(vmyard("vm-host", "link", host, bridge, "--subnet", "10.99.0.0/24"))
    assert f"no interface nosuch0 on VM host {host}" in failed(vmyard("vm-host", "link", host, "nosuch0", "--unlink"))
    assert "no VM host named nope" in failed(vmyard("vm-host", "interfaces", "nope"))


def test_compose_then_list_show_power_and_delete_the_machine(vmyard, lab, lxd_server, lxd_api):
    host, bridge, space = lab["host"]["name"], lab["bridge"], lab["space"]
    project = lab["host"]["project"]
    ok(vmyard("vm-host", "refresh", host))
    ok(vmyard("vm-host", "link", host, bridge, "--vlan", str(lab["vlan"]["id"])))

    out = ok(vmyard("vm-host", "compose", host, "--cores", "1", "--memory", "1G", "--storage", "root:1",
                    "--interfaces", f"eth0:space={space}", "--hostname", "db1"))
    assert out.startswith("Composed db1 (") and f") on {host}.\n" in out
    system_id = value(out, "System id")
    assert (value(out, "Status"), value(out, "Power"), value(out, "VM host")) == ("Ready", "off", host)
    assert (value(out, "Cores"), value(out, "Memory")) == ("1", "1.0 GiB")
    assert value(out, "LXD instance") == f"db1 (project {project})"
    assert table_titled(out, "Disks") == [{"NAME": "sda", "SIZE": "1 GB", "POOL": "default"}]
    [nic] = table_titled(out, "Interfaces")
    instance = lxc_json(lxd_server, f"/1.0/instances/db1?project={project}")
    assert (nic["NAME"], nic["ATTACH"], nic["MAC"]) == ("eth0", f"bridge:{bridge}",
                                                        instance["devices"]["eth0"]["hwaddr"])
    assert instance["devices"]["eth0"]["parent"] == bridge

    listing = ok(vmyard("machine", "list"))
    [row] = [r for r in columns(listing) if r["HOSTNAME"] == "db1"]
    assert (row["SYSTEM_ID"], row["STATUS"], row["POWER"], row["CORES"], row["MEMORY"], row["STORAGE"],
            row["VM HOST"]) == (system_id, "Ready", "off", "1", "1.0 GiB", "1 GB", host)
    assert [m["hostname"] for m in json.loads(ok(vmyard("--json", "machines", "list")))] == ["db1"]

    shown = ok(vmyard("machine", "show", "db1"))
    assert ok(vmyard("machine", "show", system_id)) == shown
    assert value(shown, "Hostname") == "db1" and table_titled(shown, "Disks")[0]["SIZE"] == "1 GB"
    assert table_titled(shown, "Interfaces") == [nic]
    assert "no machine named db2" in failed(vmyard("machine", "show", "db2"))

    assert ok(vmyard("machine", "power-state", "db1")).strip() == "db1: off"
    # VMs cannot start on the test machines: LXD's reason reaches the user.
    refused = failed(vmyard("machine", "power-on", "db1"))
    assert "Power on of db1 failed" in refused and "forklimits" in refused, refused
    assert ok(vmyard("machine", "power-state", system_id)).strip() == "db1: off"
    assert ok(vmyard("machine", "power-off", "db1")).strip() == "db1: off"

    # More cores than the host has at all is a 400 on `cores` (as MAAS's compose form); within
    # that but beyond what is left, the server says what falls short (409). Nothing is made.
    too_big = failed(vmyard("vm-host", "compose", host, "--cores", "999", "--storage", "root:1"))
    assert "cores: Ensure this value is less than or equal to" in too_big, too_big
    cores = lxd_api.get(f"vm-hosts/{lab['host']['id']}/").json()["total"]["cores"]
    no_room = failed(vmyard("vm-host", "compose", host, "--cores", str(cores), "--storage", "root:1"))
    assert "409" in no_room and f"needs {cores} cores" in no_room, no_room
    bad = failed(vmyard("vm-host", "compose", host, "--storage", "root:1,oops", "--memory", "12",
                        "--interfaces", "eth0"))
    assert all(f"{field}: " in bad for field in ("storage", "memory", "interfaces")), bad
    assert "cannot read memory size" in failed(vmyard("vm-host", "compose", host, "--memory", "lots"))
    assert "hostname: " in failed(vmyard("vm-host", "compose", host, "--hostname", "db1", "--storage", "root:1"))
    assert [r["HOSTNAME"] for r in columns(ok(vmyard("machine", "list")))] == ["db1"]

    refused = failed(vmyard("machine", "delete", "db1"))
    assert "--yes" in refused and f"not deleting db1 ({system_id})" in refused
    assert not lxc_missing(lxd_server, f"/1.0/instances/db1?project={project}")
    deleted = ok(vmyard("machine", "delete", "db1", "--yes"))
    assert deleted.strip() == f"Deleted db1 ({system_id}) and its VM."
    assert lxc_missing(lxd_server, f"/1.0/instances/db1?project={project}")
    assert columns(ok(vmyard("machine", "list"))) == []
    assert "no machine named db1" in failed(vmyard("machine", "delete", "db1", "--yes"))
