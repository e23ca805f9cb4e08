"""Reusing LXD clients: the pool itself, and the driver against a real LXD."""

from __future__ import annotations

import json
import uuid

import attrs

from common import tls
from common.hosterrors import Untrusted
from common.models import HostTarget
from rack.drivers import lxd as lxd_module
from rack.drivers.lxd import LXDDriver
from rack.drivers.lxd_pool import ClientPool, PooledClient


class FakeSession:
    closed = False

    def close(self):
        self.closed = True


def pooled() -> PooledClient:
    return PooledClient(object(), FakeSession(), "ab" * 32)


def test_pool_hands_back_per_key_expires_and_caps():
    now = [0.0]
    pool = ClientPool(idle_seconds=10, per_key=2, clock=lambda: now[0])
    a, b, c = pooled(), pooled(), pooled()
    for p in (a, b, c):
        pool.give(("k",), p)
    assert c.session.closed and not a.session.closed  # over the cap: closed at once
    assert pool.take(("other",)) is None
    assert pool.take(("k",)) is b
    now[0] = 11
    assert pool.take(("k",)) is None and a.session.closed  # expired while idle
    d = pooled()
    pool.give(("k",), d)
    pool.close_all()
    assert d.session.closed and pool.take(("k",)) is None


def test_driver_reuses_a_client_and_starts_afresh_after_trust_is_revoked(lxd_server, monkeypatch):
    pair = tls.make_self_signed(f"pool-{uuid.uuid4().hex[:6]}", kind="rsa")
    name = f"pool-{uuid.uuid4().hex[:6]}"
    lxd_server.trust_add(pair.cert_pem, name)
    target = HostTarget(type="lxd", address=lxd_server.address, project="default", cert_pem=pair.cert_pem,
                        key_pem=pair.key_pem)
    probes = []
    real_probe = lxd_module.probe_fingerprint
    monkeypatch.setattr(lxd_module, "probe_fingerprint", lambda *a: probes.append(a) or real_probe(*a))
    driver = LXDDriver(timeout=(5, 30))
    first = driver.discover(target)
    driver.discover(target)
    assert len(probes) == 1, "the second operation reused the pinned, trusted client"
    # The pooled client keeps its key in memory only: no certificate files remain on disk.
    import glob
    import os
    import tempfile

    assert glob.glob(os.path.join(tempfile.gettempdir(), f"vmyard-lxd-cert-{os.getpid()}-*")) == []
    # A different pin is a different key: probed (and refused) again.
    driver.discover(attrs.evolve(target, server_fingerprint=first.server_fingerprint))
    assert len(probes) == 2
    # Revoke trust: the pooled client fails once, is dropped, and a fresh one says why.
    fingerprint = tls.cert_fingerprint(pair.cert_pem)
    lxd_server.lxc("config", "trust", "remove", fingerprint)
    try:
        driver.discover(target)
    except Exception as e:  # the stale client's failure, whatever LXD said
        assert "not authorized" in str(e) or isinstance(e, Untrusted), e
    try:
        driver.discover(target)
        raise AssertionError("an untrusted certificate was accepted")
    except Untrusted:
        pass
    assert fingerprint not in json.dumps(json.loads(lxd_server.lxc("query", "/1.0/certificates")))


def test_certificate_dirs_of_dead_racks_are_swept(tmp_path):
    import os

    from rack.drivers.lxd_tls import CERT_DIR_PREFIX, sweep_stale_cert_dirs

    dead_pid = 4_194_000  # above any pid_max default in use here
    dead = tmp_path / f"{CERT_DIR_PREFIX}{dead_pid}-abc"
    alive = tmp_path / f"{CERT_DIR_PREFIX}{os.getpid()}-def"
    other = tmp_path / "unrelated"
    for d in (dead, alive, other):
        d.mkdir()
        (d / "client.key").write_text("k")
    assert sweep_stale_cert_dirs(str(tmp_path)) == [str(dead)]
    assert not dead.exists() and alive.exists() and other.exists()


def test_pool_beyond_its_bound_closes_the_client_given_back_and_keeps_those_waiting():
    pool = ClientPool(idle_seconds=10, per_key=2, max_clients=3, clock=lambda: 0.0)
    a, b, c, d = pooled(), pooled(), pooled(), pooled()
    pool.give(("a",), a)
    pool.give(("b",), b)
    pool.give(("a",), c)
    pool.give(("d",), d)  # full: "d" is closed, the three waiting stay
    assert d.session.closed and not any(p.session.closed for p in (a, b, c))
    assert pool.take(("d",)) is None
    assert pool.take(("a",)) is c and pool.take(("a",)) is a and pool.take(("b",)) is b
    assert pool.take(("a",)) is None
    pool.give(("d",), d2 := pooled())  # room again
    assert pool.take(("d",)) is d2 and not d2.session.closed


def test_periodic_refreshes_over_more_hosts_than_the_bound_still_reuse_clients():
    """Every host in turn, round after round (what periodic refresh does): evicting the least
    recently used would leave no host its own client; first come keeps max_clients of them."""
    pool = ClientPool(idle_seconds=1000, per_key=1, max_clients=30, clock=lambda: 0.0)
    reused = 0
    for _ in range(3):
        for host in range(50):
            client = pool.take((host,))
            reused += client is not None
            pool.give((host,), client or pooled())
    assert reused == 2 * 30
