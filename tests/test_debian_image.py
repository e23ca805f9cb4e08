"""The Debian test image: built once into the cache, and real cloud-init runs in it under LXD."""

from __future__ import annotations

import json
import platform
import tarfile
import threading
import time
from pathlib import Path

import pytest

from devstack import debian_image as image_module
from tests.fixtures.cloud_init import CloudInitContainer, debian_lxd_image  # noqa: F401  (fixture)
from tests.fixtures.lxd import lxc_json

USER_DATA = """#cloud-config
write_files:
  - path: /var/tmp/vmyard/written
    content: written by cloud-init
    permissions: '0640'
runcmd:
  - [sh, -c, 'echo "runcmd ran as $(id -un)" > /var/tmp/vmyard/ran']
"""
NO_INTERFACES = "version: 2\nethernets: {}\n"
NETWORK_CONFIG = """version: 2
ethernets:
  eth0:
    match: {macaddress: "00:16:3e:12:34:56"}
    set-name: eth0
    addresses: [10.20.0.5/24]
    routes: [{to: 0.0.0.0/0, via: 10.20.0.1}]
    nameservers: {addresses: [10.20.0.2], search: [maas]}
"""


# -- the cache: one build, whoever asks, and never a half-built entry ----------------------------

def _fake_build(calls: list[str], fail: bool = False):
    def build(work: Path) -> None:
        calls.append(work.name)
        time.sleep(0.2)  # long enough for the other callers to queue on the lock
        if fail:
            raise RuntimeError("mirror unreachable")
        (work / "rootfs.tar.gz").write_bytes(b"tgz")
        (work / "lxd-unified.tar.gz").write_bytes(b"unified")

    return build


def test_parallel_callers_build_once_and_share_the_entry(tmp_path, monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(image_module, "_build", _fake_build(calls))
    (tmp_path / f".{image_module.entry_name()}.building-dead").mkdir()  # a builder that died
    found = []
    threads = [threading.Thread(target=lambda: found.append(image_module.debian_image(tmp_path)))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert {image.directory for image in found} == {tmp_path / image_module.entry_name()}
    assert sum(image.build_seconds is not None for image in found) == 1, "the others waited, then reused it"
    assert found[0].lxd_unified.read_bytes() == b"unified"
    assert not list(tmp_path.glob(".*building*")), "the dead builder's leftovers are gone"


def test_a_failed_build_leaves_nothing_and_the_next_call_builds_again(tmp_path, monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(image_module, "_build", _fake_build(calls, fail=True))
    with pytest.raises(RuntimeError, match="mirror unreachable"):
        image_module.debian_image(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [f"{image_module.entry_name()}.lock"]
    monkeypatch.setattr(image_module, "_build", _fake_build(calls))
    assert image_module.debian_image(tmp_path).build_seconds is not None
    assert len(calls) == 2


def test_the_entry_is_keyed_by_suite_and_packages():
    assert image_module.entry_name() == image_module.entry_name("bookworm", tuple(reversed(image_module.PACKAGES)))
    assert image_module.entry_name() != image_module.entry_name("trixie")
    assert image_module.entry_name() != image_module.entry_name(packages=image_module.PACKAGES + ("vim",))


def test_the_mirror_comes_from_apt_sources():
    assert image_module.apt_mirror(image_module.SUITE).startswith(("http://", "https://"))


# -- the real image ---------------------------------------------------------------------------------

def test_the_image_has_both_forms():
    image = image_module.debian_image()
    if image.build_seconds is not None:
        print(f"built the Debian image in {image.build_seconds:.0f} s")
    wanted = {"./usr/bin/cloud-init", "./usr/sbin/sshd", "./usr/bin/udevadm"}
    with tarfile.open(image.rootfs_tgz) as tgz:  # MAAS tgz: the root filesystem itself
        for member in tgz:
            wanted.discard(member.name)
            if not wanted:
                break
    assert not wanted, f"missing from rootfs.tar.gz: {wanted}"
    with tarfile.open(image.lxd_unified) as unified:  # LXD: metadata.yaml first, then rootfs/
        first = unified.next()
        metadata = json.loads(unified.extractfile(first).read())
        second = unified.next()
    assert first.name == "metadata.yaml" and second.name.startswith("rootfs")
    assert metadata["architecture"] == platform.machine() and metadata["creation_date"] > 0


def test_real_cloud_init_runs_user_data_in_a_container_without_network(lxd_server, debian_lxd_image):
    # Without a network-config, LXD's datasource falls back to DHCP on eth0, and with no eth0
    # systemd-networkd-wait-online holds cloud-init back for its whole 2-minute timeout.
    container = CloudInitContainer.launch(lxd_server, debian_lxd_image, user_data=USER_DATA,
                                          network_config=NO_INTERFACES)
    try:
        devices = lxc_json(lxd_server, f"/1.0/instances/{container.name}")["expanded_devices"]
        assert [d for d in devices.values() if d["type"] == "nic"] == [], "no network device"
        status = container.wait_for_cloud_init()
        assert status.ok and "status: done" in status.output, status.output
        assert container.run("cat", "/var/tmp/vmyard/written") == "written by cloud-init"
        assert container.run("stat", "-c", "%a", "/var/tmp/vmyard/written").strip() == "640"
        assert container.run("cat", "/var/tmp/vmyard/ran").strip() == "runcmd ran as root"

        valid = container.cloud_config_check(USER_DATA)
        assert valid.ok and "Valid cloud-config" in valid.output, valid.output
        invalid = container.cloud_config_check("#cloud-config\nwrite_files: 5\nruncmd: {not: a list}\n")
        assert not invalid.ok and "write_files" in invalid.output, invalid.output

        network = container.network_config_check(NETWORK_CONFIG)
        assert network.ok, network.output
        broken = container.network_config_check(NETWORK_CONFIG.replace("[10.20.0.5/24]", "[10.20.0.500/24]"))
        assert not broken.ok and "malformed address '10.20.0.500/24'" in broken.output, broken.output
    finally:
        container.delete()
