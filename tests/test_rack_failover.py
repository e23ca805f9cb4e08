"""A rack killed while another is connected: real region, racks, PostgreSQL and LXD.

Host work moves to the surviving rack within seconds, and a compose in flight on the
dying rack is finished through the other one without a second VM (the reservation key on
the instance makes the repeat an answer, not a conflict)."""

from __future__ import annotations

import signal
import time

import pytest

from rack import faults
from region.db import secrets
from region.db.pool import run_sync
from tests.conftest import make_user, region_box
from tests.fixtures.daemons import RackProcess, wait_for
from tests.fixtures.http import Api
from tests.fixtures.lxd import lxc_json, unique
from tests.test_vmhosts_lxd import add_trusted_host, sql

FAILOVER_SECONDS = 5.0  # the bound for host work to move to another rack


@pytest.fixture
def two_racks(start_region, dsn, tmp_path):
    """A region without a local rack, an admin API, and a function starting enrolled racks."""
    region = start_region("failover", extra=["--vm-host-refresh-interval", "0"])
    api = Api(region.api, make_user(dsn, region_box(region), "admin", admin=True))
    secret = tmp_path / "enrol.secret"
    secret.write_text(run_sync(dsn, secrets.get_thd, region_box(region), secrets.ENROLLMENT_SECRET) + "\n")
    started: list[RackProcess] = []

    def start(name: str, env: dict[str, str] | None = None) -> RackProcess:
        rack = RackProcess.make(tmp_path / name, region.url, secret)
        rack.env = env or {}
        started.append(rack.start())
        wait_for(lambda: any(r["system_id"] == rack.system_id and r["status"] == "connected"
                             for r in api.get("rackcontrollers/").json()), 60, f"rack {name} to connect",
                 rack.proc, rack.log)
        return rack

    yield api, start
    for rack in started:
        rack.stop()


def test_host_work_moves_to_the_other_rack_when_one_is_killed(two_racks, lxd_server):
    api, start = two_racks
    doomed, survivor = start("doomed"), start("survivor")
    host = add_trusted_host(api, lxd_server)

    doomed.proc.send_signal(signal.SIGKILL)
    doomed.proc.wait(10)
    began = time.monotonic()
    refreshed = api.post(f"vm-hosts/{host['id']}/", data={"op": "refresh"})
    assert refreshed.status == 200 and refreshed.json()["state"] == "ready", refreshed.text
    assert time.monotonic() - began < FAILOVER_SECONDS
    began = time.monotonic()
    composed = api.post(f"vm-hosts/{host['id']}/", data={"op": "compose", "storage": "root:1"})
    assert composed.status == 200, composed.text
    assert time.monotonic() - began < FAILOVER_SECONDS
    assert "composing VM" in survivor.output()
    assert api.delete(f"machines/{composed.json()['system_id']}/").status == 204


def test_compose_in_flight_on_a_dying_rack_is_finished_by_the_other_without_a_second_vm(two_racks, lxd_server,
                                                                                      dsn):
    api, start = two_racks
    doomed = start("doomed", env={"VMYARD_FAULT_RACK": faults.COMPOSE_AFTER_CREATE})
    start("survivor")
    # Room for every compose the loop below may make (the test host has few cores).
    host = add_trusted_host(api, lxd_server, cpu_over_commit_ratio="10", memory_over_commit_ratio="10")
    project = host["project"]
    composed: list[str] = []
    # The region picks a rack at random: compose until one lands on the doomed rack (each
    # does with even odds; 20 misses in a row would be one chance in a million).
    for attempt in range(20):
        reply = api.post(f"vm-hosts/{host['id']}/", data={"op": "compose", "hostname": f"fo{attempt}",
                                                          "memory": "1024", "storage": "root:1,extra:1"})
        assert reply.status == 200, reply.text
        composed.append(reply.json()["system_id"])
        if doomed.proc.poll() is not None:
            break
    assert doomed.proc.poll() == -signal.SIGKILL, "no compose went to the doomed rack"
    assert "VMYARD_FAULT_RACK: killing the rack" in doomed.output()

    instances = lxc_json(lxd_server, f"/1.0/instances?recursion=1&project={project}")
    records = {r[0]: (r[1], r[2]) for r in sql(
        dsn, "SELECT instance_name, status, system_id FROM machines WHERE host_id = %s", host["id"])}
    # One VM per compose, each recorded ready and carrying its reservation key.
    assert sorted(i["name"] for i in instances) == sorted(records)
    assert sorted(system_id for _, system_id in records.values()) == sorted(composed)
    for instance in instances:
        status, system_id = records[instance["name"]]
        assert status == "ready"
        assert instance["config"]["user.vmyard.reservation"] == system_id
    volumes = lxc_json(lxd_server, f"/1.0/storage-pools/default/volumes?recursion=1&project={project}")
    assert len([v for v in volumes if v["type"] == "custom"]) == len(composed)
    for system_id in composed:
        assert api.delete(f"machines/{system_id}/").status == 204
