"""LXD containers as machines (issue 12), end to end: real region, rack, PostgreSQL and private LXD.

Containers start on the test machines (VMs do not): a composed container is empty until it is
deployed, so the power cycle gives it a tiny root filesystem first (tests/fixtures/tiny_rootfs.py).
"""

from __future__ import annotations

import json

import pytest

from region.services.allocate_match import Constraints
from region.services.compose_request import ComposeFields, validate
from region.services.errors import InvalidInput
from tests.fixtures.lxd import lxc_json, lxc_missing, unique
from tests.fixtures.tiny_rootfs import give_root_filesystem, import_image
from tests.test_cli_compose import columns
from tests.test_cli_vmhosts import ok, vmyard  # noqa: F401 (vmyard is a fixture)
from tests.test_lxd_compose import bridge  # noqa: F401 (a fixture)
from tests.test_vmhosts_lxd import add_trusted_host

GB = 1000**3
MIB = 1024**2


def _instance(lxd_server, project: str, name: str) -> dict:
    return lxc_json(lxd_server, f"/1.0/instances/{name}?project={project}")


def _used(api, host_id: int) -> dict:
    return api.get(f"vm-hosts/{host_id}/").json()["used"]


# -- fast: the rules that differ for containers ---------------------------------------------------

def test_compose_fields_take_an_instance_type():
    assert validate(ComposeFields(), []).instance_type == "virtual-machine"
    assert validate(ComposeFields(instance_type="container", pinned_cores=("0",)), []).instance_type == "container"
    with pytest.raises(InvalidInput) as e:
        validate(ComposeFields(instance_type="container", hugepages_backed="true"), [])
    assert list(e.value.errors) == ["hugepages_backed"]
    assert "LXD containers cannot have hugepage-backed memory" in e.value.errors["hugepages_backed"][0]
    with pytest.raises(InvalidInput) as e:
        validate(ComposeFields(instance_type="vm"), [])
    assert list(e.value.errors) == ["instance_type"]


def test_allocate_wants_a_vm_unless_told_or_a_machine_is_named():
    assert Constraints().wanted_type == "virtual-machine"
    assert Constraints(instance_type="container").wanted_type == "container"
    assert Constraints(system_id="abc").wanted_type is None
    assert Constraints(name="box", instance_type="virtual-machine").wanted_type == "virtual-machine"


# -- real LXD --------------------------------------------------------------------------------------

def test_a_container_is_composed_counted_powered_and_decomposed_like_a_vm(lxd_api, lxd_server, bridge, vmyard):
    api = lxd_api
    # Room for a few 2-core machines on a 2-core test machine.
    host = add_trusted_host(api, lxd_server, cpu_over_commit_ratio="10", memory_over_commit_ratio="10")
    hid, project = host["id"], host["project"]
    before = _used(api, hid)
    shape = {"cores": "2", "memory": "1024", "storage": "root:2,data:1", "interfaces": f"eth0:name={bridge}"}

    reply = api.post(f"vm-hosts/{hid}/", data={"op": "compose", "instance_type": "container", "hostname": "box1",
                                               **shape})
    assert reply.status == 200, reply.text
    sid = reply.json()["system_id"]

    instance = _instance(lxd_server, project, "box1")
    assert (instance["type"], instance["status"]) == ("container", "Stopped")
    assert {k: v for k, v in instance["config"].items() if k.startswith(("limits.", "security."))} == \
        {"limits.cpu": "2", "limits.memory": str(1024 * MIB)}
    devices = instance["devices"]
    assert devices["root"] == {"path": "/", "type": "disk", "pool": "default", "size": str(2 * GB)}
    data = devices["disk1"]
    assert (data["path"], data["pool"]) == ("/mnt/data", "default")
    volume = lxc_json(lxd_server, f"/1.0/storage-pools/default/volumes/custom/{data['source']}?project={project}")
    assert (volume["content_type"], volume["config"]["size"]) == ("filesystem", str(GB))
    assert (devices["eth0"]["nictype"], devices["eth0"]["parent"]) == ("bridged", bridge)

    machine = api.get(f"machines/{sid}/").json()
    assert machine["instance_type"] == "container"
    assert (machine["status_name"], machine["cpu_count"], machine["memory"], machine["power_type"]) == \
        ("Ready", 2, 1024, "lxd")
    assert [d["size"] for d in machine["blockdevice_set"]] == [2 * GB, GB]
    assert machine["interface_set"][0]["mac_address"] == devices["eth0"]["hwaddr"]

    # The host's accounting: the container counts exactly as a VM of the same shape does.
    after_container = _used(api, hid)
    grown = {k: after_container[k] - before[k] for k in before}
    assert grown == {"cores": 2, "memory": 1024, "local_storage": 3 * GB}
    vm = api.post(f"vm-hosts/{hid}/", data={"op": "compose", "hostname": "vm1", **shape})
    assert vm.status == 200, vm.text
    assert {k: _used(api, hid)[k] - after_container[k] for k in before} == grown
    assert api.get(f"machines/{vm.json()['system_id']}/").json()["instance_type"] == "virtual-machine"

    # Listings show the type.
    rows = {r["HOSTNAME"]: r["TYPE"] for r in columns(ok(vmyard("machine", "list")))}
    assert rows == {"box1": "container", "vm1": "VM"}
    out = ok(vmyard("--json", "vm-host", "compose", host["name"], "--instance-type", "container",
                    "--storage", "root:1", "--hostname", "box2"))
    assert json.loads(out)["instance_type"] == "container"
    assert _instance(lxd_server, project, "box2")["type"] == "container"
    assert ok(vmyard("machine", "delete", "box2", "--yes")).strip().endswith(") and its container.")
    assert lxc_missing(lxd_server, f"/1.0/instances/box2?project={project}")

    # Hugepages cannot back a container's memory: a 400 naming the field, nothing made.  Pinning works.
    huge = api.post(f"vm-hosts/{hid}/", data={"op": "compose", "instance_type": "container",
                                              "hugepages_backed": "true", "hostname": "box3", "storage": "root:1"})
    assert huge.status == 400 and list(huge.json()) == ["hugepages_backed"], huge.text
    assert lxc_missing(lxd_server, f"/1.0/instances/box3?project={project}")
    bogus = api.post(f"vm-hosts/{hid}/", data={"op": "compose", "instance_type": "oci", "storage": "root:1"})
    assert bogus.status == 400 and list(bogus.json()) == ["instance_type"], bogus.text
    pinned = api.post(f"vm-hosts/{hid}/", data={"op": "compose", "instance_type": "container", "hostname": "box4",
                                                "pinned_cores": "0", "storage": "root:1"})
    assert pinned.status == 200, pinned.text
    assert _instance(lxd_server, project, "box4")["config"]["limits.cpu"] == "0-0"

    # Power: an empty container cannot start, and says why; with a root filesystem it runs.
    refused = api.post(f"machines/{sid}/", data={"op": "power_on"})
    assert refused.status == 503 and "no root filesystem until it is deployed" in refused.text, refused.text
    give_root_filesystem(lxd_server, project, "box1")
    on = api.post(f"machines/{sid}/", data={"op": "power_on"})
    assert on.status == 200 and on.json()["power_state"] == "on", on.text
    assert _instance(lxd_server, project, "box1")["status"] == "Running"
    assert api.get(f"machines/{sid}/", query={"op": "query_power_state"}).json() == {"state": "on"}
    off = api.post(f"machines/{sid}/", data={"op": "power_off"})
    assert off.status == 200 and off.json()["power_state"] == "off", off.text
    assert _instance(lxd_server, project, "box1")["status"] == "Stopped"

    # Decompose removes the container and its volume; every machine gone frees everything.
    assert api.delete(f"machines/{sid}/").status == 204
    assert lxc_missing(lxd_server, f"/1.0/instances/box1?project={project}")
    assert lxc_missing(lxd_server, f"/1.0/storage-pools/default/volumes/custom/{data['source']}?project={project}")
    for m in api.get("machines/").json():
        assert api.delete(f"machines/{m['system_id']}/").status == 204
    assert _used(api, hid) == before


def test_allocate_takes_or_composes_a_container_only_when_asked(lxd_api, lxd_server):
    api = lxd_api
    host = add_trusted_host(api, lxd_server)
    hid, project = host["id"], host["project"]
    ready = api.post(f"vm-hosts/{hid}/", data={"op": "compose", "instance_type": "container", "hostname": "spare",
                                               "storage": "root:1"}).json()["system_id"]

    # A plain allocate (Juju, Terraform) wants a VM: the Ready container is not it.
    plain = api.post("machines/", data={"op": "allocate", "dry_run": "true"})
    assert plain.status == 409 and "would compose a VM" in plain.text, plain.text
    taken = api.post("machines/", data={"op": "allocate", "instance_type": "container", "dry_run": "true"})
    assert taken.status == 200 and taken.json()["system_id"] == ready, taken.text

    # The Ready one has too few disks: a container is composed on demand, and decomposed on release.
    made = api.post("machines/", data={"op": "allocate", "instance_type": "container", "cpu_count": "1",
                                       "mem": "1536", "storage": "root:2,logs:1"})
    assert made.status == 200, made.text
    machine = made.json()
    assert (machine["instance_type"], machine["dynamic"], machine["status_name"]) == ("container", True, "Allocated")
    assert (machine["cpu_count"], machine["memory"]) == (1, 1536)
    assert machine["constraints_by_type"]["storage"] == {"root": [machine["blockdevice_set"][0]["id"]],
                                                         "logs": [machine["blockdevice_set"][1]["id"]]}
    instance = _instance(lxd_server, project, machine["hostname"])
    assert instance["type"] == "container" and instance["devices"]["disk1"]["path"] == "/mnt/logs"

    bad = api.post("machines/", data={"op": "allocate", "instance_type": "lxc"})
    assert bad.status == 400 and list(bad.json()) == ["instance_type"], bad.text

    released = api.post(f"machines/{machine['system_id']}/", data={"op": "release"})
    assert released.status == 200, released.text
    assert lxc_missing(lxd_server, f"/1.0/instances/{machine['hostname']}?project={project}")
    assert [m["system_id"] for m in api.get("machines/").json()] == [ready]


def test_a_refresh_imports_the_projects_containers_without_touching_them(lxd_api, lxd_server):
    api = lxd_api
    host = add_trusted_host(api, lxd_server)
    hid, project = host["id"], host["project"]
    alias = unique("tiny")
    import_image(lxd_server, project, alias)
    lxd_server.lxc("launch", alias, "outside", "--project", project, "-s", "default", "-c", "limits.cpu=1",
                   "-c", "limits.memory=512MiB")
    seen = _instance(lxd_server, project, "outside")
    assert seen["status"] == "Running"

    assert api.post(f"vm-hosts/{hid}/", data={"op": "refresh"}).status == 200
    [machine] = [m for m in api.get("machines/").json() if m["hostname"] == "outside"]
    assert (machine["instance_type"], machine["power_state"], machine["cpu_count"], machine["memory"]) == \
        ("container", "on", 1, 512)
    after = _instance(lxd_server, project, "outside")
    assert (after["config"], after["devices"], after["status"]) == (seen["config"], seen["devices"], "Running")
    assert _used(api, hid)["cores"] == 1

    off = api.post(f"machines/{machine['system_id']}/", data={"op": "power_off"})
    assert off.status == 200 and off.json()["power_state"] == "off", off.text
    assert api.delete(f"machines/{machine['system_id']}/").status == 204
    assert lxc_missing(lxd_server, f"/1.0/instances/outside?project={project}")
