"""The periodic refresh scheduler: real PostgreSQL (leases, backoff), scripted fake racks.

Hosts answer at once, hang until the test lets them fail (as a host that accepts TCP and
never answers fails at the rack's connect timeout), or are unreachable.  The scheduler's
idle poll runs on a fake clock, so everything it does here is driven by finished refreshes.
"""

from __future__ import annotations

import socket
import threading
import time

import attrs
import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task

from common import hosterrors, tls
from common.models import DiscoveredHost, HostTarget
from rack.hostops import HostOperations
from region.db import hosts, named
from region.db.pool import Database, run_sync
from region.refresh_scheduler import RefreshScheduler
from region.secretbox import SecretBox
from region.vmhosts import HostManager
from tests.conftest import make_user, region_box
from tests.fixtures.daemons import wait_for
from tests.fixtures.http import Api
from tests.fixtures.polling import until
from tests.test_rack_hostops import REQUEST, TARGET, VM, FakeDriver
from tests.test_stop_fast import add_hung_hosts, leased
from tests.test_vmhosts_lxd import add_trusted_host

FOUND = DiscoveredHost(name="lxd", version="5.21", architectures=["amd64/generic"], cores=4, cpu_speed=0,
                       memory=2**30, numa_nodes=[], storage_pools=[], interfaces=[], projects=[],
                       server_fingerprint="ab" * 32, capabilities=[])
INTERVAL = 60.0


@attrs.define(eq=False)
class ScriptedRack:
    """A rack connection answering DiscoverHost by the host's address: `ok…` at once,
    `hung…` when the test releases it (then a DriverError), anything else Unreachable."""

    system_id: str
    hostname: str = "rack"
    in_flight: int = 0
    max_in_flight: int = 0
    background_calls: int = 0
    user_calls: int = 0
    hung: list = attrs.field(factory=list)

    @property
    def rack(self):
        return self

    def callRemote(self, command, target: HostTarget, background: bool = False, **kwargs):
        if background:
            self.background_calls += 1
        else:
            self.user_calls += 1
        if target.address.startswith("ok"):
            return defer.succeed({"host": FOUND})
        if not target.address.startswith("hung"):
            return defer.fail(hosterrors.Unreachable(f"cannot reach {target.address}"))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        d = defer.Deferred(lambda _: self._done())
        self.hung.append(d)
        return d

    def _done(self) -> None:
        self.in_flight -= 1

    def release_hung(self) -> None:
        hung, self.hung = self.hung, []
        for d in hung:
            if not d.called:
                self._done()
                d.errback(hosterrors.DriverError("gave up"))  # not Unreachable: no other rack is tried


@attrs.define
class Racks:
    conns: list

    def one_connection_per_rack(self):
        return list(self.conns)

    def connected_racks(self):
        return [c.system_id for c in self.conns]


@pytest.fixture
def env(dsn, tmp_path):
    box = SecretBox.load_or_create(tmp_path / "key")
    db, background = Database(dsn, reactor, max_connections=4), Database(dsn, reactor, max_connections=2)
    db.start()
    background.start()
    racks = Racks([ScriptedRack("rack-a")])
    manager = HostManager(db, box, racks, reactor, "region-1", "http://region/MAAS/", INTERVAL,
                          background_db=background)
    clock = task.Clock()
    made = []

    def scheduler(per_rack: int) -> RefreshScheduler:
        made.append(RefreshScheduler(manager, clock, per_rack=per_rack))
        return made[-1]

    yield attrs.make_class("Env", ["dsn", "box", "racks", "manager", "scheduler", "clock"])(
        dsn, box, racks, manager, scheduler, clock)
    for s in made:
        if s.running:
            s.stopService()  # it closes the background pool
    if background._pool.running:  # no scheduler was started and stopped
        background.close()
    db.close()


def add_hosts(env, *addresses: str, failures: int = 0) -> list[int]:
    pair = tls.make_self_signed("scheduler", kind="ec")

    def make_thd(cur):
        zone, pool = named.get_default_thd(cur, named.ZONES), named.get_default_thd(cur, named.RESOURCE_POOLS)
        ids = []
        for address in addresses:
            new = hosts.NewHost(address, "lxd", address, "default", pair.cert_pem, pair.key_pem, zone.id, pool.id,
                                [], 1.0, 1.0, None)
            ids.append(hosts.create_thd(cur, env.box, new).id)
        cur.execute("UPDATE vm_hosts SET refresh_failures = %s, next_refresh = now() - interval '1 second'"
                    " WHERE id = ANY(%s)", (failures, ids))
        return ids

    return run_sync(env.dsn, make_thd)


def refresh_state(env, host_ids: list[int]) -> dict[int, tuple]:
    def q_thd(cur):
        cur.execute("SELECT id, refresh_failures, extract(epoch FROM next_refresh - now()), refresh_owner,"
                    " last_refresh IS NOT NULL FROM vm_hosts WHERE id = ANY(%s)", (host_ids,))
        return {row[0]: row[1:] for row in cur.fetchall()}

    return run_sync(env.dsn, q_thd)


async def settle(env, scheduler: RefreshScheduler) -> None:
    """Dispatch until every refresh in flight is one a rack holds and a dispatch then starts nothing.
    (Only then: a refresh that finishes while the dispatch's lease runs frees room it did not see.)"""

    def only_held_by_racks() -> bool:
        return scheduler.in_flight == sum(c.in_flight for c in env.racks.conns)

    for _ in range(1000):
        quiet = only_held_by_racks()
        started = await scheduler.dispatch()
        if quiet and not started and only_held_by_racks():
            return
        await task.deferLater(reactor, 0.02, lambda: None)
    raise AssertionError("the scheduler did not settle")


@pytest_twisted.ensureDeferred
async def test_failing_hosts_back_off_exponentially_and_a_success_resets_them(env):
    [down] = add_hosts(env, "down-1")
    [ok] = add_hosts(env, "ok-1", failures=3)
    scheduler = env.scheduler(per_rack=4)
    await settle(env, scheduler)
    failures, next_in, owner, _ = refresh_state(env, [down])[down]
    assert failures == 1 and owner is None
    assert 0.8 * INTERVAL - 1 <= next_in <= 1.2 * INTERVAL, "the first failure waits one interval"
    run_sync(env.dsn, lambda cur: cur.execute("UPDATE vm_hosts SET next_refresh = now() WHERE id = %s", (down,)))
    await settle(env, scheduler)
    failures, next_in, _, _ = refresh_state(env, [down])[down]
    assert failures == 2 and 2 * 0.8 * INTERVAL - 1 <= next_in <= 2 * 1.2 * INTERVAL, "then twice that"
    failures, next_in, _, refreshed = refresh_state(env, [ok])[ok]
    assert (failures, refreshed) == (0, True) and next_in <= 1.2 * INTERVAL, "an answer resets the backoff"


@pytest_twisted.ensureDeferred
async def test_hung_hosts_get_at_most_half_the_slots_and_never_delay_answering_hosts(env):
    hung = add_hosts(env, *(f"hung-{i}" for i in range(8)), failures=2)
    answering = add_hosts(env, *(f"ok-{i}" for i in range(12)))
    [rack] = env.racks.conns
    scheduler = env.scheduler(per_rack=4)
    await settle(env, scheduler)
    assert rack.max_in_flight == 2, "failing hosts hold at most half of the rack's 4 slots"
    state = refresh_state(env, answering)
    assert all(refreshed and failures == 0 for failures, _, _, refreshed in state.values()), \
        "every answering host was refreshed while two hung hosts held their slots"
    assert scheduler.in_flight == 2
    rack.release_hung()
    await settle(env, scheduler)
    rack.release_hung()
    await settle(env, scheduler)
    assert rack.max_in_flight == 2
    failed_again = [failures for failures, *_ in refresh_state(env, hung).values() if failures == 3]
    assert len(failed_again) == 4, "two released twice; two more hung now, two still waiting"


@pytest_twisted.ensureDeferred
async def test_concurrency_is_bounded_per_rack_and_spread_over_racks(env):
    env.racks.conns.append(ScriptedRack("rack-b"))
    add_hosts(env, *(f"hung-{i}" for i in range(20)))
    scheduler = env.scheduler(per_rack=3)
    assert await scheduler.dispatch() == 6, "three per connected rack"
    assert await scheduler.dispatch() == 0, "no room until one finishes"
    await until(lambda: sum(c.in_flight for c in env.racks.conns) == 6)
    assert [c.in_flight for c in env.racks.conns] == [3, 3], "the least busy rack gets the next host"
    env.racks.conns[0].release_hung()
    await until(lambda: scheduler.in_flight == 3)
    assert await scheduler.dispatch() == 3
    assert max(c.max_in_flight for c in env.racks.conns) == 3


@pytest_twisted.ensureDeferred
async def test_two_regions_share_the_due_hosts_without_overlap(env):
    hung = add_hosts(env, *(f"hung-{i}" for i in range(12)))
    other = HostManager(env.manager.db, env.box, Racks([ScriptedRack("rack-b")]), reactor, "region-2",
                        "http://region/MAAS/", INTERVAL, background_db=env.manager.background_db)
    mine, theirs = env.scheduler(per_rack=8), RefreshScheduler(other, env.clock, per_rack=8)
    started = await defer.gatherResults([defer.Deferred.fromCoroutine(mine.dispatch()),
                                         defer.Deferred.fromCoroutine(theirs.dispatch())])
    owners = [owner for _, _, owner, _ in refresh_state(env, hung).values()]
    # Both lease at once with SKIP LOCKED: how the 12 split depends on how their scans
    # interleave (8 + 4, 6 + 6, ...); what may not happen is a host leased twice or a region
    # going past its slots.
    assert sum(started) == 12 and max(started) <= 8, "each host leased once, by one region"
    assert (owners.count("region-1"), owners.count("region-2")) == tuple(started)


@pytest_twisted.ensureDeferred
async def test_on_demand_refresh_is_not_queued_behind_periodic_work(env):
    add_hosts(env, *(f"hung-{i}" for i in range(10)))
    [ok] = add_hosts(env, "ok-user")
    run_sync(env.dsn, lambda cur: cur.execute("UPDATE vm_hosts SET next_refresh = now() + interval '1 hour'"
                                              " WHERE id = %s", (ok,)))
    scheduler = env.scheduler(per_rack=4)
    await scheduler.dispatch()
    [rack] = env.racks.conns
    await until(lambda: rack.in_flight == 4)
    assert rack.in_flight == 4 and scheduler.capacity() == scheduler.in_flight, "every periodic slot is hung"
    host = await env.manager.refresh(ok)
    assert host.state == "ready" and rack.user_calls == 1, "a user's refresh went straight to the rack"


@pytest_twisted.ensureDeferred
async def test_stop_cancels_refreshes_in_flight_and_hands_their_leases_back(env):
    hung = add_hosts(env, *(f"hung-{i}" for i in range(5)))
    scheduler = env.scheduler(per_rack=5)
    scheduler.startService()
    [rack] = env.racks.conns
    await until(lambda: rack.in_flight == 5)
    assert {owner for _, _, owner, _ in refresh_state(env, hung).values()} == {"region-1"}
    await scheduler.stopService()
    assert rack.in_flight == 0 and len(rack.hung) == 5, "every call to the rack was cancelled, none awaited"
    await until(lambda: scheduler.in_flight == 0)
    assert {owner for _, _, owner, _ in refresh_state(env, hung).values()} == {None}, "leases handed back"


@pytest_twisted.ensureDeferred
async def test_a_rack_runs_user_work_while_every_periodic_thread_is_blocked():
    blocked = threading.Event()
    driver = FakeDriver()
    driver.discover = lambda target, password: blocked.wait(10) and FOUND
    ops = HostOperations(reactor, {"lxd": driver}, max_threads=2, background_threads=3)
    try:
        periodic = [defer.Deferred.fromCoroutine(ops.discover(TARGET, None, background=True)) for _ in range(6)]
        vm = await defer.Deferred.fromCoroutine(ops.compose_vm(TARGET, REQUEST))
        assert vm == VM
        assert not any(d.called for d in periodic), "the periodic discoveries are all still blocked"
    finally:
        blocked.set()
        ops.stop()
    await defer.DeferredList(periodic)


def test_on_demand_refresh_of_a_real_lxd_host_completes_while_hung_hosts_are_being_refreshed(
        start_region, lxd_server, dsn):
    """32 hung discoveries fill the local rack's periodic capacity; the user's refresh has its own."""
    region = start_region("refreshing", local_rack=True)  # automatic refreshes on (60 s)
    api = Api(region.api, make_user(dsn, region_box(region), "admin", admin=True))
    host = add_trusted_host(api, lxd_server)
    with socket.socket() as silent:  # accepts connections, never answers: each discovery waits 10 s
        silent.bind(("127.0.0.1", 0))
        silent.listen(256)
        add_hung_hosts(dsn, region_box(region), silent.getsockname()[1], count=40)
        wait_for(lambda: leased(dsn) >= 32, 30, "hung hosts to be refreshing", region.proc, region.log)
        started = time.monotonic()
        reply = api.post(f"vm-hosts/{host['id']}/", data={"op": "refresh"})
        took = time.monotonic() - started
        assert reply.status == 200 and reply.json()["state"] == "ready", reply.text
        assert leased(dsn) >= 32, "the hung refreshes were still running meanwhile"
        # Behind the rack's 8 shared threads, 32 hung discoveries would have held it 40 s.
        assert took < 10.0, f"an on-demand refresh waited {took:.1f}s behind periodic work"
