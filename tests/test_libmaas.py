"""python-libmaas 0.6.8 (from PyPI, in its own virtualenv) against a real region, rack and private LXD."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.clients.libmaas_venv import LIBMAAS_VERSION, PyPIUnreachable, ensure_libmaas_venv
from tests.conftest import make_user, region_box
from tests.fixtures.lxd import lxc_json, unique

FLOW = Path(__file__).parent / "clients" / "libmaas_flow.py"


@pytest.fixture(scope="session")
def libmaas_python() -> Path:
    try:
        return ensure_libmaas_venv()
    except PyPIUnreachable as e:
        pytest.skip(f"python-libmaas=={LIBMAAS_VERSION} tests need PyPI: {e}")


def run_flow(python: Path, *args: str) -> dict:
    r = subprocess.run([str(python), str(FLOW), *args], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"libmaas flow {args[0]} failed:\n{r.stdout}\n{r.stderr}"
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_libmaas_pods_compose_machines_and_tags_against_real_lxd(libmaas_python, lxd_region, lxd_api, lxd_server):
    name, project = unique("lm"), unique("lmproj")
    seen = run_flow(libmaas_python, "compose", lxd_region.url, lxd_api.apikey, lxd_server.address,
                    lxd_server.trust_password, name, project)

    created = seen["created"]
    assert created["name"] == name and created["type"] == "lxd"
    assert created["id"] in seen["listed"] and seen["refreshed"] == {"id": created["id"], "name": name}
    read = seen["read"]
    assert isinstance(read["cpu_over_commit_ratio"], float) and read["cpu_over_commit_ratio"] == 1.0
    assert "composable" in read["capabilities"] and read["architectures"]
    assert read["total"]["cores"] > 0 and read["total"]["memory"] > 0 and read["zone"] == "default"
    assert read["storage_pools"], "the LXD host's storage pools"
    for pool in read["storage_pools"]:
        assert isinstance(pool["total"], int) and isinstance(pool["used"], int) and isinstance(pool["available"], int)
        assert pool["type"] and pool["name"]
    lxd_pools = {p["name"]: p["driver"] for p in lxc_json(lxd_server, "/1.0/storage-pools?recursion=1")}
    assert {p["name"]: p["type"] for p in read["storage_pools"]} == lxd_pools

    saved = seen["saved"]
    assert saved["name"] == name + "-renamed" and "from-libmaas" in saved["tags"]
    assert {"power_address", "project", "certificate", "key"} <= set(seen["parameter_keys"])
    stored = lxd_api.get(f"vm-hosts/{created['id']}/").json()
    assert stored["name"] == name + "-renamed" and "from-libmaas" in stored["tags"]

    system_id = seen["composed"]["system_id"]
    assert seen["composed"]["resource_uri"] == f"/MAAS/api/2.0/machines/{system_id}/"
    assert system_id in seen["machines_listed"]
    machine = seen["machine"]
    assert machine["system_id"] == system_id and machine["cpus"] == 1 and machine["memory"] == 1024
    assert machine["status"] == "READY" and machine["status_name"] == "Ready"
    assert machine["power_state"] in ("on", "off") and machine["zone"] == "default"
    instance = lxc_json(lxd_server, f"/1.0/instances/{machine['instance_name']}?project={project}")
    assert instance["type"] == "virtual-machine"
    assert instance["config"]["limits.cpu"] == "1" and instance["config"]["limits.memory"] == str(1024 * 2**20)
    assert instance["devices"]["root"]["size"] == str(1000**3)

    assert seen["tagged_machine"]["tags"] == sorted({*machine["tags"], "libmaas-tag"})
    assert "libmaas-tag" in seen["tags_listed"]
    assert "libmaas-tag" not in seen["untagged_machine"]["tags"]
    assert lxd_api.get("tags/libmaas-tag/").status == 404

    gone = run_flow(libmaas_python, "teardown", lxd_region.url, lxd_api.apikey, str(created["id"]), system_id)
    assert system_id not in gone["machines_after_delete"] and gone["deleted_machine_status"] == 404
    assert created["id"] not in gone["pods_after_delete"]
    assert lxc_json(lxd_server, f"/1.0/instances?project={project}") == []


def test_libmaas_login_with_username_and_password(libmaas_python, region, dsn):
    make_user(dsn, region_box(region), "libby", admin=False)  # password "pw-libby"
    seen = run_flow(libmaas_python, "login", region.url, "libby", "pw-libby")
    assert seen["username"] == "libby" and seen["is_admin"] is False
    assert "authenticate-api" in seen["capabilities"]
    assert seen["version_info"][:1] == [int(seen["version"].split(".")[0])]
    assert "default" in seen["zones"]

    r = subprocess.run([str(libmaas_python), str(FLOW), "login", region.url, "libby", "wrong"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "401" in r.stderr
