"""A real machine's JSON against the schemas gomaasapi (Juju's MAAS client) checks it with.

The schemas are read from gomaasapi's own Go source as Debian packages it
(/usr/share/gocode/src/github.com/juju/gomaasapi): the `schema.Fields{…}` and `schema.Defaults{…}`
of `machine.go: machine_2_0`, `interface.go: interface_2_0`, `link.go: link_2_0`,
`subnet.go: subnet_2_0`, `vlan.go: vlan_2_0`, `zone.go: zone_2_0`, `pool.go: pool_2_0`,
`blockdevice.go: blockdevice_2_0`, `partition.go: partition_2_0` and
`filesystem.go: filesystem2_0`, applied as juju/schema's checkers do (`fieldmap.go: Coerce`: a
missing field takes its default, or is checked as null; `numeric.go: forceIntC` takes any
number).  The machine is composed on real LXD, allocated, and has a STATIC and an AUTO link.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_user, region_box
from tests.fixtures.http import Api
from tests.test_compose_lxd import bridges, lab, second_pool  # noqa: F401  (fixtures)

GOMAASAPI = Path("/usr/share/gocode/src/github.com/juju/gomaasapi")
OMIT = "schema.Omit"
# Which gomaasapi function reads each nested object (as the Go code after each schema check does).
NESTED = {
    "machine_2_0": {"boot_interface": "interface_2_0", "interface_set": "interface_2_0", "zone": "zone_2_0",
                    "pool": "pool_2_0", "physicalblockdevice_set": "blockdevice_2_0",
                    "blockdevice_set": "blockdevice_2_0"},
    "interface_2_0": {"vlan": "vlan_2_0", "links": "link_2_0"},
    "link_2_0": {"subnet": "subnet_2_0"},
    "subnet_2_0": {"vlan": "vlan_2_0"},
    "blockdevice_2_0": {"filesystem": "filesystem2_0", "partitions": "partition_2_0"},
    "partition_2_0": {"filesystem": "filesystem2_0"},
}
FILES = {"machine_2_0": "machine.go", "interface_2_0": "interface.go", "link_2_0": "link.go",
         "subnet_2_0": "subnet.go", "vlan_2_0": "vlan.go", "zone_2_0": "zone.go", "pool_2_0": "pool.go",
         "blockdevice_2_0": "blockdevice.go", "partition_2_0": "partition.go", "filesystem2_0": "filesystem.go"}


def _parse_checker(text: str) -> tuple[Any, str]:
    """`schema.Name(args…)` → (("Name", [args]), rest of the text)."""
    match = re.match(r"\s*schema\.(\w+)\(", text)
    assert match, f"not a schema checker: {text[:40]!r}"
    name, rest, args = match.group(1), text[match.end():], []
    while True:
        rest = rest.lstrip()
        if rest.startswith(")"):
            return (name, args), rest[1:]
        if rest.startswith(","):
            rest = rest[1:]
        elif rest.startswith('"'):  # Nil("") takes a label, not a checker
            rest = rest[rest.index('"', 1) + 1:]
        else:
            arg, rest = _parse_checker(rest)
            args.append(arg)


def go_schema(function: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The fields (name → checker tree) and defaults (name → Go literal) of a gomaasapi reader."""
    source = (GOMAASAPI / FILES[function]).read_text()
    body = source[source.index(f"func {function}("):]
    body = body[:body.index("\n}\n")]
    fields_block = re.search(r"schema\.Fields\{(.*?)\n\t\}", body, re.S).group(1)
    fields = {}
    for key, expr in re.findall(r'"(\w+)":\s*(schema\.[^\n]*?),?\s*(?://[^\n]*)?\n', fields_block + "\n"):
        fields[key], _ = _parse_checker(expr)
    defaults_block = re.search(r"schema\.Defaults\{(.*?)\n\t\}", body, re.S)
    defaults = dict(re.findall(r'"(\w+)":\s*([^\n]*?),\s*\n', defaults_block.group(1) + "\n")) if defaults_block else {}
    return fields, defaults


def coerce(checker, value, path: str) -> None:
    """juju/schema's checkers, on decoded JSON (Go's decoder makes every number a float64)."""
    name, args = checker
    ok = {
        "String": lambda: isinstance(value, str),
        "Bool": lambda: isinstance(value, bool),
        "ForceInt": lambda: isinstance(value, (int, float)) and not isinstance(value, bool),
        "ForceUint": lambda: isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0,
        "Nil": lambda: value is None,
        "Any": lambda: True,
        "List": lambda: isinstance(value, list),
        "StringMap": lambda: isinstance(value, dict) and all(isinstance(k, str) for k in value),
    }
    if name == "OneOf":
        failures = []
        for option in args:
            try:
                coerce(option, value, path)
                return
            except AssertionError as e:
                failures.append(str(e))
        raise AssertionError(f"{path}: {value!r} matches none of {failures}")
    assert ok[name](), f"{path}: expected {name}, got {value!r}"
    if name == "List":
        for i, item in enumerate(value):
            coerce(args[0], item, f"{path}[{i}]")
    elif name == "StringMap":
        for key, item in value.items():
            coerce(args[0], item, f"{path}.{key}")


def check(function: str, obj: dict, path: str) -> list[str]:
    """Check `obj` as gomaasapi's `function` does, then the objects it reads from it; returns
    every path checked (so the test can say what was covered)."""
    fields, defaults = go_schema(function)
    assert isinstance(obj, dict), f"{path}: {function} needs an object, got {obj!r}"
    checked = []
    for key, checker in fields.items():
        if key not in obj and defaults.get(key) == OMIT:
            continue
        value = obj[key] if key in obj else (None if key not in defaults else defaults[key].strip('"'))
        coerce(checker, value, f"{path}.{key}")
        checked.append(f"{path}.{key}")
        nested = NESTED.get(function, {}).get(key)
        if nested and isinstance(value, dict):
            checked += check(nested, value, f"{path}.{key}")
        elif nested and isinstance(value, list):
            for i, item in enumerate(value):
                checked += check(nested, item, f"{path}.{key}[{i}]")
    return checked


def test_the_go_schemas_are_read_from_gomaasapi():
    fields, defaults = go_schema("machine_2_0")
    # The list of what Juju reads on a machine is exactly gomaasapi's machine_2_0.
    assert set(fields) == {"resource_uri", "system_id", "hostname", "fqdn", "tag_names", "owner_data", "osystem",
                           "distro_series", "architecture", "memory", "cpu_count", "hardware_info", "ip_addresses",
                           "power_state", "status_name", "status_message", "boot_interface", "interface_set",
                           "zone", "pool", "physicalblockdevice_set", "blockdevice_set"}
    assert fields["owner_data"] == ("StringMap", [("String", [])]) and defaults == {"architecture": '""'}
    link, link_defaults = go_schema("link_2_0")
    assert link == {"id": ("ForceInt", []), "mode": ("String", []), "subnet": ("StringMap", [("Any", [])]),
                    "ip_address": ("String", [])}
    assert link_defaults == {"ip_address": '""', "subnet": OMIT}
    assert go_schema("vlan_2_0")[0]["primary_rack"] == ("OneOf", [("Nil", []), ("String", [])])


def test_a_machine_with_static_and_auto_links_passes_gomaasapis_schemas(lab, lxd_region, dsn):
    admin, host = lab
    made = admin.post(f"vm-hosts/{host['id']}/", data={
        "op": "compose", "hostname": "juju1", "cores": "1", "memory": "1024", "storage": "root:2,data:1",
        "interfaces": "eth0:space=storage;eth1:space=dmz"})
    assert made.status == 200, made.text
    sid = made.json()["system_id"]
    juju = Api(lxd_region.api, make_user(dsn, region_box(lxd_region), "juju", admin=False))
    assert juju.post("machines/", data={"op": "allocate", "system_id": sid}).status == 200
    nics = {n["name"]: n for n in juju.get(f"nodes/{sid}/interfaces/").json()}
    linked = juju.post(f"nodes/{sid}/interfaces/{nics['eth1']['id']}/", data={
        "op": "link_subnet", "mode": "STATIC", "subnet": "10.30.0.0/24", "ip_address": "10.30.0.40"})
    assert linked.status == 200, linked.text
    auto = juju.post(f"nodes/{sid}/interfaces/{nics['eth0']['id']}/", data={
        "op": "link_subnet", "mode": "AUTO", "subnet": "10.20.0.0/24"})
    assert auto.status == 200, auto.text
    assert juju.post(f"machines/{sid}/", data={"op": "set_owner_data", "juju-model-uuid": "m1"}).status == 200

    for machine in (juju.get(f"machines/{sid}/").json(), juju.get("machines/", query={"id": sid}).json()[0]):
        checked = check("machine_2_0", machine, "machine")
        # Every part of the object Juju reads was checked, links and their subnets included.
        for path in ("machine.interface_set[1].links[0].subnet.vlan.mtu", "machine.interface_set[0].links[0].mode",
                     "machine.boot_interface.vlan.dhcp_on", "machine.zone.description", "machine.pool.name",
                     "machine.blockdevice_set[1].size", "machine.owner_data"):
            assert path in checked, path
        static = machine["interface_set"][1]["links"][0]
        assert (static["mode"], static["ip_address"], static["subnet"]["cidr"]) == ("static", "10.30.0.40",
                                                                                   "10.30.0.0/24")
        assert static["subnet"]["vlan"]["vid"] == 30 and static["subnet"]["gateway_ip"] == "10.30.0.1"
        auto_link = machine["interface_set"][0]["links"][0]
        assert auto_link["mode"] == "auto" and "ip_address" not in auto_link  # assigned at deploy
        assert machine["ip_addresses"] == ["10.30.0.40"] and machine["owner_data"] == {"juju-model-uuid": "m1"}
        # What the issue lists for a link's VLAN beyond gomaasapi's own checks.
        vlan = static["subnet"]["vlan"]
        assert {"id", "name", "fabric", "fabric_id", "vid", "mtu", "dhcp_on", "primary_rack", "secondary_rack",
                "resource_uri"} <= set(vlan)
        assert isinstance(vlan["fabric_id"], int) and isinstance(static["subnet"]["dns_servers"], list)
    assert admin.delete(f"machines/{sid}/").status == 204


@pytest.mark.parametrize("broken, path", [
    (lambda m: m.pop("hardware_info"), "machine.hardware_info"),
    (lambda m: m["interface_set"][1]["links"][0]["subnet"]["vlan"].pop("mtu"), "vlan.mtu"),
    (lambda m: m.update(owner_data={"a": 1}), "machine.owner_data.a"),
])
def test_the_checker_refuses_what_gomaasapi_refuses(broken, path):
    vlan = {"id": 1, "resource_uri": "/v/", "name": "untagged", "fabric": "fabric-0", "vid": 0, "mtu": 1500,
            "dhcp_on": False, "primary_rack": None, "secondary_rack": None}
    subnet = {"resource_uri": "/s/", "id": 1, "name": "s", "space": "undefined", "gateway_ip": None,
              "cidr": "10.0.0.0/24", "vlan": vlan, "dns_servers": []}
    nic = {"resource_uri": "/i/", "id": 1, "name": "eth0", "type": "physical", "enabled": True, "tags": [],
           "vlan": vlan, "links": [{"id": 1, "mode": "static", "ip_address": "10.0.0.2", "subnet": subnet}],
           "mac_address": None, "effective_mtu": 1500, "parents": [], "children": []}
    machine = {"resource_uri": "/m/", "system_id": "x", "hostname": "h", "fqdn": "h.maas", "tag_names": [],
               "owner_data": {}, "osystem": "", "distro_series": "", "architecture": None, "memory": 1,
               "cpu_count": 1, "hardware_info": {}, "ip_addresses": [], "power_state": "on", "status_name": "Ready",
               "status_message": None, "boot_interface": nic, "interface_set": [nic, nic],
               "zone": {"name": "z", "description": "", "resource_uri": "/z/"}, "pool": None,
               "physicalblockdevice_set": [], "blockdevice_set": []}
    check("machine_2_0", machine, "machine")  # as built, it passes
    broken(machine)
    with pytest.raises(AssertionError, match=re.escape(path)):
        check("machine_2_0", machine, "machine")
