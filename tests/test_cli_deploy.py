"""`vmyard machine allocate|deploy|release` against a real region and real LXD.

VMs cannot start on these machines, so a deploy ends in Failed deployment with LXD's reason:
that is the path the CLI must report (non-zero exit, the reason, the progress it saw).
"""

from __future__ import annotations

import json
import subprocess

from tests.test_cli_vmhosts import failed, ok, vmyard  # noqa: F401 (vmyard is a fixture)
from tests.test_compose_lxd import bridges, lab, second_pool  # noqa: F401 (fixtures)
from tests.test_deploy_e2e import upload


def test_allocate_deploy_and_release_from_the_cli(lab, vmyard, tmp_path):  # noqa: F811
    admin, host = lab
    disk = tmp_path / "disk.qcow2"
    subprocess.run(["qemu-img", "create", "-f", "qcow2", str(disk), "64M"], check=True, capture_output=True)
    upload(admin, disk, "custom/clivm", "qcow2")
    made = admin.post(f"vm-hosts/{host['id']}/", data={"op": "compose", "hostname": "clivm", "cores": "1",
                                                       "memory": "1024", "storage": "root:2"})
    assert made.status == 200, made.text

    allocated = json.loads(ok(vmyard("--json", "machine", "allocate", "--name", "clivm")))
    assert allocated["system_id"] == made.json()["system_id"] and allocated["status_name"] == "Allocated"

    assert "distro_series" in failed(vmyard("machine", "deploy", "clivm", "--distro-series", "custom/nosuch"))

    user_data = tmp_path / "user-data.yaml"
    user_data.write_text("#cloud-config\npackages: []\n")
    result = vmyard("machine", "deploy", "clivm", "--distro-series", "custom/clivm", "--user-data", str(user_data),
                    "--wait", "--timeout", "300")
    assert result.returncode == 1, result.stdout
    assert result.stderr.splitlines()[0].startswith("Deploying")  # the progress it saw, first to last
    assert "clivm: Failed deployment: " in result.stderr  # LXD cannot start VMs here; its reason follows
    shown = admin.get(f"machines/{allocated['system_id']}/").json()
    assert shown["status_name"] == "Failed deployment"

    released = ok(vmyard("machine", "release", "clivm"))
    assert "clivm" in released
    assert admin.get(f"machines/{allocated['system_id']}/").json()["status_name"] in ("Releasing", "Ready")
