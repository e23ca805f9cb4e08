"""Machines screen in headless Chromium against real LXD: Deploy with the image picker shows the
machine's progress live (Deploying, then Failed deployment with the reason: the empty disk image
has no cloud-init to report back, so LXD refusing to start the VM here or the region's 20 s deploy
timeout ends it), then Release."""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import make_user, region_box
from tests.fixtures import images
from tests.fixtures.browser import Screens, chromium  # noqa: F401  (fixture)
from tests.fixtures.http import Api
from tests.test_vmhosts_lxd import add_trusted_host

pytestmark = pytest.mark.slow


def test_deploy_progress_failure_reason_and_release(chromium, start_region, dsn, lxd_server, tmp_path):  # noqa: F811
    region = start_region("uideploy", local_rack=True,
                          extra=["--vm-host-refresh-interval", "0", "--deploy-timeout", "20"])
    admin = Api(region.api, make_user(dsn, region_box(region), "admin", admin=True))
    host = add_trusted_host(admin, lxd_server)
    disk = tmp_path / "disk.qcow2"
    subprocess.run(["qemu-img", "create", "-f", "qcow2", str(disk), "64M"], check=True, capture_output=True)
    content = disk.read_bytes()
    made = images.create(admin, content, name="custom/uitinyvm", filetype="qcow2")
    assert images.the_file(images.upload(admin, made, content, images.MAAS_CLI_CHUNK))["complete"]
    composed = admin.post(f"vm-hosts/{host['id']}/", data={"op": "compose", "hostname": "uideploy", "cores": "1",
                                                          "memory": "1024", "storage": "root:1"})
    assert composed.status == 200, composed.text
    sid = composed.json()["system_id"]

    try:
        chromium.delete_all_cookies()
        ui = Screens(chromium, region.url.removesuffix("/MAAS/"))
        ui.open("#/machines")
        ui.login("admin", "pw-admin")
        row = 'tr[data-machine="uideploy"]'
        ui.wait_text(row, "Ready")
        ui.wait_text("#deploy-image", "custom/uitinyvm")
        ui.press("Deploy", within=row)
        ui.wait_text(f"{row} .status", "Deploying")
        ui.shot("16-machines-deploying")
        failed = ui.wait_text(f"{row} .status", "Failed deployment", timeout=120)
        reason = admin.get(f"machines/{sid}/").json()["status_message"]
        assert reason and reason in failed.text
        ui.shot("17-machines-failed")
        # Images lists the hosts that hold each image as the API reports them.
        holders = [h["name"] for h in admin.get("vm-hosts/").json()
                   if any(i["id"] == made["id"] and i.get("copying") is None for i in h["images"])]
        ui.go("#/images")
        ui.wait_text('tr[data-image="custom/uitinyvm"]', ", ".join(holders) or "—")
        ui.shot("18-images")
        ui.go("#/machines")
        ui.press("Release", within=row)
        ui.wait_text(f"{row} .status", "Ready", timeout=60)
        assert admin.get(f"machines/{sid}/").json()["status_name"] == "Ready"
    finally:
        admin.delete(f"vm-hosts/{host['id']}/", data={"decompose": "true"})
