"""Who sees what (issue 11 item 5): a non-admin sees unowned machines and their own, never
another user's (404 for reads, absent from lists), and not how a VM host is reached.

Service tests use the real schema with a fake rack gateway; the HTTP test runs a real region
with two non-admin users and an admin, the machines inserted through region/db.
"""

from __future__ import annotations

import pytest
import pytest_twisted

from region.db import allocations, hosts, machines, named, reservations, tags, users
from region.db.pool import run_sync
from region.services import errors, machines as machine_service, tags as tag_service, vmhost_ops
from region.services.context import Context
from region.services.machines import MachineQuery
from tests.conftest import make_user, region_box
from tests.fixtures.http import Api
from tests.fixtures.services import service_region  # noqa: F401  (fixture)
from tests.test_services_machines import add_host, svc  # noqa: F401  (fixture)

HOST_CONNECTION = ("power_address", "project", "server_fingerprint", "state_message")


def allocate_thd(cur, hostname: str, owner_id: int, agent_name: str, owner_data: dict[str, str]) -> str:
    """Give the machine called `hostname` to `owner_id` as op=allocate and set_owner_data would."""
    m = machines.list_thd(cur, MachineQuery(hostnames=(hostname,)))[0]
    assert allocations.claim_thd(cur, m.id, owner_id, agent_name)
    allocations.update_owner_data_thd(cur, m.id, owner_data)
    machines.update_thd(cur, m.id, {"tags": ["gpu"]})
    return m.system_id


def hostnames(views) -> list[str]:
    return [v.machine.hostname for v in views.machines]


@pytest_twisted.ensureDeferred
async def test_services_hide_other_users_machines(svc):  # noqa: F811
    admin = Context(svc, svc.user("admin", admin=True))
    alice, bob = Context(svc, svc.user("alice")), Context(svc, svc.user("bob"))
    await add_host(admin)
    run_sync(svc.dsn, tags.create_thd, "gpu")
    vm1 = run_sync(svc.dsn, allocate_thd, "vm1", alice.actor.id, "model-a", {"juju": "alice's"})

    assert hostnames(await machine_service.list_machines(bob, MachineQuery())) == ["vm2"]
    assert hostnames(await machine_service.list_machines(bob, MachineQuery(agent_name="model-a"))) == []
    assert hostnames(await machine_service.list_machines(bob, MachineQuery(system_ids=(vm1,)))) == []
    assert hostnames(await tag_service.tagged_machines(bob, "gpu")) == []
    for read in (machine_service.get_machine, machine_service.query_power):
        with pytest.raises(errors.NotFound):
            await read(bob, vm1)
    assert ("power query", "vm1") not in svc.hosts.jobs, "nothing is asked of the host for an unseen machine"
    host_id = (await machine_service.list_machines(admin, MachineQuery())).machines[0].host.id
    resources = await vmhost_ops.resources(bob, host_id)
    assert [m.hostname for m in resources.visible_vms] == ["vm2"]
    assert sorted(m.hostname for m in resources.vms) == ["vm1", "vm2"], "usage still counts every VM"

    for owner_or_admin in (alice, admin):
        listed = await machine_service.list_machines(owner_or_admin, MachineQuery(agent_name="model-a"))
        assert [(v.machine.hostname, v.owner, v.allocation.owner_data) for v in listed.machines] == [
            ("vm1", "alice", {"juju": "alice's"})]
        assert hostnames(await machine_service.get_machine(owner_or_admin, vm1)) == ["vm1"]
        assert hostnames(await tag_service.tagged_machines(owner_or_admin, "gpu")) == ["vm1"]
    assert await machine_service.query_power(alice, vm1) == "on"


@pytest.fixture
def shared_region(region, dsn):
    """A region holding a VM host with alice's allocated machine and an unowned one."""
    box = region_box(region)
    apis = {name: Api(region.api, make_user(dsn, box, name, admin=name == "admin"))
            for name in ("admin", "alice", "bob")}

    def populate_thd(cur):
        zone, pool = named.get_default_thd(cur, named.ZONES), named.get_default_thd(cur, named.RESOURCE_POOLS)
        host = hosts.create_thd(cur, box, hosts.NewHost("lxd1", "lxd", "10.0.0.1:8443", "vmyard", "CERT", "KEY",
                                                        zone.id, pool.id, [], 1.0, 1.0, None))
        tags.create_thd(cur, "gpu")
        for hostname in ("alice-vm", "free-vm"):
            reservations.reserve_thd(cur, machines.NewMachine(
                hostname, host.id, "vmyard", "amd64/generic", 1, 1024**3, [], False, [], zone.id, pool.id, None,
                False, [], [], []))
            cur.execute("UPDATE machines SET status = 'ready' WHERE hostname = %s", (hostname,))
        alice = users.get_user_thd(cur, "alice")
        return host.id, allocate_thd(cur, "alice-vm", alice.id, "model-a", {"juju": "alice's"})

    host_id, alice_vm = run_sync(dsn, populate_thd)
    return apis, host_id, alice_vm


def test_http_non_admins_see_unowned_and_their_own_machines(shared_region):
    apis, host_id, alice_vm = shared_region
    admin, alice, bob = apis["admin"], apis["alice"], apis["bob"]

    assert bob.get(f"machines/{alice_vm}/").status == 404
    assert bob.get(f"machines/{alice_vm}/", query={"op": "query_power_state"}).status == 404
    assert [m["hostname"] for m in bob.get("machines/").json()] == ["free-vm"]
    assert bob.get("machines/", query={"agent_name": "model-a"}).json() == []
    assert bob.get("machines/", query={"id": alice_vm}).json() == []
    assert bob.get("tags/gpu/", query={"op": "machines"}).json() == []
    for op in ("set_owner_data", "release", "deploy", "power_on", "power_off"):
        refused = bob.post(f"machines/{alice_vm}/", data={"op": op, "juju": "bob's"})
        assert refused.status == 403, f"{op} on someone else's machine is refused as MAAS refuses it"
    assert bob.post("machines/", data={"op": "release", "machines": alice_vm}).status == 403
    numa_vms = bob.get(f"vm-hosts/{host_id}/", query={"op": "resources"}).json()["vms"]
    assert [v["hostname"] for v in numa_vms] == ["free-vm"]

    for owner_or_admin in (alice, admin):
        mine = owner_or_admin.get(f"machines/{alice_vm}/").json()
        assert (mine["owner"], mine["owner_data"]) == ("alice", {"juju": "alice's"})
        assert [m["system_id"] for m in owner_or_admin.get("machines/", query={"agent_name": "model-a"}).json()] \
            == [alice_vm]


def test_http_host_connection_fields_are_for_admins(shared_region):
    apis, host_id, _ = shared_region
    for name in ("alice", "bob"):
        for path in (f"vm-hosts/{host_id}/", f"pods/{host_id}/"):
            shown = apis[name].get(path).json()
            assert not set(HOST_CONNECTION) & set(shown), f"{name} sees {path} connection fields"
            assert shown["name"] == "lxd1" and "total" in shown
        assert not set(HOST_CONNECTION) & set(apis[name].get("vm-hosts/").json()[0])
        assert apis[name].get(f"vm-hosts/{host_id}/", query={"op": "parameters"}).status == 403
    full = apis["admin"].get(f"vm-hosts/{host_id}/").json()
    assert (full["power_address"], full["project"]) == ("10.0.0.1:8443", "vmyard")
    assert set(HOST_CONNECTION) <= set(full)
