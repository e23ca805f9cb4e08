"""Image sync from a simplestreams source: a fake stream served on loopback, never the internet."""

from __future__ import annotations

import argparse
import functools
import hashlib
import http.server
import io
import json
import subprocess
import tarfile
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.config import ConfigError
from devstack.daemons import free_port
from region import config
from region.cli import user as cli
from region.db import image_sync as sync_rows
from region.db.pool import run_sync
from region.services import simplestreams
from tests.conftest import make_user, region_box
from tests.fixtures.http import Api

RELEASED = "streams/v1/com.ubuntu.cloud:released:download.json"


def root_tar_xz(path: Path, marker: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:xz") as tar:
        for name, data in (("etc/hostname", b"synced\n"), ("etc/marker", marker.encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())
    return buf.getvalue()


def tiny_qcow2(path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "16M"], check=True)
    return path.read_bytes()


def item(ftype: str, path: str, content: bytes, *, sha256: str | None = None) -> dict:
    return {"ftype": ftype, "path": path, "size": len(content), "sha256": sha256 or hashlib.sha256(content).hexdigest()}


class Mirror:
    """A fake simplestreams tree in a directory, served by a threaded http.server on 127.0.0.1."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: list[str] = []
        self.products: dict = {}
        mirror = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args) -> None:
                mirror.requests.append(self.path)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=root))
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/releases/"

    def add_version(self, release: str, version: str, items: dict) -> None:
        product = self.products.setdefault(f"com.ubuntu.cloud:server:{release}:amd64", {
            "os": "ubuntu", "release": release, "arch": "amd64", "release_title": release.title(), "versions": {}})
        product["versions"][version] = {"items": items}
        streams = self.root / "releases" / "streams" / "v1"
        streams.mkdir(parents=True, exist_ok=True)
        (streams / "index.json").write_text(json.dumps({"format": "index:1.0", "index": {
            "com.ubuntu.cloud:released:download": {"datatype": "image-downloads", "format": "products:1.0",
                                                   "path": RELEASED, "products": sorted(self.products)}}}))
        (self.root / "releases" / RELEASED).write_text(json.dumps({"format": "products:1.0",
                                                                   "products": self.products}))

    def file(self, rel: str) -> Path:
        return self.root / "releases" / rel

    def fetched(self, rel: str) -> int:
        return sum(1 for p in self.requests if p.endswith(rel))


@pytest.fixture
def mirror(tmp_path):
    served = Mirror(tmp_path / "mirror")
    yield served
    served.server.shutdown()


def sync_region(start_region, tmp_path, dsn, url: str, image_type: str = "container", interval: float = 3600):
    config = tmp_path / "regiond.toml"
    config.write_text(f'boot_source_url = "{url}"\nboot_source_releases = ["noble", "jammy"]\n'
                      f'boot_source_image_type = "{image_type}"\nboot_source_interval = {interval}\n')
    region = start_region("syncregion", extra=["--config", str(config)])
    return region, Api(region.api, make_user(dsn, region_box(region), "admin", admin=True))


def wait_until_synced(api: Api, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while api.get("boot-resources/", query={"op": "is_importing"}).json():
        assert time.monotonic() < deadline, "the sync did not finish"
        time.sleep(0.2)
    (source,) = api.get("boot-sources/").json()
    return source


def image_files(region) -> list[str]:
    return sorted(p.name for p in (region.data_dir / "images").iterdir())


def test_container_images_sync_newest_once_and_refuse_a_corrupted_file(start_region, tmp_path, dsn, mirror):
    root_tar_xz(mirror.file("noble/old/root.tar.xz"), "old")
    mirror.add_version("noble", "20240101", {"root.tar.xz": item("root.tar.xz", "noble/old/root.tar.xz",
                                                                 mirror.file("noble/old/root.tar.xz").read_bytes())})
    noble = root_tar_xz(mirror.file("noble/new/root.tar.xz"), "new")
    mirror.add_version("noble", "20240301", {"root.tar.xz": item("root.tar.xz", "noble/new/root.tar.xz", noble),
                                             "disk1.img": item("disk1.img", "noble/new/disk1.img", b"x")})
    jammy = root_tar_xz(mirror.file("jammy/root.tar.xz"), "jammy")
    mirror.add_version("jammy", "20240301", {"root.tar.xz": item("root.tar.xz", "jammy/root.tar.xz", jammy,
                                                                 sha256="0" * 64)})
    region, api = sync_region(start_region, tmp_path, dsn, mirror.url)

    assert api.get("boot-resources/", query={"op": "is_importing"}).json() is False
    started = api.post("boot-resources/", query={"op": "import"}, data={})
    assert started.status == 200 and started.text == "Import of boot resources started"
    source = wait_until_synced(api)
    assert source["url"] == mirror.url and source["releases"] == ["noble", "jammy"]
    assert "ubuntu/jammy" in source["last_sync_error"] and "sha256" in source["last_sync_error"]

    (resource,) = api.get("boot-resources/").json()  # the corrupted jammy left no row
    assert (resource["name"], resource["architecture"], resource["type"]) == ("ubuntu/noble", "amd64/generic", "Synced")
    (image_set,) = resource["sets"].values()
    assert image_set["version"] == "20240301" and image_set["complete"] and image_set["progress"] == 100.0
    file = image_set["files"]["root.tar.xz"]
    assert file["sha256"] == hashlib.sha256(noble).hexdigest() and file["filetype"] == "tgz"
    assert image_files(region) == [f"lxd-{resource['lxd_fingerprint']}.tar"]  # no partial or jammy bytes
    with tarfile.open(region.data_dir / "images" / f"lxd-{resource['lxd_fingerprint']}.tar") as unified:
        assert unified.getnames()[0] == "metadata.yaml"
        assert unified.extractfile("rootfs/etc/marker").read() == b"new"
    assert mirror.fetched("noble/new/root.tar.xz") == 1 and mirror.fetched("noble/old/root.tar.xz") == 0
    upload_uri = file["upload_uri"].split("/api/2.0/", 1)[1]
    assert api.request("PUT", upload_uri, body=b"x", headers={"Content-Type": "application/octet-stream"}).status \
        == 409  # a synced image takes no uploads

    assert api.post("boot-resources/", query={"op": "import"}, data={}).status == 200
    wait_until_synced(api)
    assert mirror.fetched("noble/new/root.tar.xz") == 1  # already current: not downloaded again
    assert api.get("boot-resources/").json() == [resource]

    newer = root_tar_xz(mirror.file("noble/newer/root.tar.xz"), "newer")
    mirror.add_version("noble", "20240401", {"root.tar.xz": item("root.tar.xz", "noble/newer/root.tar.xz", newer,
                                                                 sha256="1" * 64)})
    assert api.post("boot-resources/", query={"op": "import"}, data={}).status == 200
    assert "ubuntu/noble" in wait_until_synced(api)["last_sync_error"]
    (kept,) = api.get("boot-resources/").json()  # the corrupted newer version put the older one back
    assert {k: kept[k] for k in ("id", "sets", "state", "lxd_fingerprint")} == \
        {k: resource[k] for k in ("id", "sets", "state", "lxd_fingerprint")}
    assert image_files(region) == [f"lxd-{resource['lxd_fingerprint']}.tar"]

    mirror.add_version("noble", "20240401", {"root.tar.xz": item("root.tar.xz", "noble/newer/root.tar.xz", newer)})
    assert api.post("boot-resources/", query={"op": "import"}, data={}).status == 200
    assert wait_until_synced(api)["last_sync_error"] == source["last_sync_error"]  # only jammy's
    (updated,) = api.get("boot-resources/").json()
    assert updated["id"] == resource["id"] and list(updated["sets"]) == ["20240401"]
    assert image_files(region) == [f"lxd-{updated['lxd_fingerprint']}.tar"]  # the older LXD image is gone


def test_vm_image_syncs_with_the_cli_progress_bar(start_region, tmp_path, dsn, mirror, monkeypatch, capsys):
    disk = tiny_qcow2(mirror.file("noble/disk-kvm.img"))
    mirror.add_version("noble", "20240301", {"disk-kvm.img": item("disk-kvm.img", "noble/disk-kvm.img", disk)})
    jammy = tiny_qcow2(mirror.file("jammy/disk1.img"))
    mirror.add_version("jammy", "20240301", {"disk1.img": item("disk1.img", "jammy/disk1.img", jammy)})
    region, api = sync_region(start_region, tmp_path, dsn, mirror.url, "virtual-machine")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    assert cli.main(["login", "lab", region.url, api.apikey]) == 0
    capsys.readouterr()

    assert cli.main(["images", "sync", "--wait"]) == 0
    out = capsys.readouterr()
    assert "Import of boot resources started" in out.out and "in sync" in out.out
    assert "100%" in out.err
    by_name = {r["name"]: r for r in api.get("boot-resources/").json()}
    assert set(by_name) == {"ubuntu/noble", "ubuntu/jammy"}
    (noble_set,) = by_name["ubuntu/noble"]["sets"].values()
    assert noble_set["files"]["disk-kvm.img"]["filetype"] == "qcow2" and noble_set["complete"]
    assert "disk1.img" in next(iter(by_name["ubuntu/jammy"]["sets"].values()))["files"]
    fingerprint = by_name["ubuntu/noble"]["lxd_fingerprint"]
    with tarfile.open(region.data_dir / "images" / f"lxd-{fingerprint}.tar") as unified:
        assert unified.getnames() == ["metadata.yaml", "rootfs.img"]


def test_a_file_longer_or_shorter_than_the_stream_says_is_refused(start_region, tmp_path, dsn, mirror):
    for release in ("noble", "jammy"):
        content = root_tar_xz(mirror.file(f"{release}/root.tar.xz"), release)
        listed = item("root.tar.xz", f"{release}/root.tar.xz", content)
        listed["size"] += 100 if release == "noble" else -100
        mirror.add_version(release, "20240301", {"root.tar.xz": listed})
    region, api = sync_region(start_region, tmp_path, dsn, mirror.url)
    assert api.post("boot-resources/", query={"op": "import"}, data={}).status == 200
    error = wait_until_synced(api)["last_sync_error"]
    assert "ubuntu/noble" in error and "bytes" in error and "ubuntu/jammy" in error and "larger" in error
    assert api.get("boot-resources/").json() == []
    assert image_files(region) == []


def test_the_periodic_sync_runs_by_itself(start_region, tmp_path, dsn, mirror):
    noble = root_tar_xz(mirror.file("noble/root.tar.xz"), "periodic")
    mirror.add_version("noble", "20240301", {"root.tar.xz": item("root.tar.xz", "noble/root.tar.xz", noble)})
    region, api = sync_region(start_region, tmp_path, dsn, mirror.url, interval=1)
    deadline = time.monotonic() + 30
    while not [r for r in api.get("boot-resources/").json() if r["state"] == "complete"]:
        assert time.monotonic() < deadline, "no periodic sync"
        time.sleep(0.3)
    assert "the source has no container image of ubuntu/jammy" in wait_until_synced(api)["last_sync_error"]


def test_an_unreachable_source_is_an_error_on_the_source_not_a_crash(start_region, tmp_path, dsn):
    region, api = sync_region(start_region, tmp_path, dsn, f"http://127.0.0.1:{free_port()}/")
    assert api.post("boot-resources/", query={"op": "import"}, data={}).status == 200
    source = wait_until_synced(api)
    assert "index.json" in source["last_sync_error"] and source["last_sync_finished"]
    assert api.get("boot-resources/").json() == []
    assert api.get("version/").status == 200
    assert "image sync" in region.output()


def test_without_a_source_import_is_refused_and_admin_only(region, admin_api, user_api):
    assert admin_api.get("boot-sources/").json() == []
    refused = admin_api.post("boot-resources/", query={"op": "import"}, data={})
    assert refused.status == 400 and "boot_source_url" in refused.text
    assert user_api.post("boot-resources/", query={"op": "import"}, data={}).status == 403
    assert user_api.get("boot-resources/", query={"op": "is_importing"}).json() is False


# -- choosing from a product file (pure) -------------------------------------------------------

def product(release: str, versions: dict, **extra) -> dict:
    return {"os": "ubuntu", "release": release, "arch": "amd64", "versions": versions, **extra}


def version_items(*ftypes: str) -> dict:
    return {"items": {f: {"ftype": f, "path": f"p/{f}", "sha256": "a" * 64, "size": 10} for f in ftypes}}


def test_selection_takes_the_newest_version_that_has_the_wanted_file():
    doc = {"products": {"a": product("noble", {"20240101": version_items("root.tar.xz", "disk1.img"),
                                               "20240301": version_items("disk1.img"),
                                               "20240201": version_items("root.tar.xz")})}}
    (container,) = simplestreams.select(doc, ("noble",), ("amd64",), "container")
    assert (container.version, container.ftype, container.name) == ("20240201", "root.tar.xz", "ubuntu/noble")
    (vm,) = simplestreams.select(doc, ("noble",), ("amd64",), "virtual-machine")
    assert (vm.version, vm.ftype, vm.filetype) == ("20240301", "disk1.img", "qcow2")
    assert simplestreams.select(doc, ("jammy",), ("amd64",), "container") == []


def test_selection_prefers_disk_kvm_and_lxd_cloud_variants():
    doc = {"products": {
        "a": product("noble", {"1": version_items("disk1.img", "disk-kvm.img")}),
        "b": product("jammy", {"1": version_items("root.tar.xz")}, os="Ubuntu", variant="default"),
        "c": product("jammy", {"2": version_items("root.tar.xz")}, os="Ubuntu", variant="cloud"),
    }}
    (vm,) = simplestreams.select(doc, ("noble",), ("amd64",), "virtual-machine")
    assert vm.ftype == "disk-kvm.img"
    (jammy,) = simplestreams.select(doc, ("jammy",), ("amd64",), "container")
    assert jammy.version == "2"


@pytest.mark.parametrize("path", ["/etc/passwd", "../x", "a/../../x", "http://evil/x", "javascript:x", "a b", ""])
def test_a_path_outside_the_source_is_refused(path):
    assert simplestreams.safe_path("images/ubuntu/noble/amd64/cloud/20240101_07:42/rootfs.tar.xz")
    doc = {"products": {"a": product("noble", {"1": {"items": {"r": {
        "ftype": "root.tar.xz", "path": path, "sha256": "a" * 64, "size": 1}}}})}}
    with pytest.raises(simplestreams.BadStream):
        simplestreams.select(doc, ("noble",), ("amd64",), "container")
    with pytest.raises(simplestreams.BadStream):
        simplestreams.product_files({"index": {"x": {"datatype": "image-downloads", "format": "products:1.0",
                                                     "path": path}}})


@pytest.mark.parametrize("url, accepted", [("https://cloud-images.ubuntu.com/releases/", True),
                                           ("http://127.0.0.1:8000/", True),
                                           ("http://cloud-images.ubuntu.com/releases/", False),
                                           ("ftp://127.0.0.1/", False)])
def test_the_source_must_be_https_unless_on_loopback(tmp_path, url, accepted):
    parser = argparse.ArgumentParser()
    config.add_arguments(parser)
    args = parser.parse_args(["--data-dir", str(tmp_path), "--boot-source-url", url])
    if accepted:
        assert config.from_arguments(args).boot_source_url == url
    else:
        with pytest.raises(ConfigError, match="https"):
            config.from_arguments(args)


@given(st.dictionaries(st.from_regex(r"20[0-9]{6}(\.[0-9])?", fullmatch=True),
                       st.sets(st.sampled_from(["root.tar.xz", "disk1.img", "disk-kvm.img", "squashfs"])),
                       max_size=8))
def test_selection_is_the_newest_version_with_a_wanted_file(versions):
    doc = {"products": {"p": product("noble", {v: version_items(*ftypes) for v, ftypes in versions.items()})}}
    for image_type, ftypes in simplestreams.WANTED_FTYPES.items():
        having = [v for v, present in versions.items() if present & set(ftypes)]
        chosen = simplestreams.select(doc, ("noble",), ("amd64",), image_type)
        assert [s.version for s in chosen] == ([max(having)] if having else [])
        for s in chosen:
            assert s.ftype == next(f for f in ftypes if f in versions[s.version])


def test_one_region_at_a_time_holds_the_sync_lease(dsn):
    assert run_sync(dsn, sync_rows.claim_thd, "region-a", 60)
    assert not run_sync(dsn, sync_rows.claim_thd, "region-b", 60)
    assert not run_sync(dsn, sync_rows.renew_thd, "region-b", 60) and run_sync(dsn, sync_rows.renew_thd, "region-a", 60)
    assert run_sync(dsn, sync_rows.state_thd).importing
    run_sync(dsn, sync_rows.release_thd, "region-a", "it failed")
    state = run_sync(dsn, sync_rows.state_thd)
    assert not state.importing and state.error == "it failed" and state.finished is not None
    assert not run_sync(dsn, sync_rows.claim_thd, "region-b", 60, finished_before=3600)  # the periodic: not due
    assert run_sync(dsn, sync_rows.claim_thd, "region-b", 0.01, finished_before=0.0)
    time.sleep(0.05)
    assert run_sync(dsn, sync_rows.claim_thd, "region-a", 60)  # an expired lease is taken over
