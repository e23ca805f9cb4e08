"""The embedded default end to end: first start, READY, local rack, restart, clean stop;
the local rack as a child process that is restarted when it dies."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap

from common.procs import process_exists
from region.db import secrets
from region.db.pool import run_sync
from region.embedded_pg import EmbeddedPostgres
from tests.conftest import make_user, region_box
from tests.fixtures.daemons import REPO, RegionProcess, http_get, wait_for
from tests.fixtures.http import Api


def _admin(data_dir, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "region.cli.admin", "--data-dir", str(data_dir), *args],
                          capture_output=True, text=True, cwd=REPO, timeout=120)


def _local_rack_connected(api: Api):
    def check():
        racks = api.get("rackcontrollers/").json()
        return racks if racks and racks[0]["status"] == "connected" else None

    return check


def test_first_start_then_restart_with_existing_data(public_tmp, start_region, tmp_path):
    data_dir = public_tmp / "data"
    notify_path = str(tmp_path / "notify.sock")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(notify_path)
    notify.settimeout(60)

    region = start_region(database=None, data_dir=data_dir, local_rack=True, env={"NOTIFY_SOCKET": notify_path})
    assert b"READY=1" in notify.recv(1024)
    first_start = wait_for(lambda: "region ready" in region.output() and region.output(), 30, "the ready line")
    assert first_start.index("the new PostgreSQL cluster is on disk") < first_start.index("region ready"), \
        "the new cluster is flushed to disk before the region says it is ready"
    pg = EmbeddedPostgres(region.data_dir)
    assert pg.is_running(), "the region runs its own PostgreSQL cluster"
    assert oct(os.stat(region.data_dir / "region.key").st_mode & 0o777) == "0o600"
    pg_owner = os.stat(pg.pgdata).st_uid
    assert pg_owner != 0, "PostgreSQL must not run as root"

    created = _admin(region.data_dir, "createadmin", "--username", "admin", "--password", "admin-pw-1",
                     "--email", "a@x")
    assert created.returncode == 0, created.stderr
    key = _admin(region.data_dir, "apikey", "--username", "admin").stdout.strip()
    api = Api(region.api, key)
    rack_connected = _local_rack_connected(api)
    racks = wait_for(rack_connected, 30, "the local rack to connect", region.proc, region.log)
    assert len(racks) == 1
    assert api.post("zones/", data={"name": "lab"}).status == 200

    assert region.stop() == 0
    assert not pg.is_running(), "a clean stop stops the embedded PostgreSQL"
    assert "region stopped" in region.output()

    # Restart on the same data dir: same database, same key, same rack identity.
    region.start().wait_ready()
    assert api.get("users/", query={"op": "whoami"}).json()["username"] == "admin"
    assert [z["name"] for z in api.get("zones/").json()] == ["default", "lab"]
    again = wait_for(rack_connected, 30, "the local rack to reconnect", region.proc, region.log)
    assert again[0]["system_id"] == racks[0]["system_id"], "the local rack is not enrolled twice"
    assert "creating the embedded PostgreSQL cluster" not in region.output().split("region stopped")[-1]
    version = json.loads(http_get(region.api + "version/")[1])
    assert "authenticate-api" in version["capabilities"]


def _child_racks(region_pid: int) -> list[int]:
    """PIDs of `rack.daemon` processes whose parent is the region."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            status = open(f"/proc/{entry}/status").read()
            cmdline = open(f"/proc/{entry}/cmdline", "rb").read().split(b"\0")
        except OSError:
            continue
        ppid = int(status.split("PPid:", 1)[1].split()[0])
        if ppid == region_pid and b"rack.daemon" in cmdline:
            found.append(int(entry))
    return found


def test_local_rack_is_a_restarted_child_process(start_region, dsn):
    region = start_region("parent", local_rack=True, extra=["--vm-host-refresh-interval", "0"])
    api = Api(region.api, make_user(dsn, region_box(region), "admin", admin=True))
    connected = _local_rack_connected(api)
    first = wait_for(lambda: _child_racks(region.proc.pid), 30, "the local rack process", region.proc, region.log)
    assert len(first) == 1 and first[0] != region.proc.pid
    cmdline = open(f"/proc/{first[0]}/cmdline", "rb").read()
    environ = open(f"/proc/{first[0]}/environ", "rb").read()
    secret = run_sync(dsn, secrets.get_thd, region_box(region), secrets.ENROLLMENT_SECRET).encode()
    assert secret not in cmdline and secret not in environ, "the enrolment secret goes over stdin only"
    system_id = wait_for(connected, 30, "the local rack to connect", region.proc, region.log)[0]["system_id"]

    os.kill(first[0], signal.SIGKILL)
    second = wait_for(lambda: [p for p in _child_racks(region.proc.pid) if p != first[0]], 30,
                      "the local rack to be restarted", region.proc, region.log)

    def reconnected():
        after_kill = region.output().partition(f"local rack (PID {first[0]}) ended")[2]
        return f"rack {system_id} (" in after_kill and connected()

    again = wait_for(reconnected, 30, "the restarted rack to reconnect", region.proc, region.log)
    assert again[0]["system_id"] == system_id, "the same rack identity, not a new enrolment"
    assert region.running, "the API survives its rack"

    assert region.stop() == 0
    wait_for(lambda: not process_exists(second[0]), 10, "the child rack to stop with the region")


def test_region_process_does_not_load_the_rack():
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, region.daemon, region.service; "
                               "print(sorted(m for m in sys.modules if m.split('.')[0] in ('rack', 'pylxd')))"],
        capture_output=True, text=True, cwd=REPO, check=True, timeout=60,
    ).stdout.strip()
    assert loaded == "[]"


def test_sigterm_during_the_first_initdb_leaves_no_server_running(public_tmp):
    region = RegionProcess.make(public_tmp / "data", dsn=None)
    region.start()
    try:
        wait_for(lambda: "creating the embedded PostgreSQL cluster" in region.output(), 60, "initdb to begin",
                 region.proc, region.log)
        assert region.stop() == 0
    finally:
        region.stop()
    pg = EmbeddedPostgres(region.data_dir)
    assert not pg.is_running(), "the server the start spawned is stopped with the region"
    assert pg.pid() is None
    assert "the new PostgreSQL cluster is on disk" in region.output(), \
        "a new cluster the region stopped before it listened is flushed by the stop"


def test_a_region_that_fails_before_its_cluster_service_leaves_no_server_running(public_tmp):
    """The cluster's start begins before the region is imported; when that import fails
    after the start has spawned the server, the daemon still stops the server."""
    data_dir = public_tmp / "data"
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from region.embedded_pg import EmbeddedPostgres

        class FailOnceTheServerRuns:
            def find_spec(self, name, path=None, target=None):
                if name != "region.service":
                    return None
                pg, deadline = EmbeddedPostgres(Path({str(data_dir)!r})), time.monotonic() + 120
                while not pg.is_running() and time.monotonic() < deadline:
                    time.sleep(0.02)
                raise ImportError("region.service failed to import (test)")

        sys.meta_path.insert(0, FailOnceTheServerRuns())
        from region import daemon
        daemon.main(["--data-dir", {str(data_dir)!r}, "--no-local-rack", "--http", "127.0.0.1:0",
                     "--rpc", "127.0.0.1:0"])
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180, cwd=REPO,
                         env={**os.environ, "VMYARD_PG_TEMPLATE_DIR": str(public_tmp / "no-template")})
    assert out.returncode != 0 and "region.service failed to import (test)" in out.stdout + out.stderr
    pg = EmbeddedPostgres(data_dir)
    assert pg.is_initialised() and pg.pid() is None, "the server the start spawned is stopped"
