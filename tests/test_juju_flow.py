"""Juju's MAAS provider, replayed as raw signed HTTP against a real region, rack and LXD.

The order and parameters are Juju's (juju/juju internal/provider/maas/environ.go, constraints.go)
and gomaasapi's (juju/gomaasapi controller.go, machine.go), cited at each step.  The deploy is
real: a container composed by an admin is allocated by Juju's placement (`system-id=`), deployed
from the Debian image with Juju's gzip+base64 user data, and reports Deployed over cloud-init's
webhook.
"""

from __future__ import annotations

import base64
import gzip

from tests.conftest import make_user, region_box
from tests.fixtures.flows import IMAGE, FixedDelay, UnexpectedState, compose_container, prepare_host_for_deploys
from tests.fixtures.http import Api
from tests.fixtures.lxd import lxc_json, lxc_missing
from tests.test_compose_lxd import bridges, lab, second_pool  # noqa: F401  (fixtures)
from tests.test_deploy_e2e import run_in

MODEL_UUID = "5b9d6f1c-1e0b-4a55-8c4b-6a1f0e3f2b77"
CONTROLLER_UUID = "0c2b4f2e-9a4d-4f1a-9f53-2f1d7b4c8e10"
# Juju's user data (MAASRenderer in userdata.go): a cloud-config, gzipped, then base64.
CLOUD_CONFIG = b"#cloud-config\nruncmd:\n  - [sh, -c, 'echo juju-was-here > /var/tmp/juju-machine']\n"
# gomaasapi machine.go machine_2_0: the fields it reads on every machine, and their JSON types.
GOMAASAPI_MACHINE = {
    "resource_uri": str, "system_id": str, "hostname": str, "fqdn": str, "tag_names": list, "owner_data": dict,
    "osystem": str, "distro_series": str, "architecture": str, "memory": int, "cpu_count": int,
    "hardware_info": dict, "ip_addresses": list, "power_state": str, "status_name": str, "status_message": str,
    "boot_interface": dict, "interface_set": list, "zone": dict, "pool": dict,
    "physicalblockdevice_set": list, "blockdevice_set": list,
}


def juju_api(region, dsn: str) -> Api:
    return Api(region.api, make_user(dsn, region_box(region), "juju", admin=False))


def check_gomaasapi_machine(m: dict) -> None:
    wrong = {f: type(m.get(f)).__name__ for f, kind in GOMAASAPI_MACHINE.items() if not isinstance(m.get(f), kind)}
    assert not wrong, wrong
    assert all(isinstance(v, str) for v in m["owner_data"].values()) and all(isinstance(t, str) for t in m["tag_names"])
    for nic in m["interface_set"]:
        for link in nic["links"]:  # gomaasapi link.go link_2_0, subnet.go subnet_2_0, vlan.go vlan_2_0
            assert isinstance(link["id"], int) and isinstance(link["mode"], str), link
            subnet = link.get("subnet")
            if subnet is not None:
                assert {"id", "cidr", "space", "vlan", "gateway_ip", "dns_servers", "resource_uri"} <= set(subnet)
                assert {"id", "vid", "mtu"} <= set(subnet["vlan"]), subnet["vlan"]


def juju_status(machine: dict) -> str:
    """maas2instance.go Status: Deployed → running, Deploying → allocating, Failed deployment → an error."""
    return {"Deployed": "running", "Deploying": "allocating",
            "Failed deployment": "provisioning error"}.get(machine["status_name"], "pending")


def test_juju_bootstrap_flow_deploys_a_container_for_real(lab, lxd_server, lxd_region, dsn, bridges):
    admin, host = lab
    prepare_host_for_deploys(admin, lxd_server, lxd_region, host)
    dmz = admin.get("spaces/dmz/").json()["id"]
    storage_space = admin.get("spaces/storage/").json()["id"]
    sid = compose_container(admin, host, "juju-0", "eth0:subnet=10.30.0.0/24,ip=10.30.0.61",
                            storage="root:3,data:1(default)")
    assert admin.post("tags/", data={"name": "juju-ok"}).status in (200, 201)
    assert admin.post("tags/juju-ok/", data={"op": "update_nodes", "add": sid}).status == 200
    juju = juju_api(lxd_region, dsn)

    # Connect: environ.go getCapabilities (GET version/, capabilities a list of strings), then
    # gomaasapi controller.go NewController → checkCreds (GET users/?op=whoami; 401 = bad credentials).
    version = juju.get("version/").json()
    assert isinstance(version["capabilities"], list) and all(isinstance(c, str) for c in version["capabilities"])
    assert isinstance(version["version"], str) and isinstance(version["subversion"], str)
    assert "network-deployment-ubuntu" in version["capabilities"]  # else "MAAS 1.9 or more recent is required"
    assert juju.get("users/", query={"op": "whoami"}).json()["username"] == "juju"
    assert Api(lxd_region.api, "a:b:c").get("users/", query={"op": "whoami"}).status == 401

    # constraints.go ConstraintsValidator → environ.go getSupportedArchitectures: GET boot-resources/,
    # each architecture up to its first "/" (gomaasapi bootresource.go needs these fields).
    resources = juju.get("boot-resources/").json()
    for r in resources:
        assert {"resource_uri", "id", "name", "type", "architecture"} <= set(r) and isinstance(r["subarches"], str)
    assert sorted({r["architecture"].split("/")[0] for r in resources}) == ["amd64"]

    # environ.go Spaces (GET spaces/), AvailabilityZones (GET zones/), Domains (GET domains/).
    spaces = {s["name"]: s["id"] for s in juju.get("spaces/").json()}
    assert spaces["dmz"] == dmz and spaces["storage"] == storage_space
    assert "default" in [z["name"] for z in juju.get("zones/").json()]
    domains = juju.get("domains/").json()
    assert [d["name"] for d in domains if d["id"] == 0] == ["maas"]

    # environ.go StartInstance → acquireNode → gomaasapi controller.go AllocateMachine: Juju's whole
    # parameter set (convertConstraints, addInterfaces labels by space id, addStorage, agent_name =
    # the model UUID; placement system-id= sets system_id).
    allocated = juju.post("machines/", data={
        "op": "allocate", "system_id": sid, "arch": "amd64", "cpu_count": "1", "mem": "1024",
        "tags": "juju-ok", "not_tags": "broken", "storage": "root:3,0:1(default)",
        "interfaces": f"{dmz}:space={dmz}", "not_subnets": f"space:{storage_space}", "zone": "default",
        "pool": "default", "agent_name": MODEL_UUID, "comment": "juju bootstrap"})
    assert allocated.status == 200, allocated.text
    machine = allocated.json()
    check_gomaasapi_machine(machine)
    assert machine["system_id"] == sid and machine["status_name"] == "Allocated"
    nic = machine["constraints_by_type"]["interfaces"][str(dmz)]
    assert nic == [machine["interface_set"][0]["id"]]
    disks = machine["constraints_by_type"]["storage"]
    assert disks["root"] == [machine["blockdevice_set"][0]["id"]] and disks["0"] == [machine["blockdevice_set"][1]["id"]]
    # The same parameters that cannot be met are a 409 (gomaasapi NoMatchError), never a 400.
    assert juju.post("machines/", data={"op": "allocate", "system_id": sid, "agent_name": MODEL_UUID}).status == 409

    # StartInstance → gomaasapi machine.go Start: op=deploy with distro_series (an image-id
    # constraint's value: environ.go distroSeries) and Juju's gzip+base64 user data.
    user_data = base64.b64encode(gzip.compress(CLOUD_CONFIG)).decode()
    started = juju.post(f"machines/{sid}/", data={"op": "deploy", "distro_series": IMAGE, "user_data": user_data})
    assert started.status == 200, started.text
    check_gomaasapi_machine(started.json())
    assert juju_status(started.json()) == "allocating"
    # Then Domains (GET domains/) and tagInstance → SetOwnerData (op=set_owner_data, Juju's tags).
    assert juju.get("domains/").status == 200
    tags = {"juju-model-uuid": MODEL_UUID, "juju-controller-uuid": CONTROLLER_UUID, "juju-is-controller": "true",
            "juju-machine-id": "0"}
    tagged = juju.post(f"machines/{sid}/", data={"op": "set_owner_data", **tags})
    assert tagged.status == 200 and tagged.json()["owner_data"] == tags, tagged.text

    # Bootstrap → waitForNodeDeployment: getInstance → acquiredInstances → gomaasapi Machines
    # (GET machines/?agent_name=…&id=…) every 10 s (defaultLongRetryStrategy) for up to 1200 s;
    # Failed deployment is fatal (NotProvisioned).
    seen: list[str] = []

    def deployed() -> dict | None:
        (found,) = juju.get("machines/", query={"agent_name": MODEL_UUID, "id": sid}).json()
        seen.append(found["status_name"])
        if juju_status(found) == "provisioning error":
            raise UnexpectedState(f"instance {sid} failed to deploy: {found['status_message']}")
        return found if juju_status(found) == "running" else None

    final = FixedDelay(delay=10, max_duration=1200).until(deployed)
    check_gomaasapi_machine(final)
    assert set(seen) <= {"Deploying", "Deployed"}, seen
    assert final["osystem"] and final["distro_series"] == IMAGE and final["owner_data"] == tags
    # ControllerInstances: the machines whose owner data says controller (gomaasapi filters itself).
    listed = juju.get("machines/", query={"agent_name": MODEL_UUID}).json()
    assert [m["system_id"] for m in listed if m["owner_data"].get("juju-is-controller") == "true"] == [sid]
    # gomaasapi MachinesArgs also filters by tags (every one) and domain.
    tagged = juju.get("machines/", query={"tags": "juju-ok", "domain": "maas", "agent_name": MODEL_UUID}).json()
    assert [m["system_id"] for m in tagged] == [sid]
    assert juju.get("machines/", query={"tags": ["juju-ok", "nosuch"]}).json() == []
    # maasNetworkInterfaces reads addresses from interface_set[].links[] with whole subnets.
    (link,) = final["interface_set"][0]["links"]
    assert link["ip_address"] == "10.30.0.61" and link["subnet"]["cidr"] == "10.30.0.0/24"
    assert link["subnet"]["space"] == "dmz" and link["subnet"]["vlan"]["vid"] == 30
    assert "10.30.0.61" in final["ip_addresses"]
    # Juju's cloud-config really ran in the container.
    project, name = host["project"], final["instance_name"]
    assert run_in(lxd_server, project, name, "cat", "/var/tmp/juju-machine").stdout == "juju-was-here\n"
    assert juju.get("machines/", query={"agent_name": "another-model", "id": sid}).json() == []

    # StopInstances → releaseNodes → gomaasapi ReleaseMachines (POST machines/?op=release).
    released = juju.post("machines/", data={"op": "release", "machines": sid,
                                            "comment": "Released by Juju MAAS provider"})
    assert released.status == 200, released.text
    after = admin.get(f"machines/{sid}/").json()
    assert after["status_name"] == "Ready" and after["owner_data"] == {} and after["owner"] is None
    # The model no longer lists it (acquiredInstances: Machines by id and agent name).
    assert juju.get("machines/", query={"agent_name": MODEL_UUID, "id": sid}).json() == []
    erased = lxc_json(lxd_server, f"/1.0/instances/{name}?project={project}")
    assert not [k for k in erased["config"] if k.startswith("cloud-init.")]


def test_juju_virtual_machine_flow_composes_allocates_and_deletes(lab, lxd_server, lxd_region, dsn, bridges):
    admin, host = lab
    juju = Api(lxd_region.api, admin.apikey)  # composing on a VM host is an admin's right in MAAS
    project = host["project"]

    # virt-type=virtual-machine (juju PR #22285, gomaasapi PR #106): GET pods/, pick a host.
    pods = juju.get("pods/").json()
    (pod,) = [p for p in pods if p["id"] == host["id"]]
    assert pod["type"] == "lxd" and pod["resource_uri"] == f"/MAAS/api/2.0/pods/{pod['id']}/"
    dmz = juju.get("spaces/dmz/").json()["id"]

    # POST pods/{id}/?op=compose with hostname, cores, memory, storage, interfaces, zone, pool;
    # the reply carries system_id.
    composed = juju.post(f"pods/{pod['id']}/", data={
        "op": "compose", "hostname": "juju-vm-1", "cores": "1", "memory": "1024", "storage": "root:2",
        "interfaces": f"{dmz}:space={dmz}", "zone": "default", "pool": "default"})
    assert composed.status == 200, composed.text
    sid = composed.json()["system_id"]

    # Wait for Ready, polling the machine as Juju's long retry does (every 10 s).
    def ready() -> dict | None:
        (found,) = juju.get("machines/", query={"id": sid}).json()
        return found if found["status_name"] == "Ready" else None

    machine = FixedDelay(delay=10, max_duration=1200).until(ready)
    check_gomaasapi_machine(machine)
    # Juju reads a machine's pod and power_type to know it is a VM it composed.
    assert machine["pod"] == {"id": pod["id"], "name": pod["name"], "resource_uri": pod["resource_uri"]}
    assert machine["power_type"] == "lxd"
    assert lxc_json(lxd_server, f"/1.0/instances/juju-vm-1?project={project}")["type"] == "virtual-machine"

    # Allocate it by system_id with the model's agent name, then tag it as Juju's own VM.
    allocated = juju.post("machines/", data={"op": "allocate", "system_id": sid, "agent_name": MODEL_UUID,
                                             "interfaces": f"{dmz}:space={dmz}"})
    assert allocated.status == 200, allocated.text
    assert allocated.json()["constraints_by_type"]["interfaces"][str(dmz)] == [
        allocated.json()["interface_set"][0]["id"]]
    assert juju.post(f"machines/{sid}/", data={"op": "set_owner_data", "juju-composed-vm": "true"}).status == 200

    # Later: DELETE machines/{id}/ for the VMs it tagged in owner data.
    owned = juju.get("machines/", query={"agent_name": MODEL_UUID}).json()
    assert [m["system_id"] for m in owned if m["owner_data"].get("juju-composed-vm") == "true"] == [sid]
    gone = juju.delete(f"machines/{sid}/")
    assert gone.status == 204, gone.text
    assert juju.get(f"machines/{sid}/").status == 404
    assert lxc_missing(lxd_server, f"/1.0/instances/juju-vm-1?project={project}")

    # Without a machine to match, allocate composes one.  A volume without a root-disk constraint:
    # Juju sends root:0 (volumes.go buildMAASVolumeParameters), a root of any size, composed at 8 GB.
    composed = juju.post("machines/", data={"op": "allocate", "agent_name": MODEL_UUID, "mem": "1024",
                                            "storage": "root:0,0:1(default)", "interfaces": f"{dmz}:space={dmz}"})
    assert composed.status == 200, composed.text
    root, volume = composed.json()["blockdevice_set"]
    assert (root["size"], volume["size"]) == (8 * 1000**3, 1000**3)
    assert composed.json()["constraints_by_type"]["storage"] == {"root": [root["id"]], "0": [volume["id"]]}
    released = juju.post("machines/", data={"op": "release", "machines": composed.json()["system_id"]})
    assert released.status == 200, released.text
    assert juju.get("machines/").json() == []  # a VM composed by allocate goes with its release
