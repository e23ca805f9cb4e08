"""terraform-provider-maas's whole resource life cycles, replayed as the requests it sends
(gomaasclient/gomaasapi on the wire: tests/test_terraform_shapes.py GoClient) against a real
region, rack and LXD, with the provider's own polling (tests/fixtures/flows.StateChangeConf).

Sources (canonical/terraform-provider-maas): maas/resource_maas_vm_host.go,
maas/resource_maas_vm_host_machine.go, maas/resource_maas_instance.go, and the
`waitForMachineStatus` helper they share (10 s delay, 3 s minimum interval, a status outside
the pending and target lists is an error).  maas_instance's deploy is real: a container deployed
from the Debian image reports Deployed over cloud-init's webhook.
"""

from __future__ import annotations

import base64

from common import tls
from tests.conftest import make_user, region_box
from tests.fixtures.flows import (IMAGE, StateChangeConf, UnexpectedState, compose_container, machine_status,
                                  prepare_host_for_deploys)
from tests.fixtures.lxd import lxc_json, lxc_missing, unique
from tests.test_compose_lxd import bridges, lab, second_pool  # noqa: F401  (fixtures)
from tests.test_deploy_e2e import run_in
from tests.test_terraform_shapes import GoClient, _json, check_machine, check_pod

USER_DATA = "#cloud-config\nruncmd:\n  - [sh, -c, 'echo terraform-was-here > /var/tmp/tf-instance']\n"


def test_terraform_vm_host_then_vm_host_machine_as_one_sequence(lxd_region, dsn, lxd_server, bridges):
    tf = GoClient(lxd_region.api, make_user(dsn, region_box(lxd_region), "terraform", admin=True))
    # maas_zone / maas_resource_pool first, as a plan with dependencies applies them.
    assert _json(tf.post("zones/", "", {"name": "tf-zone"}))["name"] == "tf-zone"
    assert _json(tf.post("resourcepools/", "", {"name": "tf-pool"}))["name"] == "tf-pool"

    # maas_vm_host create (resourceVMHostCreate, the power_address form): the user's own certificate
    # and key, which LXD already trusts, and a project of its own.
    pair = tls.make_self_signed("terraform", kind="ec")
    lxd_server.trust_add(pair.cert_pem, unique("tf-cert"))
    name, project = unique("tfhost"), unique("tfproj")
    params = {"type": "lxd", "power_address": lxd_server.address, "name": name, "zone": "tf-zone",
              "pool": "tf-pool", "tags": "terraform,lab", "cpu_over_commit_ratio": "2",
              "memory_over_commit_ratio": "1.5", "project": project, "certificate": pair.cert_pem,
              "key": pair.key_pem}
    created = _json(tf.post("pods/", "", params))
    check_pod(created)
    pid = created["id"]
    try:
        assert created["state"] == "ready", created["state_message"]
        assert (created["zone"]["name"], created["pool"]["name"]) == ("tf-zone", "tf-pool")
        # It reads back what it wrote (resourceVMHostRead): GET pods/{id}/ and its parameters.
        pod = _json(tf.get(f"pods/{pid}/"))
        check_pod(pod)
        assert (pod["cpu_over_commit_ratio"], pod["memory_over_commit_ratio"]) == (2.0, 1.5)
        assert {"terraform", "lab"} <= set(pod["tags"]) and pod["project"] == project
        assert _json(tf.get(f"pods/{pid}/", op="parameters"))["power_address"] == lxd_server.address
        # The key never comes back; the certificate's fingerprint is the one the user gave.
        assert "key" not in pod and pair.key_pem not in tf.get(f"pods/{pid}/").text

        # maas_vm_host update (resourceVMHostUpdate): PUT pods/{id}/ with every field again.
        params.update(cpu_over_commit_ratio="3", tags="terraform,lab,updated")
        updated = _json(tf.put(f"pods/{pid}/", params))
        check_pod(updated)
        assert updated["cpu_over_commit_ratio"] == 3.0 and "updated" in updated["tags"]
        assert updated["state"] == "ready", updated["state_message"]

        # Networks for the machine's interface (set up through the API, not by these resources).
        vlan = _json(tf.post("fabrics/0/vlans/", "", {"vid": "30"}))
        assert tf.put(f"vm-hosts/{pid}/interfaces/{bridges[1]}/", {"vlan": str(vlan["id"])}).status == 200
        assert tf.post("subnets/", "", {"cidr": "10.30.0.0/24", "vlan": str(vlan["id"])}).status == 200

        # maas_vm_host_machine create (resourceVMHostMachineCreate): compose with the provider's
        # storage ("disk<i>:<GB>(pool)") and interfaces ("name:vlan=…,subnet_cidr=…,ip=…") forms;
        # pinned_cores 0 is left out (omitempty).
        made = _json(tf.post(f"pods/{pid}/", "compose", {
            "hostname": "tfm1", "cores": "1", "memory": "1024", "storage": "disk0:2(default)",
            "interfaces": f"eth0:vlan={vlan['id']},subnet_cidr=10.30.0.0/24,ip=10.30.0.62"}))
        sid = made["system_id"]
        # waitForMachineStatus(Commissioning, Testing → Ready, the create timeout of 30 min).
        machine, seen = StateChangeConf(("Commissioning", "Testing"), ("Ready",)).wait(machine_status(tf, sid))
        check_machine(machine)
        assert seen == ["Ready"] and machine["ip_addresses"] == ["10.30.0.62"]
        instance = lxc_json(lxd_server, f"/1.0/instances/tfm1?project={project}")
        assert instance["config"]["limits.cpu"] == "1" and instance["devices"]["eth0"]["parent"] == bridges[1]

        # Then resourceVMHostMachineUpdate: PUT machines/{id}/ (hostname, domain, zone, pool), and
        # resourceVMHostMachineRead reads those four back.
        put = _json(tf.put(f"machines/{sid}/", {"hostname": "tfm2", "domain": "maas", "zone": "tf-zone",
                                                 "pool": "tf-pool"}))
        check_machine(put)
        read = _json(tf.get(f"machines/{sid}/"))
        assert (read["hostname"], read["domain"]["name"], read["zone"]["name"], read["pool"]["name"]) \
            == ("tfm2", "maas", "tf-zone", "tf-pool")
        assert read["fqdn"] == "tfm2.maas"

        # resourceVMHostMachineDelete: DELETE machines/{id}/ (the VM goes from LXD).
        gone = tf.delete(f"machines/{sid}/")
        assert gone.status == 204 and gone.body == b""
        assert tf.get(f"machines/{sid}/").status == 404
        assert lxc_missing(lxd_server, f"/1.0/instances/tfm1?project={project}")
    finally:
        deleted = tf.delete(f"pods/{pid}/")  # maas_vm_host destroy
    assert deleted.status == 204, deleted.text
    assert tf.get(f"pods/{pid}/").status == 404


def test_terraform_state_wait_fails_on_a_status_outside_its_lists(lab):
    """The provider's wait is strict: an Allocated machine while waiting Deploying → Deployed is
    an error at once, not a timeout."""
    admin, host = lab
    made = admin.post(f"vm-hosts/{host['id']}/", data={"op": "compose", "cores": "1", "memory": "1024",
                                                        "storage": "root:2"})
    assert made.status == 200, made.text
    sid = made.json()["system_id"]
    assert admin.post("machines/", data={"op": "allocate", "system_id": sid}).status == 200
    try:
        StateChangeConf(("Deploying",), ("Deployed",)).wait(machine_status(admin, sid))
    except UnexpectedState as e:
        assert "'Allocated'" in str(e)
    else:
        raise AssertionError("an Allocated machine passed a wait for Deploying → Deployed")
    assert admin.delete(f"machines/{sid}/").status == 204


def interface_named(tf: GoClient, system_id: str, name: str) -> dict:
    """resource_maas_instance.go getNetworkInterface: the machine's interfaces, by name."""
    (nic,) = [n for n in _json(tf.get(f"nodes/{system_id}/interfaces/")) if n["name"] == name]
    return nic


def subnet_by_cidr(tf: GoClient, cidr: str) -> dict:
    """getSubnet: the subnet whose CIDR is the one given."""
    (subnet,) = [s for s in _json(tf.get("subnets/")) if s["cidr"] == cidr]
    return subnet


def test_terraform_maas_instance_links_subnets_deploys_for_real_and_releases(lab, lxd_server, lxd_region, dsn,
                                                                          bridges):
    admin, host = lab
    prepare_host_for_deploys(admin, lxd_server, lxd_region, host)
    composed = compose_container(admin, host, "tf-web", "eth0:space=dmz;eth1:space=storage")
    assert admin.post("tags/", data={"name": "tf"}).status in (200, 201)
    assert admin.post("tags/tf/", data={"op": "update_nodes", "add": composed}).status == 200
    tf = GoClient(lxd_region.api, make_user(dsn, region_box(lxd_region), "terraform", admin=False))

    # resourceInstanceCreate: Machines.Allocate with allocate_params (min_cpu_count, min_memory,
    # hostname, zone, pool, tags).
    machine = _json(tf.post("machines/", "allocate", {"cpu_count": "1", "mem": "1024", "name": "tf-web",
                                                      "zone": "default", "pool": "default", "tags": "tf"}))
    sid = machine["system_id"]
    assert sid == composed and machine["status_name"] == "Allocated"

    # configureInstanceNetworkInterfaces: per network_interfaces block, find the NIC by name, find the
    # subnet by CIDR, disconnect, then link_subnet STATIC (ip_address given) or AUTO.
    for name, cidr, ip in (("eth0", "10.30.0.0/24", "10.30.0.70"), ("eth1", "10.20.0.0/24", "")):
        nic, subnet = interface_named(tf, sid, name), subnet_by_cidr(tf, cidr)
        disconnected = _json(tf.post(f"nodes/{sid}/interfaces/{nic['id']}/", "disconnect", {}))
        assert disconnected["links"] == [], disconnected
        link = {"mode": "STATIC" if ip else "AUTO", "subnet": str(subnet["id"])}
        if ip:
            link["ip_address"] = ip
        linked = _json(tf.post(f"nodes/{sid}/interfaces/{nic['id']}/", "link_subnet", link))
        (shown,) = linked["links"]
        assert shown["mode"] == link["mode"].lower() and shown["subnet"]["id"] == subnet["id"], shown
        if ip:
            assert shown["ip_address"] == ip  # the chosen static IP, before any deploy
    assert "10.30.0.70" in _json(tf.get(f"machines/{sid}/"))["ip_addresses"]

    # Machine.Deploy with deploy_params: distro_series, hwe_kernel, enable_hw_sync, and user_data
    # as base64 of the text (getMachineDeployParams).
    deploying = _json(tf.post(f"machines/{sid}/", "deploy", {
        "distro_series": IMAGE, "hwe_kernel": "ga-22.04", "enable_hw_sync": "true",
        "user_data": base64.b64encode(USER_DATA.encode()).decode()}))
    assert deploying["status_name"] == "Deploying"
    # waitForMachineStatus(Deploying → Deployed): anything else, Failed deployment included, fails it.
    deployed, seen = StateChangeConf(("Deploying",), ("Deployed",)).wait(machine_status(tf, sid))
    assert set(seen) <= {"Deploying", "Deployed"}, seen

    # resourceInstanceRead: fqdn, hostname, zone, pool, tag_names, cpu_count, memory, ip_addresses.
    check_machine(deployed)
    assert (deployed["fqdn"], deployed["hostname"]) == ("tf-web.maas", "tf-web")
    assert (deployed["zone"]["name"], deployed["pool"]["name"]) == ("default", "default")
    assert deployed["tag_names"] == ["tf"] and deployed["cpu_count"] == 1 and deployed["memory"] == 1024
    # AUTO got its address when the deploy started (as in MAAS), STATIC kept the one chosen.
    (auto,) = interface_named(tf, sid, "eth1")["links"]
    assert auto["mode"] == "auto" and auto["ip_address"].startswith("10.20.0."), auto
    assert sorted(deployed["ip_addresses"]) == sorted(["10.30.0.70", auto["ip_address"]])
    project, name = host["project"], deployed["instance_name"]
    assert "10.30.0.70/24" in run_in(lxd_server, project, name, "ip", "-o", "addr", "show", "eth0").stdout
    assert f"{auto['ip_address']}/24" in run_in(lxd_server, project, name, "ip", "-o", "addr", "show", "eth1").stdout
    assert run_in(lxd_server, project, name, "cat", "/var/tmp/tf-instance").stdout == "terraform-was-here\n"

    # resourceInstanceDelete: Machines.Release (machines=<id>, comment), then wait Releasing → Ready.
    released = tf.post("machines/", "release", {"machines": sid, "comment": "Released by Terraform"})
    assert released.status == 200, released.text
    ready, seen = StateChangeConf(("Releasing",), ("Ready",)).wait(machine_status(tf, sid))
    assert ready["owner"] is None and seen[-1] == "Ready"
    erased = lxc_json(lxd_server, f"/1.0/instances/{name}?project={project}")
    assert not [k for k in erased["config"] if k.startswith("cloud-init.")]
