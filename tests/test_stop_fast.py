"""Stopping a region and a rack while periodic refreshes hang on VM hosts that never answer:
both exit promptly, the refreshes in flight cancelled rather than awaited (real processes,
real PostgreSQL, a loopback listener that accepts connections and never says a word)."""

from __future__ import annotations

import socket
import time

import pytest

from common import tls
from region.db import hosts, named
from region.db.pool import run_sync
from tests.conftest import region_box
from tests.fixtures.daemons import wait_for

HUNG_HOSTS = 12
STOP_BOUND = 10.0  # seconds; generous (the target is 2 s, measured by bench/refresh.py)


@pytest.fixture
def silent_listener():
    """Accepts TCP connections (the kernel completes them) and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(256)
    yield sock.getsockname()[1]
    sock.close()


def add_hung_hosts(dsn: str, box, port: int, count: int = HUNG_HOSTS) -> list[int]:
    pair = tls.make_self_signed("stop-fast", kind="ec")

    def make_thd(cur):
        zone, pool = named.get_default_thd(cur, named.ZONES), named.get_default_thd(cur, named.RESOURCE_POOLS)
        return [hosts.create_thd(cur, box, hosts.NewHost(f"hung{i}", "lxd", f"127.0.0.1:{port}", f"p{i}",
                                                          pair.cert_pem, pair.key_pem, zone.id, pool.id, [],
                                                          1.0, 1.0, None)).id
                for i in range(count)]

    return run_sync(dsn, make_thd)


def leased(dsn: str) -> int:
    def q_thd(cur):
        cur.execute("SELECT count(*) FROM vm_hosts WHERE refresh_owner IS NOT NULL")
        return cur.fetchone()[0]

    return run_sync(dsn, q_thd)


def timed_stop(daemon) -> tuple[float, int | None]:
    started = time.monotonic()
    rc = daemon.stop(timeout=30)
    return time.monotonic() - started, rc


def test_region_and_rack_stop_promptly_while_refreshes_hang(start_region, start_rack, enrol_secret_file, dsn,
                                                             silent_listener, region):
    # `region` (no local rack) has automatic refreshes on; an external rack serves them.
    add_hung_hosts(dsn, region_box(region), silent_listener)
    rack = start_rack(region, enrol_secret_file)
    wait_for(lambda: leased(dsn) == HUNG_HOSTS and rack.output().count("discovering VM host") >= HUNG_HOSTS,
             60, "every hung host to be being refreshed", rack.proc, rack.log)
    seconds, rc = timed_stop(region)
    assert rc == 0 and seconds < STOP_BOUND, (seconds, rc, region.output()[-2000:])
    assert f"cancelled {HUNG_HOSTS} periodic VM host refreshes on stop" in region.output()
    assert leased(dsn) == 0, "the stopping region handed its leases back"
    # The rack's threads are still blocked on the silent host (its connect timeout is 10 s).
    seconds, rc = timed_stop(rack)
    assert rc == 0 and seconds < STOP_BOUND, (seconds, rc, rack.output()[-2000:])
