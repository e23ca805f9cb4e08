"""machines/?op=allocate|release|deploy|set_owner_data: pure rules, then end to end against real LXD."""

from __future__ import annotations

import datetime

import pytest

from region import placement
from region.db import hosts, machines
from region.db.network_models import Space, Subnet
from region.netconstraints import parse_interfaces
from region.services import allocate_match
from region.services.compose_request import StorageAsk
from tests.conftest import make_user, region_box
from tests.fixtures.http import Api
from tests.test_compose_lxd import bridges, lab, second_pool  # noqa: F401  (fixtures)
from tests.test_vmhosts_lxd import lxc_json

GB = 1000**3
MIB = 1024**2


# -- pure rules -------------------------------------------------------------------------------

def _machine(**kw) -> machines.Machine:
    base = dict(id=1, system_id="abc", hostname="m1", host_id=1, project="p", instance_name="m1", origin="composed",
                dynamic=False, status="ready", power_state="off", architecture="amd64/generic", cpu_count=2,
                pinned_cores=[], memory=2048 * MIB, hugepages_backed=False, numa_nodes=[], tags=["virtual"],
                zone_id=1, pool_id=1, owner_id=None, created=datetime.datetime.now(),
                disks=[machines.MachineDisk(10, "root", 8 * GB, "default"), machines.MachineDisk(11, "data", 4 * GB, "fast")],
                interfaces=[machines.MachineNic(20, "eth0", "00:16:3e:00:00:01", "bridge", "br0", 0, True),
                            machines.MachineNic(21, "eth1", "00:16:3e:00:00:02", "bridge", "br1", 0, False)])
    base.update(kw)
    return machines.Machine(**base)


def _host(**kw) -> hosts.VMHost:
    base = dict(id=1, name="h1", type="lxd", power_address="127.0.0.1:8443", project="p", state="ready",
                state_message="", certificate=None, server_fingerprint=None, version="5.0",
                architectures=["amd64/generic"], capabilities=["composable"], tags=["pod-console-logging"], cores=8,
                cpu_speed=0, memory=16 * 1024 * MIB, zone_id=1, pool_id=1, cpu_over_commit_ratio=1.0,
                memory_over_commit_ratio=1.0, default_storage_pool=None, default_macvlan_mode=None,
                last_refresh=None)
    base.update(kw)
    return hosts.VMHost(**base)


class _Iface:
    def __init__(self, id, name, space, cidr):
        self.id, self.name, self.type, self.tags, self.link_speed, self.sriov_max_vfs = id, name, "bridge", [], 0, 0
        self.vlan = self.fabric = None
        self.space = Space(id, space, "") if space else None
        self.subnets = [Subnet(id, cidr, cidr, 1, None, [], "", True, True, True)]


IFACES = {"br0": _Iface(1, "br0", "storage", "10.20.0.0/24"), "br1": _Iface(2, "br1", "dmz", "10.30.0.0/24")}


def _match(c: allocate_match.Constraints, **kw):
    return allocate_match.match_machine(_machine(**kw), c, host=_host(), zone="default", pool="default",
                                  host_ifaces=IFACES)


def test_a_ready_machine_matches_labels_to_its_own_disks_and_nics():
    c = allocate_match.Constraints(cpu_count=2, mem=1024, tags=("virtual",), arch=("amd64",),
                             storage=(StorageAsk("root", 8 * GB), StorageAsk("fast1", GB, ("fast",))),
                             interfaces=tuple(parse_interfaces("a:space=dmz;b:space=storage")))
    match, why = _match(c)
    assert why == "" and match.as_json() == {"interfaces": {"a": [21], "b": [20]},
                                             "storage": {"root": [10], "fast1": [11]}}
    for bad, reason in [(allocate_match.Constraints(cpu_count=3), "2 cores < 3"),
                        (allocate_match.Constraints(zone="z2"), "in zone default"),
                        (allocate_match.Constraints(pod="other"), "on VM host h1"),
                        (allocate_match.Constraints(not_tags=("virtual",)), "excluded tag"),
                        (allocate_match.Constraints(storage=(StorageAsk("root", 9 * GB),)), "storage"),
                        (allocate_match.Constraints(interfaces=tuple(parse_interfaces("a:space=dmz;b:space=dmz"))),
                         "interfaces"),
                        (allocate_match.Constraints(networks={"not_subnets": ("space:dmz",)}), "not_subnets=space:dmz")]:
        match, why = _match(bad)
        assert match is None and reason in why, (bad, why)
    assert _match(allocate_match.Constraints(networks={"subnets": ("ip:10.20.0.7", "cidr:10.30.0.0/24")}))[0]


def test_labels_get_distinct_nics_without_trying_every_order():
    """Backtracking over choices was exponential: 11 labels for 10 fitting NICs tried 10! orders."""
    nics = [machines.MachineNic(30 + i, f"eth{i}", f"00:16:3e:00:01:{i:02x}", "bridge", "br0", 0, False)
            for i in range(10)]
    every = allocate_match.Constraints(interfaces=tuple(parse_interfaces(_storage_labels(10))))
    match, why = _match(every, interfaces=nics)
    assert why == "" and sorted(n for [n] in match.interfaces.values()) == [n.id for n in nics]
    match, why = _match(allocate_match.Constraints(interfaces=tuple(parse_interfaces(_storage_labels(11)))),
                        interfaces=nics)
    assert match is None and "interfaces" in why
    # A label that could take either NIC gives way to one that can take only the NIC it held.
    either = allocate_match.Constraints(interfaces=tuple(parse_interfaces("a:not_space=nowhere;b:space=storage")))
    assert _match(either)[0].interfaces == {"a": [21], "b": [20]}


def _storage_labels(n: int) -> str:
    return ";".join(f"l{i}:space=storage" for i in range(n))


def test_hosts_are_filtered_then_packed_or_spread():
    c = allocate_match.Constraints(zone="z", tags=("gpu",))
    assert allocate_match.host_filter_reason(c, _host(), "other", "default") == "in zone other, not z; lacks tags gpu"
    assert allocate_match.host_filter_reason(allocate_match.Constraints(arch=("arm64",)), _host(), "z", "p").startswith(
        "has no arm64 architecture")
    opts = [allocate_match.HostOption(1, "big", None, free_memory=30 * GB, free_cores=10),
            allocate_match.HostOption(2, "small", None, free_memory=1 * GB, free_cores=1),
            allocate_match.HostOption(3, "full", "needs 2 cores")]
    assert [o.name for o in allocate_match.rank(opts)] == ["small", "big"]
    assert [o.name for o in allocate_match.rank(opts, "spread")] == ["big", "small"]
    capacity = placement.HostCapacity("h", cores=4, memory=8 * GB, cpu_ratio=2.0, memory_ratio=1.0)
    assert allocate_match.free_after(capacity, [placement.Allocation(cores=2, memory=GB)],
                               placement.Request(cores=1, memory=GB)) == (6 * GB, 5)
    ask = allocate_match.compose_ask(allocate_match.Constraints(cpu_count=1.5, mem=1024, arch=("amd64",)), _host())
    assert (ask.cores, ask.memory, ask.architecture, [s.label for s in ask.storage]) == (2, 1024 * MIB,
                                                                                        "amd64/generic", ["root"])


# -- end to end -------------------------------------------------------------------------------

@pytest.fixture
def users_api(lxd_region, dsn):
    box = region_box(lxd_region)
    return (Api(lxd_region.api, make_user(dsn, box, "alice", admin=False)),
            Api(lxd_region.api, make_user(dsn, box, "bob", admin=False)))


def _instances(lxd_server, project: str) -> set[str]:
    return {i["name"] for i in lxc_json(lxd_server, f"/1.0/instances?recursion=1&project={project}")}


def _ids(machine: dict, key: str) -> set[int]:
    return {x["id"] for x in machine[key]}


def test_allocate_composes_on_demand_and_release_decomposes(lab, users_api, lxd_server, bridges):
    admin, (alice, bob) = lab[0], users_api
    host = lab[1]
    project = host["project"]
    reply = alice.post("machines/", data={"op": "allocate", "cpu_count": "1", "mem": "1024", "storage": "root:1",
                                          "agent_name": "model-1", "comment": "juju", "bridge_all": "true"})
    assert reply.status == 200, reply.text
    first = reply.json()
    assert first["status_name"] == "Allocated" and first["owner"] == "alice" and first["dynamic"] is True
    assert first["cpu_count"] == 1 and first["memory"] == 1024 and first["pod"]["id"] == host["id"]
    assert first["constraints_by_type"]["interfaces"] == {}
    assert first["constraints_by_type"]["storage"]["root"][0] in _ids(first, "blockdevice_set")
    assert first["instance_name"] in _instances(lxd_server, project)

    listed = alice.get("machines/", query={"agent_name": "model-1", "id": first["system_id"]}).json()
    assert [m["system_id"] for m in listed] == [first["system_id"]]
    assert alice.get("machines/", query={"agent_name": "model-2"}).json() == []

    dmz = admin.get("spaces/dmz/").json()["id"]
    reply = alice.post("machines/", data={"op": "allocate", "mem": "1024", "storage": "root:1",
                                          "interfaces": f"0:space={dmz}"})
    assert reply.status == 200, reply.text
    second = reply.json()
    eth0 = next(n for n in second["interface_set"] if n["name"] == "eth0")
    assert second["constraints_by_type"]["interfaces"] == {"0": [eth0["id"]]}
    assert eth0["attach_name"] == bridges[1] and eth0["vlan"]["vid"] == 30
    devices = lxc_json(lxd_server, f"/1.0/instances/{second['instance_name']}?project={project}")["devices"]
    assert devices["eth0"]["parent"] == bridges[1]

    # Owner data: only the owner (or an admin) sets it; an empty value deletes a key.
    sid = second["system_id"]
    assert alice.post(f"machines/{sid}/", data={"op": "set_owner_data", "juju-model": "m", "x": "1"}).json()[
        "owner_data"] == {"juju-model": "m", "x": "1"}
    assert alice.post(f"machines/{sid}/", data={"op": "set_owner_data", "x": ""}).json()["owner_data"] == {
        "juju-model": "m"}
    assert bob.post(f"machines/{sid}/", data={"op": "set_owner_data", "y": "2"}).status == 403

    # Someone else's machines cannot be released, nor deployed.
    assert bob.post("machines/", data={"op": "release", "machines": sid}).status == 403
    assert bob.post(f"machines/{sid}/", data={"op": "release"}).status == 403
    assert bob.post(f"machines/{sid}/", data={"op": "deploy"}).status == 403
    assert alice.post("machines/", data={"op": "release", "machines": "nosuch"}).status == 400

    released = alice.post("machines/", data={"op": "release", "machines": [first["system_id"], sid]})
    assert released.status == 200 and sorted(released.json()) == sorted([first["system_id"], sid])
    assert _instances(lxd_server, project) == set()
    assert admin.get("machines/").json() == []
    assert admin.get(f"vm-hosts/{host['id']}/").json()["used"] == host["used"]


def test_a_ready_machine_is_preferred_and_goes_back_to_ready(lab, users_api, lxd_server):
    admin, (alice, bob) = lab[0], users_api
    host = lab[1]
    made = admin.post(f"vm-hosts/{host['id']}/", data={"op": "compose", "hostname": "pre1", "cores": "1",
                                                       "memory": "1024", "storage": "root:2"})
    assert made.status == 200, made.text
    sid = made.json()["system_id"]
    before = _instances(lxd_server, host["project"])

    dry = alice.post("machines/", data={"op": "allocate", "cpu_count": "1", "storage": "root:1", "dry_run": "true"})
    assert dry.status == 200 and dry.json()["system_id"] == sid and dry.json()["status_name"] == "Ready"
    reply = alice.post("machines/", data={"op": "allocate", "cpu_count": "1", "mem": "1024", "storage": "root:1"})
    assert reply.status == 200, reply.text
    got = reply.json()
    assert got["system_id"] == sid and got["status_name"] == "Allocated" and got["owner"] == "alice"
    assert got["constraints_by_type"]["storage"] == {"root": [got["blockdevice_set"][0]["id"]]}
    assert _instances(lxd_server, host["project"]) == before  # nothing composed

    taken = bob.post("machines/", data={"op": "allocate", "system_id": sid})
    assert taken.status == 409 and "not available" in taken.text and "retry-after" not in taken.headers

    # No image of that series: deploy says so and the machine stays Allocated.
    deploy = alice.post(f"machines/{sid}/", data={"op": "deploy", "distro_series": "jammy", "user_data": "I2Nsb3Vk"})
    assert deploy.status == 400 and "'jammy'" in deploy.json()["distro_series"][0], deploy.text
    assert alice.get(f"machines/{sid}/").json()["status_name"] == "Allocated"

    released = alice.post(f"machines/{sid}/", data={"op": "release"})
    assert released.status == 200, released.text
    back = released.json()
    assert back["status_name"] == "Ready" and back["owner"] is None and back["owner_data"] == {}
    assert _instances(lxd_server, host["project"]) == before  # not decomposed
    assert admin.delete(f"machines/{sid}/").status == 204


def test_zone_pool_and_pod_filters(lab, users_api):
    admin, (alice, _) = lab[0], users_api
    host = lab[1]
    assert admin.post("zones/", data={"name": "z2"}).status == 200
    assert admin.post("resourcepools/", data={"name": "p2"}).status == 200
    small = {"op": "allocate", "mem": "1024", "storage": "root:1"}

    for extra, text in [({"zone": "z2"}, "in zone default, not z2"), ({"pool": "p2"}, "in pool default, not p2"),
                        ({"pod": "elsewhere"}, "not elsewhere"), ({"not_pod": host["name"]}, "excluded by not_pod"),
                        ({"not_pod_type": "lxd"}, "of excluded type lxd"), ({"tags": "gpu"}, "lacks tags gpu"),
                        ({"not_in_zone": "default"}, "in excluded zone default")]:
        reply = alice.post("machines/", data={**small, **extra})
        assert reply.status == 409 and f"VM host {host['name']}: {text}" in reply.text, (extra, reply.text)
    assert alice.post("machines/", data={**small, "zone": "nosuch"}).status == 400
    assert alice.post("machines/", data={**small, "frobnicate": "1"}).status == 400

    dry = alice.post("machines/", data={**small, "pod": host["name"], "pod_type": "lxd", "dry_run": "true"})
    assert dry.status == 409 and f"would compose a VM on VM host {host['name']}" in dry.text
    assert admin.get("machines/").json() == []

    assert admin.put(f"vm-hosts/{host['id']}/", data={"pool": "p2", "zone": "z2"}).status == 200
    reply = alice.post("machines/", data={**small, "pool": "p2", "zone": "z2", "pod": host["name"]})
    assert reply.status == 200, reply.text
    got = reply.json()
    assert got["pool"]["name"] == "p2" and got["zone"]["name"] == "z2"
    assert alice.post(f"machines/{got['system_id']}/", data={"op": "release"}).status == 200
    assert admin.get("machines/").json() == []


def test_impossible_constraints_are_409_naming_host_and_shortfall(lab, users_api):
    _, (alice, _) = lab[0], users_api
    host = lab[1]
    cores = host["total"]["cores"]
    reply = alice.post("machines/", data={"op": "allocate", "cpu_count": str(cores + 5), "storage": "root:1"})
    assert reply.status == 409 and "retry-after" not in reply.headers
    assert f"VM host {host['name']}: needs {cores + 5} cores" in reply.text, reply.text
    reply = alice.post("machines/", data={"op": "allocate", "storage": "root:1", "interfaces": "0:space=nowhere"})
    assert reply.status == 409 and host["name"] in reply.text and "does not match the specified networks" in reply.text
    reply = alice.post("machines/", data={"op": "allocate", "storage": "root:100000"})
    assert reply.status == 409 and "disk 0 needs" in reply.text
    assert alice.post("machines/", data={"op": "allocate", "storage": "root:x"}).status == 400
    assert lab[0].get("machines/").json() == []
