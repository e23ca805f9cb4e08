"""Image bytes on disk (region/services/image_files.py), without a region: chunks, hashes, conversion."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import subprocess
import tarfile

import pytest
import yaml

from region.services import image_files


def _write(path, offset: int, data: bytes, hashes: image_files.ChunkHashes):
    digest = hashes.at(1, path, offset)
    image_files.write_chunk(path, offset, io.BytesIO(data), len(data), digest)
    hashes.keep(1, offset + len(data), digest)
    return digest


def test_chunks_replace_a_torn_tail_and_the_hash_survives_a_lost_cache(tmp_path):
    path = tmp_path / "images" / "upload-1"
    hashes = image_files.ChunkHashes()
    _write(path, 0, b"a" * 1000, hashes)
    with open(path, "ab") as f:
        f.write(b"torn")
    digest = _write(path, 1000, b"b" * 500, image_files.ChunkHashes())  # no cached hash: rebuilt from disk
    assert path.read_bytes() == b"a" * 1000 + b"b" * 500
    assert digest.hexdigest() == hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_full_disk_leaves_the_file_as_it_was(tmp_path, monkeypatch):
    path = tmp_path / "upload-1"
    hashes = image_files.ChunkHashes()
    _write(path, 0, b"a" * 100, hashes)

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(image_files.DiskFull):
        _write(path, 100, b"b" * 100, hashes)
    assert path.read_bytes() == b"a" * 100


def _tgz(path, entries: list[tuple[str, bytes]]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_rootfs_becomes_an_lxd_unified_tarball(tmp_path):
    source = tmp_path / "upload-1"
    _tgz(source, [("./etc/hostname", b"x\n")])
    metadata = image_files.metadata_yaml("arm64/generic", "custom/bookworm", "")
    fingerprint, size = image_files.rootfs_to_lxd(source, tmp_path, metadata)
    made = image_files.lxd_path(tmp_path, fingerprint)
    assert hashlib.sha256(made.read_bytes()).hexdigest() == fingerprint and made.stat().st_size == size
    with tarfile.open(made) as tar:
        assert tar.getnames() == ["metadata.yaml", "rootfs/etc/hostname"]
        meta = yaml.safe_load(tar.extractfile("metadata.yaml"))
    assert meta["architecture"] == "aarch64" and meta["properties"]["release"] == "bookworm"
    image_files.check_lxd_tarball(made)


@pytest.mark.parametrize("entries", [[("../escape", b"x")], [("etc/../../escape", b"x")]])
def test_entries_outside_the_root_are_refused_and_nothing_is_left(tmp_path, entries):
    source = tmp_path / "upload-1"
    _tgz(source, entries)
    with pytest.raises(image_files.BadImage, match="outside its root"):
        image_files.rootfs_to_lxd(source, tmp_path, b"architecture: x86_64\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["upload-1"]


def test_not_a_tarball_is_a_bad_image(tmp_path):
    source = tmp_path / "upload-1"
    source.write_bytes(os.urandom(1000))
    with pytest.raises(image_files.BadImage):
        image_files.rootfs_to_lxd(source, tmp_path, b"architecture: x86_64\n")
    with pytest.raises(image_files.BadImage):
        image_files.check_lxd_tarball(source)


def test_a_qcow2_disk_goes_into_the_vm_image_as_it_is(tmp_path):
    source = tmp_path / "upload-1"
    subprocess.run(["qemu-img", "create", "-f", "qcow2", str(source), "10M"], check=True, capture_output=True)
    fingerprint, _ = image_files.disk_to_lxd(source, tmp_path, "qcow2", b"architecture: x86_64\n")
    with tarfile.open(image_files.lxd_path(tmp_path, fingerprint)) as tar:
        assert tar.getnames() == ["metadata.yaml", "rootfs.img"]
        assert tar.extractfile("rootfs.img").read() == source.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"lxd-{fingerprint}.tar", "upload-1"]


def test_a_raw_disk_called_qcow2_is_refused(tmp_path):
    source = tmp_path / "upload-1"
    source.write_bytes(bytes(65536))
    with pytest.raises(image_files.BadImage, match="could not read"):
        image_files.disk_to_lxd(source, tmp_path, "qcow2", b"architecture: x86_64\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["upload-1"]


def test_a_qcow2_with_a_backing_file_is_refused(tmp_path):
    source = tmp_path / "upload-1"
    subprocess.run(["qemu-img", "create", "-f", "qcow2", "-F", "raw", "-b", "/etc/hostname", str(source)],
                   check=True, capture_output=True)
    with pytest.raises(image_files.BadImage, match="backing"):
        image_files.disk_to_lxd(source, tmp_path, "qcow2", b"architecture: x86_64\n")
