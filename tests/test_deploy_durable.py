"""A region killed (SIGKILL) at a deploy's rack step: another region, sharing the database,
sees its heartbeat go stale and carries the step out.  Real regions, racks and LXD."""

from __future__ import annotations

import http.client
import shutil
import tarfile
import time
import urllib.error
from pathlib import Path

from region.db.pool import run_sync
from tests.conftest import make_user, region_box
from tests.fixtures import images
from tests.fixtures.daemons import wait_for
from tests.fixtures.http import Api
from tests.fixtures.lxd import lxc_json
from tests.fixtures.tiny_rootfs import build_rootfs
from tests.test_vmhosts_lxd import add_trusted_host

DEAD_AFTER = 4  # seconds without a heartbeat before a region counts as dead (production: 90)


def tiny_rootfs_tgz(work: Path) -> bytes:
    """MAAS's tgz of a root filesystem whose init sleeps: a container starts from it in a second."""
    root = build_rootfs(work / "rootfs")
    with tarfile.open(work / "root.tgz", "w:gz") as tar:
        tar.add(root, ".")
    return (work / "root.tgz").read_bytes()


def event_types_thd(cur, object_id: str) -> list[str]:
    cur.execute("SELECT type FROM events WHERE object_id = %s ORDER BY id", (object_id,))
    return [row[0] for row in cur.fetchall()]


def test_a_deploy_whose_region_dies_at_the_rack_step_is_carried_out_by_another(start_region, lxd_server, dsn,
                                                                                 tmp_path):
    settings = tmp_path / "fast-heartbeats.toml"
    settings.write_text(f"heartbeat_interval = 1\nregion_dead_after = {DEAD_AFTER}\n")
    common = ["--config", str(settings), "--vm-host-refresh-interval", "0"]
    doomed = start_region("doomed", local_rack=True, extra=common, env={"VMYARD_FAULT_DEPLOY": "before-rack"})
    key_copy = tmp_path / "shared.key"
    shutil.copy(doomed.data_dir / "region.key", key_copy)
    survivor = start_region("survivor", local_rack=True, extra=["--secret-key-file", str(key_copy), *common])
    admin = Api(doomed.api, make_user(dsn, region_box(doomed), "admin", admin=True))
    admin2 = Api(survivor.api, admin.apikey)

    host = add_trusted_host(admin, lxd_server)
    content = tiny_rootfs_tgz(tmp_path)
    done = images.upload(admin2, images.create(admin2, content, name="custom/tiny"), content, images.MAAS_CLI_CHUNK)
    assert done["state"] == "complete", done
    made = admin.post(f"vm-hosts/{host['id']}/", data={"op": "compose", "instance_type": "container",
                                                       "hostname": "durable1", "storage": "root:1"})
    assert made.status == 200, made.text
    sid = made.json()["system_id"]
    allocated = admin.post("machines/", data={"op": "allocate", "system_id": sid})
    assert allocated.status == 200, allocated.text
    name = allocated.json()["instance_name"]

    try:  # the region may die before or after its answer is out
        reply = admin.post(f"machines/{sid}/", data={"op": "deploy", "distro_series": "custom/tiny"})
        assert reply.status == 200, reply.text
    except (urllib.error.URLError, http.client.HTTPException, ConnectionError):
        pass
    wait_for(lambda: doomed.proc.poll() is not None, 30, "the region to kill itself at the rack step")
    killed_at = time.monotonic()
    assert admin2.get(f"machines/{sid}/").json()["status_name"] == "Deploying"

    def rack_step_done():
        machine = admin2.get(f"machines/{sid}/").json()
        return machine if machine["status_message"] != "" and (
            machine["status_message"].startswith("Booting") or machine["status_name"] != "Deploying") else None

    machine = wait_for(rack_step_done, 90, "the surviving region to carry the deploy out")
    assert machine["status_name"] == "Deploying" and machine["power_state"] == "on", machine
    assert time.monotonic() - killed_at < 60
    instance = lxc_json(lxd_server, f"/1.0/instances/{name}?project={host['project']}")
    assert instance["status"] == "Running"
    assert instance["config"]["volatile.base_image"] == done["lxd_fingerprint"]
    assert "cloud-init.user-data" in instance["config"]
    assert f"resuming the deploy of {sid}" in survivor.output()
    assert "MACHINE_DEPLOY_RESUMED" in run_sync(dsn, event_types_thd, sid)
