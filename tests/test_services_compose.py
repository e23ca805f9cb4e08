"""The compose, allocate and release services against the real schema, without daemons.

A `FakeRack` stands in for the HostManager: it creates nothing, records what it was
asked, and can fail the way a driver or a lost call does.
"""

from __future__ import annotations

from typing import Any, Callable

import attrs
import pytest
import pytest_twisted

from common import hosterrors
from common.models import ComposeRequest, DiscoveredVM, HostTarget, VMDisk
from region.db import events, hosts, machines
from region.db.pool import run_sync
from region.services import allocate, compose, ownership
from region.services import machines as machines_service
from region.services.allocate_match import Constraints
from region.services.compose_request import ComposeFields
from region.services.errors import Conflict, FieldError, Forbidden, HostNotReady, InvalidInput, Refused
from region.vmhosts import CallLost
from tests.fixtures.services import service_region  # noqa: F401  (fixture)
from tests.test_compose_race import ask, make_ready_host


@attrs.define
class FakeRack:
    """The rack side of a compose: `during` runs while the "VM is being created"."""

    db: Any  # region.db.pool.Database
    fail: Exception | None = None
    during: Callable[[ComposeRequest], None] | None = None
    composed: list[str] = attrs.field(factory=list)
    deleted: list[str] = attrs.field(factory=list)
    root_disk_only: list[bool] = attrs.field(factory=list)  # the hint each delete carried

    def target_thd(self, cur, host: hosts.VMHost) -> HostTarget:
        return HostTarget(host.type, host.power_address, host.project, "cert", "key")

    def target_of(self, host: hosts.VMHost, encrypted_secret: str | None) -> HostTarget:
        return self.target_thd(None, host)

    async def target(self, host_id: int) -> tuple[hosts.VMHost, HostTarget]:
        host = await self.db.run(hosts.get_thd, host_id)
        return host, self.target_thd(None, host)

    async def compose_vm(self, target: HostTarget, request: ComposeRequest) -> DiscoveredVM:
        if self.during is not None:
            self.during(request)
        if self.fail is not None:
            raise self.fail
        self.composed.append(request.instance_name)
        return DiscoveredVM(request.instance_name, target.project, request.architecture, "off", request.cores,
                            request.memory, disks=[VMDisk(d.name, d.size, d.pool) for d in request.disks])

    async def delete_vm(self, target: HostTarget, instance_name: str, root_disk_only: bool = False) -> list[str]:
        self.deleted.append(instance_name)
        self.root_disk_only.append(root_disk_only)
        return []

    async def machine_target(self, system_id: str) -> tuple[machines.Machine, HostTarget]:
        machine = await self.db.run(machines.get_thd, system_id)
        return machine, (await self.target(machine.host_id))[1]


def _status(dsn: str, hostname: str) -> str | None:
    found = [m.status for m in run_sync(dsn, machines.list_thd) if m.hostname == hostname]
    return found[0] if found else None


def _audit(dsn: str) -> list[tuple[str, str | None]]:
    return sorted((e.type, e.username) for e in run_sync(dsn, events.list_thd, object_type="machine"))


@pytest.fixture
def rack(service_region):
    service_region.hosts = FakeRack(service_region.db)
    return service_region.hosts


@pytest_twisted.ensureDeferred
async def test_compose_reserves_then_records_ready_with_an_audit_event(service_region, rack, tmp_path):
    dsn = service_region.dsn
    host_id = make_ready_host(dsn, tmp_path, cores=4, cpu_ratio=1.0)
    rack.during = lambda request: seen.append(_status(dsn, request.instance_name))
    seen: list[str | None] = []
    machine = await compose.compose(service_region.as_user("admin"), str(host_id),
                                    ComposeFields(hostname="web1", cores="2", storage="root:5"))
    assert seen == ["composing"]  # the reservation was committed before the rack was asked
    assert (machine.hostname, machine.status, machine.cpu_count) == ("web1", "ready", 2)
    assert _audit(dsn) == [("MACHINE_COMPOSED", "admin")]


@pytest_twisted.ensureDeferred
async def test_a_delete_tells_the_rack_when_the_vm_has_its_root_disk_only(service_region, rack, tmp_path):
    host_id = make_ready_host(service_region.dsn, tmp_path, cores=4, cpu_ratio=1.0)
    admin = service_region.as_user("admin")
    for hostname, storage in [("one", "root:5"), ("two", "root:5,data:2")]:
        made = await compose.compose(admin, str(host_id), ComposeFields(hostname=hostname, storage=storage))
        await machines_service.delete_machine(admin, made.system_id)
    assert rack.deleted == ["one", "two"] and rack.root_disk_only == [True, False]
    assert _status(service_region.dsn, "one") is None and _status(service_region.dsn, "two") is None


@pytest_twisted.ensureDeferred
async def test_no_room_is_a_conflict_naming_the_shortfall_and_leaves_nothing(service_region, rack, tmp_path):
    host_id = make_ready_host(service_region.dsn, tmp_path, cores=2, cpu_ratio=1.0)
    ctx = service_region.as_user("admin")
    with pytest.raises(Conflict, match=r"VM host race cannot fit this VM: .*needs 3 cores"):
        await compose.compose_on_host(ctx, host_id, ask("big", cores=3))
    assert rack.composed == [] and _status(service_region.dsn, "big") is None


@pytest_twisted.ensureDeferred
async def test_fields_are_checked_against_the_host(service_region, rack, tmp_path):
    host_id = make_ready_host(service_region.dsn, tmp_path, cores=2, cpu_ratio=1.0)
    ctx = service_region.as_user("admin")
    with pytest.raises(InvalidInput) as e:
        await compose.compose(ctx, host_id, ComposeFields(architecture="s390x/generic", memory="12"))
    assert set(e.value.errors) == {"architecture", "memory"}
    run_sync(service_region.dsn, hosts.record_failure_thd, host_id, "error", "unreachable")
    with pytest.raises(HostNotReady, match=r"VM host race is not ready \(error\): unreachable"):
        await compose.compose(ctx, host_id, ComposeFields())


@pytest_twisted.ensureDeferred
async def test_a_failed_rack_call_drops_the_reservation_and_a_lost_one_deletes_the_vm(service_region, rack,
                                                                                     tmp_path):
    dsn = service_region.dsn
    host_id = make_ready_host(dsn, tmp_path, cores=2, cpu_ratio=1.0)
    ctx = service_region.as_user("admin")
    rack.fail = hosterrors.DriverError("no such storage pool")
    with pytest.raises(hosterrors.DriverError):
        await compose.compose_on_host(ctx, host_id, ask("clean"))
    rack.fail = CallLost("rack went away")
    with pytest.raises(CallLost):
        await compose.compose_on_host(ctx, host_id, ask("unclear"))
    assert rack.deleted == ["unclear"]  # only the unclear one may have left a VM behind
    assert (_status(dsn, "clean"), _status(dsn, "unclear")) == (None, None)
    assert _audit(dsn) == []


@pytest_twisted.ensureDeferred
async def test_allocate_composes_a_dynamic_vm_that_release_decomposes(service_region, rack, tmp_path):
    dsn = service_region.dsn
    make_ready_host(dsn, tmp_path, cores=4, cpu_ratio=1.0)
    alice = service_region.as_user("alice", admin=False)
    with pytest.raises(FieldError, match="No such zone"):
        await allocate.allocate(alice, Constraints(not_in_zone=("mars",)))
    result = await allocate.allocate(alice, Constraints(cpu_count=2, mem=1024, agent_name="model-1"))
    m = result.machine
    assert (result.composed_on, m.status, m.owner_id, m.dynamic) == ("race", "allocated", alice.actor.id, True)
    with pytest.raises(Refused, match="Unknown machine"):
        await ownership.release_many(alice, [m.system_id, "nosuch"])
    assert await ownership.release_many(alice, [m.system_id]) == [m.system_id]
    assert rack.deleted == [m.hostname] and _status(dsn, m.hostname) is None
    assert _audit(dsn) == [("MACHINE_ALLOCATED", "alice"), ("MACHINE_COMPOSED", "alice"),
                           ("MACHINE_DECOMPOSED", "alice")]
    # One machine's release: only its owner (or an admin); the view is the machine as it left.
    second = (await allocate.allocate(alice, Constraints())).machine
    with pytest.raises(Forbidden):
        await ownership.release(service_region.as_user("bob", admin=False), second.system_id)
    released = await ownership.release(alice, second.system_id)
    assert released.decomposed and released.views.machines[0].machine.status == "allocated"
    assert _status(dsn, second.hostname) is None


def _threaded_transactions(service_region, monkeypatch) -> list[str]:
    """The names of the functions run in a thread's transaction from now on."""
    ran: list[str] = []
    run = service_region.db.run

    async def spied(fn_thd, *args, **kwargs):
        ran.append(fn_thd.__name__)
        return await run(fn_thd, *args, **kwargs)

    monkeypatch.setattr(service_region.db, "run", spied)
    return ran


@pytest_twisted.ensureDeferred
async def test_a_plain_compose_places_on_the_reactor_and_commits_before_the_rack(service_region, rack, tmp_path,
                                                                                 monkeypatch):
    dsn = service_region.dsn
    host_id = make_ready_host(dsn, tmp_path, cores=4, cpu_ratio=1.0)
    threaded = _threaded_transactions(service_region, monkeypatch)
    seen: list[str | None] = []
    rack.during = lambda request: seen.append(_status(dsn, request.instance_name))
    admin = service_region.as_user("admin")
    machine = await compose.compose(admin, str(host_id), ComposeFields(cores="2", storage="root:5,data:3"))
    assert threaded == []  # no thread: lock, read, insert, commit and read back from the reactor
    assert seen == ["composing"]
    assert machine.hostname.startswith("vm-") and (machine.status, machine.cpu_count) == ("ready", 2)
    assert [(d.name, d.size) for d in machine.disks] == [("root", 5 * 10**9), ("data", 3 * 10**9)]
    assert machine == run_sync(dsn, machines.get_thd, machine.system_id)
    assert service_region.db._transactions.busy == 0
    named = await compose.compose(admin, str(host_id), ComposeFields(hostname="web"))
    assert named.hostname == "web" and threaded == ["reserve_and_target_thd"]  # a lookup: in a thread


@pytest_twisted.ensureDeferred
async def test_on_the_reactor_a_taken_system_id_is_drawn_again(service_region, rack, tmp_path, monkeypatch):
    host_id = make_ready_host(service_region.dsn, tmp_path, cores=4, cpu_ratio=1.0)
    ctx = service_region.as_user("admin")
    first = await compose.compose(ctx, str(host_id), ComposeFields())
    draws = iter([first.system_id, "zzzzzz"])
    monkeypatch.setattr(compose, "new_system_id", lambda: next(draws))
    second = await compose.compose(ctx, str(host_id), ComposeFields())
    assert second.system_id == "zzzzzz" and second.status == "ready"
    assert sorted(m.system_id for m in run_sync(service_region.dsn, machines.list_thd)) == sorted(
        [first.system_id, "zzzzzz"])
    assert service_region.db._transactions.busy == 0


@pytest_twisted.ensureDeferred
async def test_on_the_reactor_no_room_rolls_back_and_keeps_the_connection(service_region, rack, tmp_path):
    host_id = make_ready_host(service_region.dsn, tmp_path, cores=2, cpu_ratio=1.0)
    ctx = service_region.as_user("admin")
    await compose.compose(ctx, str(host_id), ComposeFields(cores="2"))
    opened = service_region.db._transactions._open
    for _ in range(3):
        with pytest.raises(Conflict, match="needs 1 cores, host has 0 free"):
            await compose.compose(ctx, str(host_id), ComposeFields(cores="1"))
    assert service_region.db._transactions._open == opened and service_region.db._transactions.busy == 0
    assert len(run_sync(service_region.dsn, machines.list_thd)) == 1


@pytest_twisted.ensureDeferred
async def test_on_the_reactor_a_deadlock_is_tried_again(service_region, rack, tmp_path, monkeypatch):
    """PostgreSQL aborts one side of a deadlock (SQLSTATE 40P01): the placement starts again."""
    from region.db import reservations
    from region.db.pool import Statement

    host_id = make_ready_host(service_region.dsn, tmp_path, cores=4, cpu_ratio=1.0)
    real = reservations.insert_statement
    calls = []

    def deadlocked_once(new, system_id):
        calls.append(system_id)
        if len(calls) == 1:
            return Statement("DO $$ BEGIN RAISE EXCEPTION 'deadlock' USING ERRCODE = 'deadlock_detected'; END $$",
                             None)
        return real(new, system_id)

    monkeypatch.setattr(reservations, "insert_statement", deadlocked_once)
    made = await compose.compose(service_region.as_user("admin"), str(host_id), ComposeFields())
    assert len(calls) == 2 and made.system_id == calls[1] and made.status == "ready"
    assert [m.system_id for m in run_sync(service_region.dsn, machines.list_thd)] == [made.system_id]
