"""Image bytes on the region's disk: blocking functions, run in the image thread pool only.

Layout under `<data_dir>/images/`: `upload-<file id>` while a file arrives, `lxd-<fingerprint>.tar`
for what hosts are given: an LXD unified tarball (a container image from a root filesystem
tarball, or a VM image from a disk image), or a split image's metadata tarball followed by its
rootfs; `*.partial`/`*.convert` only while one is made.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import hashlib
import io
import json
import lzma
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
import zlib
from pathlib import Path
from typing import BinaryIO, Callable

import yaml

COPY_BLOCK = 1 << 20
QEMU_IMG_TIMEOUT = 3600  # seconds for one conversion of a disk image
DISK_FILETYPES = ("ddraw", "ddgz", "ddxz", "qcow2")

# MAAS architecture names -> LXD's (metadata.yaml's `architecture`).
LXD_ARCHITECTURES = {"amd64": "x86_64", "arm64": "aarch64", "armhf": "armv7l", "i386": "i686",
                     "ppc64el": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}


class DiskFull(OSError):
    """The data dir's file system has no room for the bytes."""


def _disk_full() -> DiskFull:
    return DiskFull(errno.ENOSPC, "the region's data dir is full")


class BadImage(ValueError):
    """The file is not what its filetype says."""


def upload_path(images: Path, file_id: int) -> Path:
    return images / f"upload-{file_id}"


def lxd_path(images: Path, fingerprint: str) -> Path:
    return images / f"lxd-{fingerprint}.tar"


def free_bytes(images: Path) -> int:
    images.mkdir(mode=0o700, parents=True, exist_ok=True)
    return shutil.disk_usage(images).free


class ChunkHashes:
    """The running sha256 of each upload, so each byte is hashed once as it is written.

    A miss (the region restarted, or another thread wrote last) rebuilds the hash from the
    bytes already on disk.  Callers serialise writes to one upload.
    """

    def __init__(self) -> None:
        self._running: dict[int, tuple[int, "hashlib._Hash"]] = {}

    def at(self, file_id: int, path: Path, offset: int) -> "hashlib._Hash":
        cached = self._running.pop(file_id, None)
        if cached is not None and cached[0] == offset:
            return cached[1]
        digest = hashlib.sha256()
        if offset == 0:
            return digest
        with open(path, "rb") as f:
            remaining = offset
            while remaining:
                block = f.read(min(COPY_BLOCK, remaining))
                if not block:
                    raise BadImage("the upload's file is shorter than the bytes recorded for it")
                digest.update(block)
                remaining -= len(block)
        return digest

    def keep(self, file_id: int, offset: int, digest: "hashlib._Hash") -> None:
        self._running[file_id] = (offset, digest)

    def forget(self, file_id: int) -> None:
        self._running.pop(file_id, None)


def write_chunk(path: Path, offset: int, body: BinaryIO, length: int, digest: "hashlib._Hash") -> None:
    """Write `length` bytes of `body` at `offset`, dropping whatever an interrupted write left
    after it; on ENOSPC the file is cut back to `offset` and DiskFull raised."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    body.seek(0)
    with open(path, "ab") as created:  # create it if new, never truncate what is there
        created.flush()
    with open(path, "r+b") as f:
        f.truncate(offset)
        f.seek(offset)
        try:
            copied = 0
            while copied < length:
                block = body.read(min(COPY_BLOCK, length - copied))
                if not block:
                    raise BadImage(f"the chunk ended after {copied} of {length} bytes")
                f.write(block)
                digest.update(block)
                copied += len(block)
            f.flush()
            os.fsync(f.fileno())
        except OSError as e:
            f.truncate(offset)
            if e.errno == errno.ENOSPC:
                raise _disk_full() from None
            raise


def stage(images: Path, content: bytes) -> tuple[Path, str]:
    """`content` written to a new file of its own under `images`; the file and its sha256.
    Nothing is left behind when the disk fills."""
    images.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="inline-", suffix=".partial", dir=images)
    with _removed_on_failure(Path(name)), os.fdopen(fd, "wb") as f:
        f.write(content)
        f.flush()
        os.fsync(f.fileno())
    return Path(name), hashlib.sha256(content).hexdigest()


@contextlib.contextmanager
def _removed_on_failure(path: Path):
    """`path` is removed if the block fails; a full disk is raised as DiskFull."""
    try:
        yield
    except BaseException as e:
        path.unlink(missing_ok=True)
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            raise _disk_full() from None
        raise


class _HashingWriter(io.RawIOBase):
    """Counts and hashes what a streaming tarfile writes through it."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.digest = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.out.write(data)
        self.digest.update(data)
        self.size += len(data)
        return len(data)


def _rootfs_name(name: str) -> str:
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise BadImage(f"the tarball has an entry outside its root: {name!r}")
    return "/".join(["rootfs", *parts])


def metadata_yaml(architecture: str, name: str, title: str) -> bytes:
    arch = architecture.split("/", 1)[0]
    os_name, _, release = name.partition("/")
    return yaml.safe_dump({
        "architecture": LXD_ARCHITECTURES.get(arch, arch),
        "creation_date": int(time.time()),
        "properties": {"os": os_name, "release": release, "description": title or name},
    }).encode()


def _write_unified(images: Path, partial_name: str, metadata: bytes, what: str,
                   add_entries: Callable[[tarfile.TarFile], None]) -> tuple[str, int]:
    """Write an LXD unified tarball (metadata.yaml, then what `add_entries` adds) as it is hashed;
    returns its fingerprint (sha256) and size.  Nothing is left behind on failure."""
    partial = images / partial_name
    try:
        with open(partial, "wb") as raw:
            hashing = _HashingWriter(raw)
            with tarfile.open(fileobj=hashing, mode="w|", format=tarfile.PAX_FORMAT) as unified:
                info = tarfile.TarInfo("metadata.yaml")
                info.size, info.mtime, info.mode = len(metadata), int(time.time()), 0o644
                unified.addfile(info, io.BytesIO(metadata))
                add_entries(unified)
            raw.flush()
            os.fsync(raw.fileno())
    except BaseException as e:
        partial.unlink(missing_ok=True)
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            raise _disk_full() from None
        if isinstance(e, (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, gzip.BadGzipFile)):
            raise BadImage(f"the file is not a readable {what} ({e})") from None
        raise
    fingerprint = hashing.digest.hexdigest()
    os.replace(partial, lxd_path(images, fingerprint))
    return fingerprint, hashing.size


def rootfs_to_lxd(source: Path, images: Path, metadata: bytes) -> tuple[str, int]:
    """Stream a root filesystem tarball (MAAS's tgz) into an LXD container image: every entry
    goes under rootfs/."""
    def add_rootfs(unified: tarfile.TarFile) -> None:
        with tarfile.open(source, "r|*") as rootfs:
            for member in rootfs:
                member.name = _rootfs_name(member.name)
                if member.islnk():
                    member.linkname = _rootfs_name(member.linkname)
                unified.addfile(member, rootfs.extractfile(member) if member.isreg() else None)

    return _write_unified(images, f"{source.name}.lxd.partial", metadata, "root filesystem tarball", add_rootfs)


def disk_to_lxd(source: Path, images: Path, filetype: str, metadata: bytes) -> tuple[str, int]:
    """A disk image (ddraw, ddgz, ddxz or qcow2) into an LXD VM image: metadata.yaml and
    rootfs.img, a qcow2 made by qemu-img (compressed images are first streamed to a raw file)."""
    work = images / f"{source.name}.convert"
    work.mkdir(mode=0o700, exist_ok=True)
    try:
        if filetype == "qcow2":
            _check_self_contained(source)
            qcow2 = source
        else:  # the format is given, never probed: a raw disk may look like anything
            raw = source if filetype == "ddraw" else _decompressed(source, filetype, work / "disk.raw")
            qcow2 = work / "rootfs.img"
            _qemu_img("convert", "-f", "raw", "-O", "qcow2", str(raw), str(qcow2))
        return _write_unified(images, f"{source.name}.lxd.partial", metadata, "disk image",
                              lambda unified: unified.add(str(qcow2), arcname="rootfs.img"))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _decompressed(source: Path, filetype: str, raw: Path) -> Path:
    opener = gzip.open if filetype == "ddgz" else lzma.open
    try:
        with opener(source, "rb") as packed, open(raw, "wb") as out:
            shutil.copyfileobj(packed, out, COPY_BLOCK)
    except (EOFError, zlib.error, lzma.LZMAError, gzip.BadGzipFile) as e:
        raise BadImage(f"the file is not a readable {filetype} disk image ({e})") from None
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise _disk_full() from None
        raise
    return raw


def _check_self_contained(qcow2: Path) -> None:
    """A qcow2 naming a backing or data file would make the host read that file: refused."""
    info = json.loads(_qemu_img("info", "-f", "qcow2", "--output=json", str(qcow2)))
    if "backing-filename" in info or info.get("format-specific", {}).get("data", {}).get("data-file"):
        raise BadImage("the qcow2 image refers to a backing or data file; upload a self-contained image")


def can_convert_disks() -> bool:
    return shutil.which("qemu-img") is not None


def _qemu_img(*args: str) -> str:
    try:
        return subprocess.run(["qemu-img", *args], check=True, capture_output=True, text=True,
                              timeout=QEMU_IMG_TIMEOUT).stdout
    except subprocess.CalledProcessError as e:
        raise BadImage(f"qemu-img could not read the disk image: {e.stderr.strip()}") from None


_ROOTFS_MAGIC = {b"hsqs": "squashfs", b"QFI\xfb": "qcow2"}


def split_to_lxd(metadata: Path, rootfs: Path, images: Path) -> tuple[str, int]:
    """An LXD split image (metadata tarball + squashfs or qcow2 rootfs) kept as the one file
    racks fetch: the metadata tarball followed by the rootfs, whose sha256 is LXD's fingerprint
    of the split image.  Both uploads are consumed; nothing is left behind on failure."""
    names = _tar_names(metadata, "LXD metadata tarball")
    if "metadata.yaml" not in names:
        raise BadImage("an LXD metadata tarball needs metadata.yaml")
    with open(rootfs, "rb") as f:
        kind = _ROOTFS_MAGIC.get(f.read(4))
    if kind is None:
        raise BadImage("the rootfs of an LXD split image is a squashfs (containers) or a qcow2 disk (VMs)")
    if kind == "qcow2":
        _check_self_contained(rootfs)
    partial = images / f"{rootfs.name}.split.partial"
    digest, size = hashlib.sha256(), 0
    with _removed_on_failure(partial), open(partial, "wb") as out:
        for part in (metadata, rootfs):
            with open(part, "rb") as f:
                while block := f.read(COPY_BLOCK):
                    out.write(block)
                    digest.update(block)
                    size += len(block)
        out.flush()
        os.fsync(out.fileno())
    os.replace(partial, lxd_path(images, digest.hexdigest()))
    metadata.unlink()
    rootfs.unlink()
    return digest.hexdigest(), size


def _tar_names(path: Path, what: str) -> set[str]:
    """The top-level names in a tarball (rootfs.img whole, rootfs/… as rootfs)."""
    names: set[str] = set()
    try:
        with tarfile.open(path, "r|*") as tar:
            for member in tar:
                name = member.name.removeprefix("./")
                names.add(name if name.startswith("rootfs.img") or "/" not in name else name.split("/")[0])
    except (tarfile.TarError, EOFError) as e:
        raise BadImage(f"the file is not a readable {what} ({e})") from None
    return names


def check_lxd_tarball(path: Path) -> None:
    """An LXD unified tarball has metadata.yaml and rootfs/ (container) or rootfs.img (VM)."""
    names = _tar_names(path, "LXD image tarball")
    if "metadata.yaml" not in names or not names & {"rootfs", "rootfs.img"}:
        raise BadImage("an LXD unified tarball needs metadata.yaml and rootfs/ or rootfs.img")


def sweep(images: Path, fingerprints: set[str], file_ids: set[int], older_than: float) -> list[str]:
    """Remove the LXD images and uploads under `images` that no resource has (not in
    `fingerprints` / `file_ids`) and that are older than `older_than` seconds (younger ones may
    be an image being recorded right now); the names removed."""
    removed = []
    cutoff = time.time() - older_than
    for path in images.glob("*") if images.is_dir() else ():
        name = path.name
        if name.startswith("lxd-") and name.endswith(".tar"):
            known = name[len("lxd-"):-len(".tar")] in fingerprints
        elif name.startswith("upload-") and name[len("upload-"):].isdigit():
            known = int(name[len("upload-"):]) in file_ids
        else:
            continue
        if not known and path.stat().st_mtime < cutoff:
            path.unlink(missing_ok=True)
            removed.append(name)
    return removed


def remove_files(images: Path, files, fingerprint: str | None) -> None:
    """A resource's uploads (its `files`: rows with an `id`) and the LXD image made of them."""
    for f in files:
        upload_path(images, f.id).unlink(missing_ok=True)
    if fingerprint:
        lxd_path(images, fingerprint).unlink(missing_ok=True)
