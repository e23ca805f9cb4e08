"""The machine services against the real schema, without daemons (a fake rack gateway)."""

from __future__ import annotations

import pytest
import pytest_twisted

from common import hosterrors
from region.db import events
from region.db.pool import run_sync
from region.services import errors, machines, vmhosts
from region.services.lookups import CHOICE
from region.services.machines import MachineChanges, MachineQuery
from region.services.vmhosts import HostFields
from tests.fixtures.fake_racks import FakeRackGateway, discovered_host, discovered_vm
from tests.fixtures.services import service_region  # noqa: F401  (fixture)


@pytest.fixture
def svc(service_region):  # noqa: F811  (the fixture above)
    service_region.hosts = FakeRackGateway(found=discovered_host(discovered_vm("vm1"), discovered_vm("vm2")),
                                           db=service_region.db)
    return service_region


async def add_host(ctx) -> None:
    """A host whose discovery imports machines vm1 and vm2."""
    await vmhosts.create_host(ctx, HostFields(
        type="lxd", power_address="10.0.0.1:8443", name="lxd1", project="default", zone=None, pool=None,
        tags=None, cpu_over_commit_ratio=None, memory_over_commit_ratio=None, default_macvlan_mode=None,
        default_storage_pool=None, certificate="CERT", key="KEY", password=None))


def system_id(listed: machines.MachineViews, hostname: str) -> str:
    return next(v.machine.system_id for v in listed.machines if v.machine.hostname == hostname)


@pytest_twisted.ensureDeferred
async def test_update_checks_zone_pool_and_hostname(svc):
    ctx = svc.as_user("admin")
    await add_host(ctx)
    listed = await machines.list_machines(ctx, MachineQuery())
    vm1 = system_id(listed, "vm1")
    with pytest.raises(errors.FieldError) as e:
        await machines.update_machine(ctx, vm1, MachineChanges(zone="mars"))
    assert (e.value.field, e.value.message) == ("zone", CHOICE)
    with pytest.raises(errors.FieldError) as e:
        await machines.update_machine(ctx, vm1, MachineChanges(hostname="vm2"))
    assert (e.value.field, e.value.message) == ("hostname", 'Node with hostname "vm2" already exists.')
    with pytest.raises(errors.NotFound):
        await machines.update_machine(ctx, "nosuch", MachineChanges(hostname="x"))

    updated = (await machines.update_machine(ctx, vm1, MachineChanges(hostname="web", pool="default"))).machines[0]
    assert (updated.machine.hostname, updated.pool.is_default, updated.host.name) == ("web", True, "lxd1")
    assert [v.machine.hostname for v in (await machines.list_machines(
        ctx, MachineQuery(hostnames=("web", "vm9")))).machines] == ["web"]
    assert (await machines.list_machines(ctx, MachineQuery(zone="lab"))).machines == []


@pytest_twisted.ensureDeferred
async def test_power_is_recorded_and_a_failure_is_unavailable(svc):
    ctx = svc.as_user("admin")
    await add_host(ctx)
    vm1 = system_id(await machines.list_machines(ctx, MachineQuery()), "vm1")
    view = (await machines.set_power(ctx, vm1, on=True)).machines[0]
    assert view.machine.power_state == "on"
    assert ("power on", "vm1") in svc.hosts.jobs
    powered = [(e.type, e.username, e.description) for e in
               run_sync(svc.dsn, events.list_thd, object_type="machine")]
    assert powered == [("MACHINE_POWER", "admin", "power on: vm1 is on")]

    svc.hosts.power_state = hosterrors.Unreachable("host down")
    with pytest.raises(errors.Unavailable, match="Power query of vm1 failed: host down"):
        await machines.query_power(ctx, vm1)
    assert (await machines.get_machine(ctx, vm1)).machines[0].machine.power_state == "error"
