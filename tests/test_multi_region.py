"""Two regions on one PostgreSQL: shared CA, shared state, a rack connected to both that
survives losing one, periodic work done once."""

from __future__ import annotations

import json
import shutil
import signal
import ssl

import pytest
from twisted.protocols import amp

from common.rpc import region_commands
from common.rpc.wire import RackHello
from region.db import secrets
from region.db.pool import run_sync
from tests.conftest import make_user, region_box
from tests.fixtures.daemons import RackProcess, wait_for
from tests.fixtures.http import Api
from tests.test_rack_rpc import PING, tls_session
from tests.test_vmhosts_lxd import add_trusted_host


def test_second_region_shares_state_and_sees_racks(region, dsn, admin_api, enrol_secret_file, start_rack,
                                                   start_region, tmp_path):
    key_copy = tmp_path / "shared.key"
    shutil.copy(region.data_dir / "region.key", key_copy)
    second = start_region("second", extra=["--secret-key-file", str(key_copy)])
    api2 = Api(second.api, admin_api.apikey)

    assert admin_api.post("zones/", data={"name": "shared"}).status == 200
    assert "shared" in [z["name"] for z in api2.get("zones/").json()]

    rack = start_rack(region, enrol_secret_file)
    wait_for(lambda: rack.system_id, 30, "enrolment", rack.proc, rack.log)

    def connected_seen_by_second():
        racks = {r["system_id"]: r for r in api2.get("rackcontrollers/").json()}
        return racks.get(rack.system_id, {}).get("status") == "connected"

    wait_for(connected_seen_by_second, 30, "the second region to see the rack connected")
    # The rack's certificate, issued by the first region, is trusted by the second (one CA).
    assert (region.data_dir / "region.key").read_bytes() == key_copy.read_bytes()


def _second_region(region, start_region, tmp_path, *extra: str):
    key_copy = tmp_path / "shared.key"
    shutil.copy(region.data_dir / "region.key", key_copy)
    return start_region("second", extra=["--secret-key-file", str(key_copy), *extra])


def _connections(api, system_id: str) -> int:
    racks = {r["system_id"]: r for r in api.get("rackcontrollers/").json()}
    return racks.get(system_id, {}).get("connections", 0)


@pytest.fixture
def start_rack_with(tmp_path):
    """Starts a rack with extra command-line arguments; stops it afterwards."""
    started: list[RackProcess] = []

    def start(region, secret_file, *extra: str) -> RackProcess:
        rack = RackProcess.make(tmp_path / f"rack{len(started)}", region.url, secret_file)
        rack.args += list(extra)
        started.append(rack.start())
        return rack

    yield start
    for rack in started:
        rack.stop()


def test_rack_connects_to_a_region_started_after_it(region, admin_api, enrol_secret_file, start_region, tmp_path,
                                                    start_rack_with):
    config = tmp_path / "rackd.toml"
    config.write_text("regions_poll_interval = 1\n")
    rack = start_rack_with(region, enrol_secret_file, "--config", str(config))
    wait_for(lambda: rack.system_id and _connections(admin_api, rack.system_id) == 2, 30,
             "the rack to connect to the first region", rack.proc, rack.log)
    second = _second_region(region, start_region, tmp_path)
    wait_for(lambda: _connections(Api(second.api, admin_api.apikey), rack.system_id) == 4, 30,
             "the rack to connect to the second region too", rack.proc, rack.log)


def test_rack_connected_to_both_regions_keeps_working_when_one_is_killed(region, admin_api, enrol_secret_file,
                                                                         start_rack, start_region, tmp_path,
                                                                         lxd_server):
    second = _second_region(region, start_region, tmp_path, "--vm-host-refresh-interval", "0")
    api2 = Api(second.api, admin_api.apikey)
    rack = start_rack(region, enrol_secret_file)  # enrolled with, and first connected to, the first region
    wait_for(lambda: rack.system_id, 30, "enrolment", rack.proc, rack.log)
    # It learns of the second region from the first and connects to both (2 connections each).
    wait_for(lambda: _connections(api2, rack.system_id) == 4, 30, "the rack to connect to both regions",
             rack.proc, rack.log)
    host = add_trusted_host(admin_api, lxd_server)

    region.proc.send_signal(signal.SIGKILL)
    region.proc.wait(10)
    refreshed = api2.post(f"vm-hosts/{host['id']}/", data={"op": "refresh"})
    assert refreshed.status == 200 and refreshed.json()["state"] == "ready", refreshed.text
    composed = api2.post(f"vm-hosts/{host['id']}/", data={"op": "compose", "storage": "root:1"})
    assert composed.status == 200, composed.text
    assert api2.delete(f"machines/{composed.json()['system_id']}/").status == 204
    assert rack.running


def _discovery_times(rack) -> list[float]:
    """When the rack started each host discovery (from its JSON log)."""
    times = []
    for record in rack.output().split("\x1e"):
        if '"discovering VM host"' in record:
            times.append(json.loads(record)["log_time"])
    return times


def test_periodic_refresh_runs_once_across_two_regions(start_region, dsn, tmp_path, lxd_server, start_rack_with):
    interval = 2.0
    first = start_region("first", extra=["--vm-host-refresh-interval", str(interval)])
    second = _second_region(first, start_region, tmp_path, "--vm-host-refresh-interval", str(interval))
    api = Api(second.api, make_user(dsn, region_box(first), "admin", admin=True))
    secret = tmp_path / "enrol.secret"
    secret.write_text(run_sync(dsn, secrets.get_thd, region_box(first), secrets.ENROLLMENT_SECRET) + "\n")
    rack = start_rack_with(first, secret, "--log-format", "json")
    wait_for(lambda: rack.system_id and _connections(api, rack.system_id) == 4, 30,
             "the rack to connect to both regions", rack.proc, rack.log)
    add_trusted_host(api, lxd_server)
    wait_for(lambda: len(_discovery_times(rack)) >= 8, 60, "several periodic refreshes", rack.proc, rack.log)
    times = _discovery_times(rack)
    gaps = [later - earlier for earlier, later in zip(times, times[1:])]
    # Each refresh schedules the next 0.8-1.2 intervals later; one run by each region
    # would show as two discoveries at (nearly) the same moment.
    assert min(gaps) > interval * 0.5, gaps


def _read_until_closed(s: ssl.SSLSocket, timeout: float) -> bytes:
    s.settimeout(timeout)
    received = b""
    while chunk := s.recv(4096):
        received += chunk
    return received


def test_rack_deleted_through_one_region_is_dropped_and_refused_by_the_other(region, admin_api, enrol_secret_file,
                                                                              start_rack, start_region, tmp_path):
    second = _second_region(region, start_region, tmp_path)
    api2 = Api(second.api, admin_api.apikey)
    rack = start_rack(region, enrol_secret_file)
    wait_for(lambda: rack.system_id and _connections(api2, rack.system_id) == 4, 30,
             "the rack to connect to both regions", rack.proc, rack.log)
    rack.stop()
    # A connection of the rack's, registered with the first region only.
    with tls_session(region, rack) as session:
        register = region_commands.RegisterRack.makeArguments({"hello": RackHello("raw", "1")}, None)
        session.sendall(amp.AmpBox(register, _command=b"RegisterRack", _ask=b"1").serialize())
        assert b"_answer" in session.recv(4096)

        assert api2.delete(f"rackcontrollers/{rack.system_id}/").status == 204
        # The first region learns of the deletion by itself (its sync runs every second),
        # tells the rack and hangs up.
        assert b"RackDeleted" in _read_until_closed(session, 10)
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        with tls_session(region, rack) as s:
            s.sendall(PING)
            s.recv(1000)
