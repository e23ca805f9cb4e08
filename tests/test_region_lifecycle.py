"""The embedded default end to end: first start, READY, local rack, restart, clean stop."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

from region.embedded_pg import EmbeddedPostgres
from tests.fixtures.daemons import REPO, http_get, wait_for
from tests.fixtures.http import Api


def _admin(data_dir, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "region.cli.admin", "--data-dir", str(data_dir), *args],
                          capture_output=True, text=True, cwd=REPO, timeout=120)


def test_first_start_then_restart_with_existing_data(public_tmp, start_region, tmp_path):
    data_dir = public_tmp / "data"
    notify_path = str(tmp_path / "notify.sock")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(notify_path)
    notify.settimeout(60)

    region = start_region(database=None, data_dir=data_dir, local_rack=True, env={"NOTIFY_SOCKET": notify_path})
    assert b"READY=1" in notify.recv(1024)
    pg = EmbeddedPostgres(region.data_dir)
    assert pg.is_running(), "the region runs its own PostgreSQL cluster"
    assert oct(os.stat(region.data_dir / "region.key").st_mode & 0o777) == "0o600"
    pg_owner = os.stat(pg.pgdata).st_uid
    assert pg_owner != 0, "PostgreSQL must not run as root"

    created = _admin(region.data_dir, "createadmin", "--username", "admin", "--password", "pw", "--email", "a@x")
    assert created.returncode == 0, created.stderr
    key = _admin(region.data_dir, "apikey", "--username", "admin").stdout.strip()
    api = Api(region.api, key)

    def rack_connected():
        racks = api.get("rackcontrollers/").json()
        return racks if racks and racks[0]["status"] == "connected" else None

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
