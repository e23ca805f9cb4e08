"""Compose and decompose end to end: real region + rack, real PostgreSQL, real private LXD."""

from __future__ import annotations

import signal
import subprocess

import pytest

from region.services import faults
from tests.conftest import make_user, region_box
from tests.fixtures.daemons import wait_for
from tests.fixtures.http import Api
from tests.fixtures.lxd import BridgesUnavailable, lxc_json, lxc_missing, unique, unmanaged_bridges
from tests.test_vmhosts_lxd import add_trusted_host, sql

GB = 1000**3


@pytest.fixture
def bridges():
    """Two unmanaged Linux bridges, removed afterwards."""
    try:
        with unmanaged_bridges(2) as names:
            yield names
    except BridgesUnavailable as e:
        pytest.skip(f"cannot create an unmanaged bridge here: {e}")


@pytest.fixture
def second_pool(lxd_server):
    name = unique("fast")
    lxd_server.lxc("storage", "create", name, "dir")
    try:
        yield name
    finally:
        subprocess.run(["lxc", "storage", "delete", name], env=lxd_server._env, capture_output=True)


@pytest.fixture
def lab(lxd_api, lxd_server, bridges, second_pool):
    """A ready host with two pools and two bridges linked to two subnets in two spaces."""
    api = lxd_api
    host = add_trusted_host(api, lxd_server)
    hid = host["id"]
    assert api.post("spaces/", data={"name": "storage"}).status == 200
    assert api.post("spaces/", data={"name": "dmz"}).status == 200
    untagged = api.get("fabrics/0/vlans/0/").json()
    assert api.put("fabrics/0/vlans/0/", data={"space": "storage"}).status == 200
    v30 = api.post("fabrics/0/vlans/", data={"vid": "30", "space": "dmz"}).json()
    assert api.post("subnets/", data={"cidr": "10.20.0.0/24", "vlan": untagged["id"]}).status == 200
    assert api.post("subnets/", data={"cidr": "10.30.0.0/24", "vlan": v30["id"], "gateway_ip": "10.30.0.1"}).status == 200
    refreshed = api.post(f"vm-hosts/{hid}/", data={"op": "refresh"})
    assert refreshed.status == 200, refreshed.text
    for bridge, vlan in zip(bridges, (untagged["id"], v30["id"])):
        reply = api.put(f"vm-hosts/{hid}/interfaces/{bridge}/", data={"vlan": vlan})
        assert reply.status == 200, reply.text
    return api, api.get(f"vm-hosts/{hid}/").json()


def test_compose_two_disks_two_nics_static_ip_pinned_then_decompose_frees_everything(lab, lxd_server, bridges,
                                                                                    second_pool, dsn):
    api, host = lab
    hid, project = host["id"], host["project"]
    before = host["used"]
    reply = api.post(f"vm-hosts/{hid}/", data={
        "op": "compose", "hostname": "db1", "cores": "1", "pinned_cores": "0", "memory": "1024",
        "storage": f"root:2({second_pool}),data:1(default)",
        "interfaces": "eth0:space=storage;eth1:subnet=10.30.0.0/24,ip=10.30.0.50"})
    assert reply.status == 200, reply.text
    system_id = reply.json()["system_id"]
    assert reply.json()["resource_uri"] == f"/MAAS/api/2.0/machines/{system_id}/"

    instance = lxc_json(lxd_server, f"/1.0/instances/db1?project={project}")
    assert instance["config"]["limits.cpu"] == "0-0"
    assert instance["config"]["limits.memory"] == str(1024 * 2**20)
    devices = instance["devices"]
    assert devices["root"]["pool"] == second_pool and devices["root"]["size"] == str(2 * GB)
    data_disk = next(d for n, d in devices.items() if d["type"] == "disk" and n != "root")
    assert data_disk["pool"] == "default"
    volume = lxc_json(lxd_server, f"/1.0/storage-pools/default/volumes/custom/{data_disk['source']}?project={project}")
    assert volume["config"]["size"] == str(GB)
    assert {(d["name"], d["nictype"], d["parent"]) for d in devices.values() if d["type"] == "nic"} == \
        {("eth0", "bridged", bridges[0]), ("eth1", "bridged", bridges[1])}

    machine = api.get(f"machines/{system_id}/").json()
    assert machine["status_name"] == "Ready" and machine["pod"]["id"] == hid
    assert machine["cpu_count"] == 1 and machine["memory"] == 1024 and machine["pinned_cores"] == [0]
    assert machine["ip_addresses"] == ["10.30.0.50"]
    assert [d["size"] for d in machine["blockdevice_set"]] == [2 * GB, GB]
    eth1 = next(n for n in machine["interface_set"] if n["name"] == "eth1")
    assert eth1["mac_address"] == instance["devices"]["eth1"]["hwaddr"]  # vmyard chose it and LXD uses it

    used = api.get(f"vm-hosts/{hid}/").json()["used"]
    assert used == {"cores": before["cores"] + 1, "memory": before["memory"] + 1024,
                    "local_storage": before["local_storage"] + 3 * GB}
    resources = api.get(f"vm-hosts/{hid}/", query={"op": "resources"}).json()
    node0 = next(n for n in resources["numa"] if 0 in n["cores"]["ids"])
    assert 0 in node0["cores"]["pinned"] and system_id in [v["system_id"] for v in node0["vms"]]
    assert node0["cores"]["allocated"] >= 1 and 0 not in node0["cores"]["free"]
    assert {(n["name"], n["host_interface"]) for n in machine["numa_alignment"]["nics"]} == \
        {("eth0", bridges[0]), ("eth1", bridges[1])}

    # The static IP is taken: a second VM asking for it is refused and nothing is created.
    clash = api.post(f"vm-hosts/{hid}/", data={"op": "compose", "hostname": "db2", "storage": "root:1",
                                               "interfaces": "eth0:ip=10.30.0.50"})
    assert clash.status == 400 and "ip" in clash.json(), clash.text
    assert lxc_missing(lxd_server, f"/1.0/instances/db2?project={project}")
    # The pinned core is taken too.
    again = api.post(f"vm-hosts/{hid}/", data={"op": "compose", "pinned_cores": "0", "storage": "root:1"})
    assert again.status == 409 and "core(s) 0 already pinned" in again.text
    # No hugepages on this host: refused with the reason.
    huge = api.post(f"vm-hosts/{hid}/", data={"op": "compose", "hugepages_backed": "true", "storage": "root:1"})
    assert huge.status == 409 and "hugepages" in huge.text

    # The subnet cannot be deleted under the machine's feet.
    subnet_id = next(sn["id"] for sn in api.get("subnets/").json() if sn["cidr"] == "10.30.0.0/24")
    refused = api.delete(f"subnets/{subnet_id}/")
    assert refused.status == 400 and "10.30.0.50 (db1)" in refused.text

    assert api.delete(f"machines/{system_id}/").status == 204
    assert lxc_missing(lxd_server, f"/1.0/instances/db1?project={project}")
    assert lxc_missing(lxd_server, f"/1.0/storage-pools/default/volumes/custom/{data_disk['source']}?project={project}")
    assert api.get(f"vm-hosts/{hid}/").json()["used"] == before
    assert sql(dsn, "SELECT count(*) FROM static_ips")[0][0] == 0
    # Everything it held is free again: the same IP and core can be had.
    reply = api.post(f"vm-hosts/{hid}/", data={"op": "compose", "hostname": "db3", "pinned_cores": "0",
                                               "storage": "root:1", "interfaces": "eth0:ip=10.30.0.50"})
    assert reply.status == 200, reply.text
    assert api.delete(f"machines/{reply.json()['system_id']}/").status == 204


def test_refusals_explain_what_falls_short(lxd_api, lxd_server):
    api = lxd_api
    host = add_trusted_host(api, lxd_server, cpu_over_commit_ratio="0.5")
    cores = host["total"]["cores"]  # within what the host has, beyond what half of it leaves
    reply = api.post(f"vm-hosts/{host['id']}/", data={"op": "compose", "cores": str(cores), "storage": "root:1"})
    assert reply.status == 409
    assert f"needs {cores} cores, host has {cores * 0.5:g} free of {cores}×0.5" in reply.text
    assert "NUMA node 0 has" in reply.text
    assert "retry-after" not in reply.headers  # Juju/Terraform must not retry a no-fit
    bad = api.post(f"vm-hosts/{host['id']}/", data={"op": "compose", "storage": "root:1,oops", "memory": "12",
                                                    "interfaces": "eth0"})
    assert bad.status == 400 and {"storage", "memory", "interfaces"} <= set(bad.json())
    assert api.get("machines/").json() == []


def test_power_is_reported_honestly(lxd_api, lxd_server):
    api = lxd_api
    host = add_trusted_host(api, lxd_server)
    made = api.post(f"vm-hosts/{host['id']}/", data={"op": "compose", "storage": "root:1"}).json()
    sid = made["system_id"]
    assert api.get(f"machines/{sid}/", query={"op": "query_power_state"}).json() == {"state": "off"}
    on = api.post(f"machines/{sid}/", data={"op": "power_on"})
    # VMs cannot start on the test machines: the reason LXD gives reaches the user.
    assert on.status == 503 and "Power on of" in on.text and "forklimits" in on.text, on.text
    assert api.get(f"machines/{sid}/", query={"op": "query_power_state"}).json() == {"state": "off"}
    off = api.post(f"machines/{sid}/", data={"op": "power_off"})
    assert off.status == 200 and off.json()["power_state"] == "off"
    assert api.delete(f"machines/{sid}/").status == 204


# Where the region dies (VMYARD_FAULT_COMPOSE) → whether the VM outlives it.
KILL_STEPS = ((faults.AFTER_RESERVE, False), (faults.AFTER_RACK_CREATED, True), (faults.AFTER_RECORD, True))


def test_a_compose_killed_midway_leaves_record_and_vm_both_or_neither(start_region, lxd_server, dsn):
    """The region kills itself at each named step of a compose; after a restart and a refresh
    the record and the VM exist both (the VM ready) or neither, and no volume is left over."""
    project = unique("kill")
    refresh_off = ["--vm-host-refresh-interval", "0"]
    host, apikey = None, None
    for attempt, (step, vm_survives) in enumerate(KILL_STEPS):
        region = start_region("killme", local_rack=True, extra=refresh_off, env={"VMYARD_FAULT_COMPOSE": step})
        api = Api(region.api, apikey or make_user(dsn, region_box(region), "admin", admin=True))
        apikey = api.apikey
        wait_for(lambda: any(r["status"] == "connected" for r in api.get("rackcontrollers/").json()), 30,
                 "the local rack to connect", region.proc, region.log)
        host = host or add_trusted_host(api, lxd_server, project=project)
        name = f"k{attempt}"
        with pytest.raises(OSError):  # the region dies under the call
            api.post(f"vm-hosts/{host['id']}/", data={"op": "compose", "hostname": name, "storage": "root:1,extra:1"})
        assert region.proc.wait(30) == -signal.SIGKILL, step
        region = start_region("killme", local_rack=True, extra=refresh_off)
        refreshed = Api(region.api, apikey).post(f"vm-hosts/{host['id']}/", data={"op": "refresh"})
        assert refreshed.status == 200, refreshed.text
        records = {r[0]: r[1] for r in sql(dsn, "SELECT instance_name, status FROM machines WHERE host_id = %s",
                                          host["id"])}
        instances = {i["name"] for i in lxc_json(lxd_server, f"/1.0/instances?recursion=1&project={project}")}
        # The killed region is gone, so its reservation is settled at once: both or neither.
        assert (name in instances, records.get(name)) == ((True, "ready") if vm_survives else (False, None)), step
        region.stop()
    volumes = lxc_json(lxd_server, f"/1.0/storage-pools/default/volumes?recursion=1&project={project}")
    custom = [v["name"] for v in volumes if v["type"] == "custom"]
    assert len(custom) == sum(survives for _, survives in KILL_STEPS), custom


def test_drift_in_lxd_is_repaired_by_a_refresh(lxd_api, lxd_server):
    """A VM changed or removed behind vmyard's back: the next refresh brings the records
    (and so the accounting) back in line with the host."""
    api = lxd_api
    host = add_trusted_host(api, lxd_server)
    sid = api.post(f"vm-hosts/{host['id']}/", data={"op": "compose", "hostname": "drift", "cores": "1",
                                                     "storage": "root:1"}).json()["system_id"]
    project = host["project"]
    lxd_server.lxc("config", "set", "drift", "limits.cpu=2", "limits.memory=3GiB", "--project", project)
    assert api.post(f"vm-hosts/{host['id']}/", data={"op": "refresh"}).status == 200
    machine = api.get(f"machines/{sid}/").json()
    assert (machine["cpu_count"], machine["memory"]) == (2, 3072)
    used = api.get(f"vm-hosts/{host['id']}/").json()["used"]
    assert (used["cores"], used["memory"]) == (2, 3072)
    lxd_server.lxc("delete", "drift", "--project", project)
    assert api.post(f"vm-hosts/{host['id']}/", data={"op": "refresh"}).status == 200
    assert api.get(f"machines/{sid}/").status == 404
    assert api.get(f"vm-hosts/{host['id']}/").json()["used"]["cores"] == 0
