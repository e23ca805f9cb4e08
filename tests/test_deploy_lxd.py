"""Deploying with LXDDriver against the REAL private LXD (rack/drivers/lxd_deploy.py): the image
fetched from an HTTP server standing in for the region and imported once, the instance rebuilt
from it with its MACs and volumes, real cloud-init in a container, a VM that cannot start here."""

from __future__ import annotations

import hashlib
import http.server
import json
import subprocess
import tarfile
import threading
import time
from pathlib import Path

import pytest

from common.models import CloudInitData, HostTarget, ImageRef, RequestedDisk, RequestedNic
from devstack.debian_image import debian_image
from rack.drivers.base import DriverError
from rack.drivers.lxd import LXDDriver
from rack.drivers.image_fetch import ThrottledProgress
from region.services import cloudinit
from tests.fixtures.lxd import lxc_json
from tests.test_lxd_compose import _host, _make_project, _request, bridge, driver, trusted  # noqa: F401
from tests.test_lxd_driver import in_project, purge_project

GiB = 1024**3
TOKEN = "secret-token"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl owner@laptop"
USER_DATA = "#cloud-config\nwrite_files:\n  - {path: /var/tmp/deployed, content: deployed by vmyard}\n"


class ImageServer:
    """Serves files at /images/<sha256> to requests with the bearer token; counts the downloads."""

    def __init__(self) -> None:
        self.files: dict[str, Path] = {}
        self.downloads: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fingerprint = self.path.rsplit("/", 1)[-1]
                if self.headers.get("Authorization") != f"Bearer {TOKEN}" or fingerprint not in server.files:
                    self.send_error(403)
                    return
                server.downloads.append(fingerprint)
                data = server.files[fingerprint].read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def add(self, path: Path, filetype: str) -> ImageRef:
        fingerprint = hashlib.sha256(path.read_bytes()).hexdigest()
        self.files[fingerprint] = path
        port = self.httpd.server_address[1]
        return ImageRef(fingerprint, f"http://127.0.0.1:{port}/MAAS/images/{fingerprint}", TOKEN, path.stat().st_size,
                        filetype)


@pytest.fixture(scope="module")
def images():
    server = ImageServer()
    yield server
    server.httpd.shutdown()


@pytest.fixture
def project(lxd_server):
    name = _make_project(lxd_server, True)  # its own images, profiles and volumes
    try:
        yield name
    finally:
        purge_project(lxd_server, name)  # its images too


def _instance(lxd_server, name: str, project: str) -> dict:
    return lxc_json(lxd_server, f"/1.0/instances/{name}?project={project}")


def _exec(lxd_server, name: str, project: str, *command: str) -> str:
    return lxd_server.lxc("exec", name, "--project", project, "--", *command)


def _wait_for_cloud_init(driver: LXDDriver, target: HostTarget, name: str) -> tuple[str, str]:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        status, detail = driver.cloud_init_status(target, name)
        if status in ("done", "error"):
            return status, detail
        time.sleep(2)
    raise AssertionError(f"cloud-init did not finish: {detail}")


def test_a_container_is_rebuilt_from_the_image_and_cloud_init_runs(lxd_server, driver, trusted, project, bridge,
                                                                    images):
    arch, _ = _host(lxd_server)
    target = in_project(trusted, project)
    name = "deploy1"
    request = _request(name, arch, instance_type="container",
                       disks=[RequestedDisk("root", 2 * GiB, "default"),
                              RequestedDisk("disk1", GiB, "default", path="/mnt/data")],
                       nics=[RequestedNic("eth0", "bridged", bridge)])
    driver.compose_vm(target, request)
    before = _instance(lxd_server, name, project)
    lxd_server.lxc("profile", "create", "extra", "--project", project)
    lxd_server.lxc("profile", "set", "extra", "user.marker", "yes", "--project", project)

    image = images.add(debian_image().lxd_unified, "lxd")
    mac = before["devices"]["eth0"].get("hwaddr") or before["config"]["volatile.eth0.hwaddr"]
    webhook = cloudinit.Webhook("http://127.0.0.1:9/MAAS/metadata/status/x", "c", "t", "s")  # nobody listens
    network = cloudinit.network_config([cloudinit.NicConfig("eth0", mac, [
        cloudinit.NicAddress("10.77.0.5", "10.77.0.0/24", "10.77.0.1", ["10.77.0.2"])])], match_mac=False)
    data = CloudInitData(cloudinit.user_data(cloudinit.Identity(name, f"{name}.maas", [KEY]), webhook, USER_DATA),
                         network)

    assert driver.deploy_machine(target, name, image, data, ["extra"]) == "on"
    after = _instance(lxd_server, name, project)
    assert after["status"] == "Running" and after["profiles"] == [*before["profiles"], "extra"]
    assert after["config"]["cloud-init.user-data"] == data.user_data
    assert after["config"]["cloud-init.network-config"] == network
    assert after["config"]["limits.cpu"] == before["config"]["limits.cpu"]
    assert after["config"]["limits.memory"] == before["config"]["limits.memory"]
    assert after["devices"]["eth0"]["hwaddr"] == mac and after["devices"]["disk1"] == before["devices"]["disk1"]
    assert after["devices"]["root"] == before["devices"]["root"]

    status, detail = _wait_for_cloud_init(driver, target, name)
    assert status == "done", detail
    assert _exec(lxd_server, name, project, "cat", "/var/tmp/deployed") == "deployed by vmyard"
    assert KEY in _exec(lxd_server, name, project, "sh", "-c", "cat /home/*/.ssh/authorized_keys")
    assert "10.77.0.5/24" in _exec(lxd_server, name, project, "ip", "-o", "addr", "show", "eth0")
    assert _exec(lxd_server, name, project, "hostname").strip() == name
    assert _exec(lxd_server, name, project, "mountpoint", "/mnt/data").strip() == "/mnt/data is a mountpoint"

    driver.erase_machine(target, name, ["extra"])
    erased = _instance(lxd_server, name, project)
    assert erased["status"] == "Stopped" and erased["profiles"] == before["profiles"]
    assert not [k for k in erased["config"] if k.startswith("cloud-init.")]
    assert erased["devices"] == after["devices"]  # MACs and volumes stay
    assert images.downloads.count(image.fingerprint) == 1


def test_concurrent_deploys_import_an_image_once(lxd_server, driver, trusted, project, images):
    image = images.add(debian_image().lxd_unified, "lxd")
    target = in_project(trusted, project)
    before = images.downloads.count(image.fingerprint)
    errors: list[Exception] = []
    reports: list[tuple[str, int]] = []  # progress of the one copy, whichever thread makes it

    def ensure() -> None:
        try:
            with driver._connect(target, None) as (client, _):
                driver._ensure_image(client, target, image, ThrottledProgress(lambda *report: reports.append(report)))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=ensure) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and images.downloads.count(image.fingerprint) == before + 1
    assert lxc_json(lxd_server, f"/1.0/images/{image.fingerprint}?project={project}")["type"] == "container"
    # Reported as it went: each stage from its first bytes to 100%, at most every 2 s between.
    assert [r for r in reports if r[1] == 100] == [("fetching", 100), ("importing", 100)]
    assert [stage for stage, _ in reports] == sorted((stage for stage, _ in reports), key=["fetching",
                                                                                             "importing"].index)
    assert len(reports) <= 4 + 2 * 60  # never a report per block


def test_a_damaged_download_is_refused_and_nothing_is_touched(lxd_server, driver, trusted, project, images,
                                                              tmp_path):
    arch, _ = _host(lxd_server)
    target = in_project(trusted, project)
    driver.compose_vm(target, _request("keep1", arch, instance_type="container",
                                       disks=[RequestedDisk("root", GiB, "default")]))
    before = _instance(lxd_server, "keep1", project)
    path = tmp_path / "img.tar"
    path.write_bytes(b"not an image")
    good = images.add(path, "lxd")
    with pytest.raises(DriverError, match="damaged"):
        driver.deploy_machine(target, "keep1", ImageRef(good.fingerprint, good.url, TOKEN, good.size + 1, "lxd"),
                              CloudInitData("", ""), [])
    with pytest.raises(DriverError, match="refused the image download"):
        driver.deploy_machine(target, "keep1", ImageRef(good.fingerprint, good.url, "wrong", good.size, "lxd"),
                              CloudInitData("", ""), [])
    with pytest.raises(DriverError, match="could not import"):
        driver.deploy_machine(target, "keep1", good, CloudInitData("", ""), [])
    assert _instance(lxd_server, "keep1", project)["config"] == before["config"]


def _vm_image(tmp_path: Path, arch: str) -> Path:
    """A tiny LXD VM image: metadata.yaml and an empty 64 MiB qcow2 disk."""
    disk = tmp_path / "rootfs.img"
    subprocess.run(["qemu-img", "create", "-f", "qcow2", str(disk), "64M"], check=True, capture_output=True)
    metadata = tmp_path / "metadata.yaml"
    metadata.write_text(json.dumps({"architecture": arch, "creation_date": int(time.time()),
                                    "properties": {"os": "test", "release": "tiny"}}))
    unified = tmp_path / "vm-image.tar"
    with tarfile.open(unified, "w") as tar:
        tar.add(metadata, "metadata.yaml")
        tar.add(disk, "rootfs.img")
    return unified


def test_a_vm_is_built_from_its_image_with_a_config_drive_and_lxds_refusal_to_start_is_reported(
        lxd_server, driver, trusted, project, images, tmp_path):
    arch, _ = _host(lxd_server)
    target = in_project(trusted, project)
    driver.compose_vm(target, _request("vm1", arch))
    before = _instance(lxd_server, "vm1", project)
    image = images.add(_vm_image(tmp_path, arch), "qcow2")
    data = CloudInitData("#cloud-config\n{}\n", "version: 2\nethernets: {}\n")
    try:
        state = driver.deploy_machine(target, "vm1", image, data, [])
    except DriverError as e:  # this machine cannot run VMs: LXD's own reason
        with pytest.raises(subprocess.CalledProcessError) as lxc:
            lxd_server.lxc("start", "vm1", "--project", project)
        reason = lxc.value.stderr.split("Error: ", 1)[1].splitlines()[0]
        assert str(e).startswith("LXD could not start 'vm1': ") and reason in str(e)
    else:
        assert state == "on"
    built = lxd_server.lxc("config", "show", "vm1", "--project", project)
    assert "cloud-init.user-data: |\n    #cloud-config" in built and "cloud-init.network-config:" in built
    shown = _instance(lxd_server, "vm1", project)
    assert shown["devices"]["cloud-init"] == {"type": "disk", "source": "cloud-init:config"}
    assert {k: v for k, v in shown["devices"].items() if k != "cloud-init"} == before["devices"]
    assert shown["config"]["volatile.base_image"] == image.fingerprint

    driver.erase_machine(target, "vm1", [])
    erased = _instance(lxd_server, "vm1", project)
    assert "cloud-init" not in erased["devices"] and "volatile.base_image" not in erased["config"]
