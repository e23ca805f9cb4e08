"""Juju's own MAAS client library (gomaasapi, as Debian packages it) against a real region and LXD.

The Go program in tests/clients/gomaasapi/ does what Juju's MAAS provider
does: NewController, Zones, Spaces, AllocateMachine with an interface
constraint on a space (vmyard composes a VM on demand), SetOwnerData,
Machines by agent name, the links of an interface the test linked STATIC
meanwhile (as Juju's maasNetworkInterfaces reads them), ReleaseMachines,
and checks the machine is gone.
With -deploy it runs Juju's bootstrap on a container instead (deploy.go): Start with gzip+base64
user data, SetOwnerData, Machines polled until Deployed, the addresses read from the links.
It is built offline from the Debian packages (GOPATH mode, no module proxy)
and cached by the hash of its source and the Go version.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import make_user, region_box
from tests.fixtures import images
from tests.fixtures.flows import IMAGE, SCALE, TIMEOUT_CAP, compose_container, prepare_host_for_deploys
from tests.fixtures.http import Api
from tests.fixtures.lxd import lxc_json, lxc_missing
from tests.test_compose_lxd import bridges, lab, second_pool  # noqa: F401  (fixtures)

SOURCE = Path(__file__).parent / "clients" / "gomaasapi"
GOCODE = Path("/usr/share/gocode")
PACKAGE = GOCODE / "src" / "github.com" / "juju" / "gomaasapi"


def _go_env(workdir: Path) -> dict[str, str]:
    # GOPATH mode against the Debian-packaged sources; nothing is downloaded.
    env = dict(os.environ, GO111MODULE="off", GOPATH=f"{workdir / 'gopath'}:{GOCODE}", GOPROXY="off",
               GOFLAGS="", GOCACHE=str(workdir / "gocache"), CGO_ENABLED="0")
    env.pop("GOROOT", None)
    return env


@pytest.fixture(scope="session")
def gomaasapi_check(tmp_path_factory) -> Path:
    go = shutil.which("go")
    if go is None:
        pytest.skip("the Go toolchain is not installed (apt package golang-go; scripts/install-deps.sh --test "
                    "installs it)")
    if not (PACKAGE / "controller.go").exists():
        pytest.skip(f"{PACKAGE} is missing (apt package golang-github-juju-gomaasapi-dev; "
                    f"scripts/install-deps.sh --test installs it)")
    version = subprocess.run([go, "version"], capture_output=True, text=True, check=True).stdout
    sources = b"".join(path.read_bytes() for path in sorted(SOURCE.glob("*.go")))
    digest = hashlib.sha256(version.encode() + sources).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vmyard-tests"
    binary = cache / f"gomaasapi-check-{digest}"
    if binary.exists():
        return binary
    workdir = tmp_path_factory.mktemp("gobuild")
    built = subprocess.run([go, "build", "-o", str(workdir / "gomaasapi-check"), "."], cwd=SOURCE,
                           env=_go_env(workdir), capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, f"building the gomaasapi client failed:\n{built.stderr}"
    try:
        cache.mkdir(parents=True, exist_ok=True)
        shutil.copy2(workdir / "gomaasapi-check", binary)
    except OSError:
        return workdir / "gomaasapi-check"  # no writable cache: use this build
    return binary


def test_juju_client_allocates_a_composed_vm_by_space_and_releases_it(gomaasapi_check, lab, lxd_region, dsn,
                                                                      lxd_server, bridges, tmp_path):
    admin, host = lab
    project = host["project"]
    content = images.rootfs_tgz(tmp_path / "tiny.tgz")
    images.upload(admin, images.create(admin, content), content, images.MAAS_CLI_CHUNK)
    dmz = admin.get("spaces/dmz/").json()["id"]
    juju_key = make_user(dsn, region_box(lxd_region), "juju", admin=False)
    proc = subprocess.Popen([str(gomaasapi_check), "-url", lxd_region.api, "-key", juju_key, "-space", "dmz",
                             "-agent", "model-uuid-1", "-pause"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line, f"gomaasapi client failed: {proc.stderr.read()}"
        got = json.loads(line)
        # While allocated: the VM exists in LXD with its NIC on the dmz bridge.
        instance = lxc_json(lxd_server, f"/1.0/instances/{got['hostname']}?project={project}")
        nic = instance["devices"][f"eth{dmz}"]
        assert nic["parent"] == bridges[1]
        # Linked STATIC through the interfaces API (as its owner), read back by gomaasapi below.
        juju = Api(lxd_region.api, juju_key)
        linked = juju.post(f"nodes/{got['system_id']}/interfaces/{got['interface_set'][0]['id']}/",
                           data={"op": "link_subnet", "mode": "STATIC", "subnet": "10.30.0.0/24",
                                 "ip_address": "10.30.0.45"})
        assert linked.status == 200, linked.text
        proc.stdin.write("\n")
        proc.stdin.flush()
        rest, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err

    # BootResources passed gomaasapi's boot resource schema; Juju's architecture list is amd64.
    (resource,) = got["boot_resources"]
    assert resource["name"] == "custom/tiny" and resource["architecture"] == "amd64/generic"
    assert resource["type"] == "Uploaded" and resource["subarches"] == "generic" and resource["id"] > 0
    assert got["architectures"] == ["amd64"]
    assert "default" in got["zones"] and {"storage", "dmz"} <= set(got["spaces"])
    assert got["spaces"]["dmz"] == dmz
    assert got["status_name"] == "Allocated" and got["cpu_count"] == 1 and got["memory"] == 1024
    assert got["zone"] == "default"
    # constraints_by_type: gomaasapi resolved the label to the machine's own NIC and disk.
    matched = got["interface_matches"][str(dmz)]
    assert len(matched) == 1 and matched[0] in got["interface_set"]
    assert matched[0]["name"] == f"eth{dmz}" and matched[0]["vid"] == 30
    assert matched[0]["mac_address"] == instance["devices"][f"eth{dmz}"]["hwaddr"]
    root = got["storage_matches"]["root"]
    assert len(root) == 1 and root[0] in got["blockdevice_set"] and root[0]["size"] == 1000**3
    assert got["owner_data"] == {"juju-machine-id": "0"}
    assert got["machines_by_agent"] == [got["system_id"]]

    (link,) = json.loads(rest.strip().splitlines()[-2])["links"]
    assert link["interface"] == f"eth{dmz}" and link["id"] == linked.json()["links"][0]["id"]
    assert (link["mode"], link["ip_address"], link["cidr"], link["vid"]) == ("static", "10.30.0.45", "10.30.0.0/24", 30)
    assert link["gateway_ip"] == "10.30.0.1" and link["dns_servers"] == []
    released = json.loads(rest.strip().splitlines()[-1])
    assert released == {"released": got["system_id"], "machines_after_release": 0}
    assert lxc_missing(lxd_server, f"/1.0/instances/{got['hostname']}?project={project}")
    assert admin.get("machines/").json() == []


def test_juju_client_gets_a_no_match_error_naming_the_host(gomaasapi_check, lab, lxd_region, dsn):
    admin, host = lab
    juju_key = make_user(dsn, region_box(lxd_region), "juju", admin=False)
    too_many = host["total"]["cores"] + 3
    started = time.monotonic()
    done = subprocess.run([str(gomaasapi_check), "-url", lxd_region.api, "-key", juju_key, "-space", "dmz",
                           "-cpus", str(too_many)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 3, done.stderr
    message = json.loads(done.stdout)["no_match"]
    assert f"VM host {host['name']}: needs {too_many} cores" in message
    assert time.monotonic() - started < 10  # a 409 is not retried
    assert admin.get("machines/").json() == []


def test_juju_client_deploys_a_container_and_reads_its_addresses(gomaasapi_check, lab, lxd_region, dsn, lxd_server,
                                                                  bridges):
    admin, host = lab
    prepare_host_for_deploys(admin, lxd_server, lxd_region, host)
    sid = compose_container(admin, host, "juju-ctl", "eth0:subnet=10.30.0.0/24,ip=10.30.0.63")
    juju_key = make_user(dsn, region_box(lxd_region), "juju", admin=False)
    done = subprocess.run([str(gomaasapi_check), "-url", lxd_region.api, "-key", juju_key, "-agent", "model-uuid-2",
                           "-deploy", sid, "-distro-series", IMAGE, "-cloud-config", "#cloud-config\npackages: []\n",
                           "-poll", f"{10 * SCALE}s", "-timeout", f"{TIMEOUT_CAP}s"],
                          capture_output=True, text=True, timeout=TIMEOUT_CAP + 60)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    # Start's and every poll's replies passed gomaasapi's machine, interface, link and subnet schemas.
    assert got["status_after_start"] == "Deploying" and got["status_name"] == "Deployed"
    assert set(got["statuses_polled"]) <= {"Deploying", "Deployed"}, got["statuses_polled"]
    assert got["osystem"] and got["distro_series"] == IMAGE
    assert got["owner_data"] == {"juju-machine-id": "0", "juju-is-controller": "true"}
    assert got["ip_addresses"] == ["10.30.0.63"]
    assert got["links"] == [{"interface": "eth0", "mode": "static", "ip_address": "10.30.0.63", "subnet": {
        "id": got["links"][0]["subnet"]["id"], "cidr": "10.30.0.0/24", "space": "dmz", "vid": 30, "mtu": 1500,
        "gateway_ip": "10.30.0.1", "dns_servers": []}}]
    assert got["released"] and admin.get(f"machines/{sid}/").json()["status_name"] == "Ready"
    assert f"{sid} deployed (cloud-init reported modules-final)" in lxd_region.output()
