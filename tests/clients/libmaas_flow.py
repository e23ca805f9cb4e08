"""Drive a vmyard region with python-libmaas 0.6.8 and print what it saw as one JSON object.

Runs inside the test virtualenv (see tests/test_libmaas.py), not in the
vmyard environment:

    python libmaas_flow.py compose  URL APIKEY LXD_ADDRESS TRUST_PASSWORD NAME PROJECT
    python libmaas_flow.py teardown URL APIKEY POD_ID SYSTEM_ID
    python libmaas_flow.py login    URL USERNAME PASSWORD

The pods flow is split in two so the test can look at the real VM in LXD
between composing it and deleting it.

Nothing here prints repr(pod): libmaas raises on MAAS-faithful nulls there.
"""

from __future__ import annotations

import json
import sys

from maas.client import connect, login
from maas.client.bones import CallError


def machine_facts(machine) -> dict:
    return {
        "system_id": machine.system_id,
        "hostname": machine.hostname,
        "fqdn": machine.fqdn,
        "cpus": machine.cpus,
        "memory": machine.memory,
        "status": machine.status.name,
        "status_name": machine.status_name,
        "power_state": machine.power_state.value,
        "architecture": machine.architecture,
        "zone": machine.zone.name,
        "pool": machine.pool.name,
        "tags": sorted(t.name for t in machine.tags),
        "instance_name": machine._data["instance_name"],  # vmyard's own field, to find the VM in LXD
    }


def pod_facts(pod) -> dict:
    return {
        "id": pod.id,
        "name": pod.name,
        "type": pod.type,
        "architectures": pod.architectures,
        "capabilities": pod.capabilities,
        "zone": pod.zone.name,
        "tags": list(pod.tags),
        "cpu_over_commit_ratio": pod.cpu_over_commit_ratio,
        "memory_over_commit_ratio": pod.memory_over_commit_ratio,
        "total": pod.total,
        "used": pod.used,
        "available": pod.available,
        # libmaas 0.6.8 has no accessor for storage pools; they are in the object's data.
        "storage_pools": [{k: p[k] for k in ("name", "type", "path", "total", "used", "available", "default")}
                          for p in pod._data["storage_pools"]],
    }


def compose_flow(url: str, apikey: str, address: str, trust_password: str, name: str, project: str) -> dict:
    client = connect(url, apikey=apikey)
    out: dict = {}
    # libmaas 0.6.8's Pods.create() only takes the virsh/rsd power_user/power_pass, not LXD's
    # project and trust password, so send them through the same bound handler it uses.
    origin = client._origin
    pod = origin.Pod(origin.Pods._handler.create(type="lxd", power_address=address, name=name,
                                                 project=project, password=trust_password))
    out["created"] = pod_facts(pod)
    out["listed"] = [p.id for p in client.pods.list()]

    refreshed = pod.refresh()  # the raw reply; it does not update `pod`
    out["refreshed"] = {"id": refreshed["id"], "name": refreshed["name"]}
    pod = client.pods.get(pod.id)
    out["read"] = pod_facts(pod)

    # Not the over-commit ratios: the Pod field only takes a float and libmaas 0.6.8's
    # multipart encoder rejects floats ("'cpu_over_commit_ratio' is unrecognised: 2.0").
    pod.name = name + "-renamed"
    pod.tags = [*pod.tags, "from-libmaas"]
    pod.save()  # PUT name, then op=add_tag
    out["saved"] = pod_facts(client.pods.get(pod.id))
    out["parameter_keys"] = sorted(pod.parameters())

    composed = pod.compose(cores=1, memory=1024, storage="root:1")
    out["composed"] = composed
    system_id = composed["system_id"]
    out["machines_listed"] = [m.system_id for m in client.machines.list()]
    out["machine"] = machine_facts(client.machines.get(system_id))

    tag = client.tags.create("libmaas-tag", comment="made by libmaas")
    client.machines.get(system_id).tags.add(tag)  # op=update_nodes add=<system_id>
    out["tagged_machine"] = machine_facts(client.machines.get(system_id))
    out["tags_listed"] = sorted(t.name for t in client.tags.list())
    client.tags.get("libmaas-tag").delete()
    out["untagged_machine"] = machine_facts(client.machines.get(system_id))
    return out


def teardown_flow(url: str, apikey: str, pod_id: str, system_id: str) -> dict:
    client = connect(url, apikey=apikey)
    out: dict = {}
    client.machines.get(system_id).delete()
    out["machines_after_delete"] = [m.system_id for m in client.machines.list()]
    try:
        client.machines.get(system_id)
        out["deleted_machine_status"] = 200
    except CallError as e:
        out["deleted_machine_status"] = e.response.status
    client.pods.get(int(pod_id)).delete()
    out["pods_after_delete"] = [p.id for p in client.pods.list()]
    return out


def login_flow(url: str, username: str, password: str) -> dict:
    client = login(url, username=username, password=password)
    me = client.users.whoami()
    version = client.version.get()
    return {
        "username": me.username,
        "is_admin": me.is_admin,
        "version": version.version,
        "version_info": list(version.version_info),
        "capabilities": sorted(version.capabilities),
        "zones": sorted(z.name for z in client.zones.list()),
    }


def main(argv: list[str]) -> None:
    flows = {"compose": compose_flow, "teardown": teardown_flow, "login": login_flow}
    if not argv or argv[0] not in flows:
        sys.exit(f"usage: libmaas_flow.py {{{','.join(flows)}}} ARGS…")
    print(json.dumps(flows[argv[0]](*argv[1:])))


if __name__ == "__main__":
    main(sys.argv[1:])
