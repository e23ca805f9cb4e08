"""Walkthrough 6: an LXD server goes down and comes back; the host recovers by itself."""

from __future__ import annotations

import time

import pytest

from tests.conftest import make_user, region_box
from tests.fixtures.http import Api
from tests.test_vmhosts_lxd import add_trusted_host


@pytest.fixture
def own_lxd():
    """A private LXD of this test's own, since it is taken down."""
    from tests.fixtures.lxd import LxdServer

    server = LxdServer.start()
    yield server
    server.stop()


def wait_for_state(api: Api, host_id: int, state: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        host = api.get(f"vm-hosts/{host_id}/").json()
        if host["state"] == state:
            return host
        assert time.monotonic() < deadline, f"still {host['state']}: {host['state_message']}"
        time.sleep(0.3)


def test_a_host_that_goes_down_keeps_its_figures_and_recovers_by_itself(start_region, dsn, own_lxd):
    region = start_region("recovery", local_rack=True, extra=["--vm-host-refresh-interval", "1"])
    api = Api(region.api, make_user(dsn, region_box(region), "admin", admin=True))
    host = add_trusted_host(api, own_lxd)

    own_lxd.halt()
    down = wait_for_state(api, host["id"], "error")
    assert "cannot reach the LXD host" in down["state_message"]
    # The last known figures stay.
    for key in ("total", "storage_pools", "version", "architectures", "server_fingerprint"):
        assert down[key] == host[key], key

    own_lxd.resume()
    up = wait_for_state(api, host["id"], "ready")
    assert up["state_message"] == "" and up["total"] == host["total"]
    assert up["server_fingerprint"] == host["server_fingerprint"]  # same server, still pinned
