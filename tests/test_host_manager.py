"""HostManager's rack choice (in-process fakes) and the refresh lease (real PostgreSQL)."""

from __future__ import annotations

import attrs
import pytest
from twisted.internet import defer, task

from common import hosterrors, tls
from common.models import DiscoveredHost, HostTarget
from common.rpc import rack_commands
from region.db import hosts, named
from region.db.pool import run_sync
from region.rpc import NoRackConnected
from region.secretbox import SecretBox
from region.vmhosts import RACK_WAIT, HostManager

FOUND = DiscoveredHost(name="lxd1", version="5.0.2", architectures=["amd64/generic"], cores=4, cpu_speed=0,
                       memory=2**30, numa_nodes=[], storage_pools=[], interfaces=[], projects=[],
                       server_fingerprint="ab" * 32, capabilities=[])


@attrs.frozen
class FakeRack:
    system_id: str
    hostname: str


@attrs.define
class FakeConnection:
    rack: FakeRack
    outcome: object  # a result dict, or an exception to fail with
    calls: list = attrs.field(factory=list)

    def callRemote(self, command, **kwargs):
        self.calls.append((command, kwargs))
        if isinstance(self.outcome, Exception):
            return defer.fail(self.outcome)
        return defer.succeed(self.outcome)


@attrs.define
class FakeRegistry:
    conns: list

    def one_connection_per_rack(self):
        return list(self.conns)


def manager(*conns, clock=None) -> HostManager:
    return HostManager(None, None, FakeRegistry(list(conns)), clock or task.Clock(), "region-1",
                       "http://region/MAAS/")


def target() -> HostTarget:
    return HostTarget(type="lxd", address="10.0.0.1:8443", project="default", cert_pem="cert", key_pem="key")


def run(coro):
    d = defer.Deferred.fromCoroutine(coro)
    results = []
    d.addBoth(results.append)
    assert results, "the call did not finish synchronously"
    if isinstance(results[0], Exception) or hasattr(results[0], "raiseException"):
        results[0].raiseException()
    return results[0]


def conn(name: str, outcome) -> FakeConnection:
    return FakeConnection(FakeRack(name, name + ".example"), outcome)


def test_fails_over_to_another_rack_when_one_cannot_reach_the_host():
    a = conn("a", hosterrors.Unreachable("connection refused"))
    b = conn("b", {"host": FOUND})
    for _ in range(10):  # whatever the random order, the reachable rack answers
        a.calls.clear()
        b.calls.clear()
        assert run(manager(a, b).discover(target())) == FOUND
        assert len(b.calls) == 1


def test_a_verdict_about_the_host_is_not_retried_elsewhere():
    for error in (hosterrors.Untrusted("not trusted"), hosterrors.WrongTrustPassword("rejected"),
                  hosterrors.ServerCertificateChanged("changed"), hosterrors.NotLXD("not lxd")):
        a, b = conn("a", error), conn("b", error)
        with pytest.raises(type(error)):
            run(manager(a, b).discover(target(), password="pw"))
        assert len(a.calls) + len(b.calls) == 1


def test_every_rack_failing_names_each_one():
    a = conn("a", hosterrors.Unreachable("no route"))
    b = conn("b", defer.TimeoutError())
    with pytest.raises(hosterrors.Unreachable) as e:
        run(manager(a, b).discover(target()))
    assert "a.example: no route" in str(e.value) and "b.example" in str(e.value)


def test_the_password_is_sent_only_when_given():
    a = conn("a", {"host": FOUND})
    run(manager(a).discover(target()))
    run(manager(a).discover(target(), password="s3cret"))
    assert [kw.get("password") for _, kw in a.calls] == [None, "s3cret"]
    assert all(cmd is rack_commands.DiscoverHost for cmd, _ in a.calls)
    assert all(kw["target"] == target() for _, kw in a.calls)  # the whole target, as one argument


def test_no_rack_waits_briefly_then_503s():
    clock = task.Clock()
    d = defer.Deferred.fromCoroutine(manager(clock=clock).discover(target()))
    clock.advance(RACK_WAIT / 2)
    assert not d.called
    clock.pump([0.25] * int(RACK_WAIT / 0.25 + 2))
    failure = []
    d.addErrback(failure.append)
    assert failure and failure[0].check(NoRackConnected)


def test_refresh_lease_allows_one_holder_at_a_time(dsn, tmp_path):
    box = SecretBox.load_or_create(tmp_path / "key")
    pair = tls.make_self_signed("lease", kind="ec")

    def make_thd(cur):
        zone, pool = named.get_default_thd(cur, named.ZONES), named.get_default_thd(cur, named.RESOURCE_POOLS)
        new = hosts.NewHost("lease", "lxd", "10.0.0.9", "default", pair.cert_pem, pair.key_pem, zone.id, pool.id,
                            [], 1.0, 1.0, None)
        return hosts.create_thd(cur, box, new).id

    host_id = run_sync(dsn, make_thd)
    assert run_sync(dsn, hosts.refresh_backlog_thd).overdue == 1  # new hosts are due at once
    assert run_sync(dsn, hosts.claim_refresh_thd, host_id, "region-a", 300)
    assert not run_sync(dsn, hosts.claim_refresh_thd, host_id, "region-b", 300)
    assert run_sync(dsn, hosts.refreshing_thd, host_id)
    assert run_sync(dsn, hosts.refresh_backlog_thd).overdue == 0
    run_sync(dsn, hosts.release_refresh_thd, host_id, "region-b", 0)  # not the holder: no effect
    assert not run_sync(dsn, hosts.claim_refresh_thd, host_id, "region-b", 300)
    run_sync(dsn, hosts.release_refresh_thd, host_id, "region-a", 3600)
    assert not run_sync(dsn, hosts.refreshing_thd, host_id)
    assert run_sync(dsn, hosts.refresh_backlog_thd).overdue == 0  # next one an hour away
    assert run_sync(dsn, hosts.claim_refresh_thd, host_id, "region-b", 300)  # on demand: allowed
    # An expired lease (a region that died mid-refresh) can be taken over.
    run_sync(dsn, lambda cur: cur.execute(
        "UPDATE vm_hosts SET refresh_lease_until = now() - interval '1 second' WHERE id = %s", (host_id,)))
    assert run_sync(dsn, hosts.claim_refresh_thd, host_id, "region-c", 300)
