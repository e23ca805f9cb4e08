"""Deploying onto libvirt domains: the image written into the root volume, a NoCloud seed disk.

The rack fetches the region's image (the LXD unified tarball a VM image is: metadata.yaml +
rootfs.img, a qcow2) the way the LXD driver does, makes it raw with qemu-img locally and
uploads it into the domain's root volume through libvirt as a sparse stream (holes are not
sent over SSH).  cloud-init's data goes on an ISO 9660 volume labelled `cidata` (user-data,
meta-data, network-config[, vendor-data]) built with pycdlib in memory (pure Python: no
genisoimage/xorriso process, and tests read it back with the same library), uploaded as a
volume of its own next to the root volume and attached as a cdrom.  Root-filesystem images
(for containers) cannot be written to a disk and are refused.
"""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
import tempfile
import uuid
import xml.etree.ElementTree as ET

import libvirt
import pycdlib

from common.hosterrors import DriverError
from common.models import CloudInitData, HostTarget, ImageRef
from rack.drivers.image_fetch import ThrottledProgress, fetch_image
from rack.drivers.virsh_conn import connect, libvirt_error
from rack.drivers.virsh_domains import create_volume, delete_volume, domain_or_error, stop
from rack.drivers.virsh_inventory import power_state
from rack.drivers.virsh_xml import MadeVolume, Ownership, ownership, with_seed

SEED_DISK = "seed"
CONVERT_TIMEOUT = 1800  # seconds qemu-img may take to make a large image raw


def seed_iso(instance_name: str, cloud_init: CloudInitData) -> bytes:
    """A NoCloud seed: ISO 9660 labelled `cidata` with Joliet and Rock Ridge names."""
    meta_data = f"instance-id: {instance_name}-{uuid.uuid4().hex[:12]}\nlocal-hostname: {instance_name}\n"
    files = {"user-data": cloud_init.user_data, "meta-data": meta_data, "network-config": cloud_init.network_config}
    if cloud_init.vendor_data:
        files["vendor-data"] = cloud_init.vendor_data
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident="cidata")
    try:
        for name, text in files.items():
            data = text.encode()
            iso_name = "/" + name.replace("-", "").upper()[:8] + ".;1"
            iso.add_fp(io.BytesIO(data), len(data), iso_name, rr_name=name, joliet_path="/" + name)
        out = io.BytesIO()
        iso.write_fp(out)
        return out.getvalue()
    finally:
        iso.close()


def raw_image(image: ImageRef, work: str) -> str:
    """The region's VM image as a raw disk file in `work` (sparse)."""
    if image.filetype == "tgz":
        raise DriverError("this image is a root filesystem for containers; a libvirt VM needs a disk image "
                          "(ddraw, ddgz, ddxz or qcow2)")
    unified = os.path.join(work, "image.tar")
    with open(unified, "wb") as f:
        fetch_image(image, f, ThrottledProgress(None))
    qcow2 = os.path.join(work, "rootfs.img")
    with tarfile.open(unified) as tar:
        member = next((m for m in tar.getmembers() if m.name.lstrip("./") == "rootfs.img" and m.isfile()), None)
        if member is None:
            raise DriverError("the image has no disk (rootfs.img); a libvirt VM needs a disk image")
        with tar.extractfile(member) as src, open(qcow2, "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
    os.unlink(unified)
    raw = os.path.join(work, "root.raw")
    done = subprocess.run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", qcow2, raw],
                          capture_output=True, text=True, timeout=CONVERT_TIMEOUT)
    if done.returncode != 0:
        raise DriverError(f"qemu-img could not read the image: {done.stderr.strip()[:500]}")
    os.unlink(qcow2)
    return raw


def _hole_or_data(_stream, fd: int) -> list:
    """[in data?, length] of the section at fd's offset (libvirt's sparse-stream protocol)."""
    here = os.lseek(fd, 0, os.SEEK_CUR)
    try:
        data = os.lseek(fd, here, os.SEEK_DATA)
    except OSError:  # ENXIO: only a hole is left up to the end
        data = -1
    if data < 0:
        section = [False, os.lseek(fd, 0, os.SEEK_END) - here]
    elif data > here:
        section = [False, data - here]
    else:
        section = [True, os.lseek(fd, data, os.SEEK_HOLE) - data]
    os.lseek(fd, here, os.SEEK_SET)
    return section


def _skip(_stream, length: int, fd: int) -> int:
    os.lseek(fd, length, os.SEEK_CUR)
    return 0


def upload(conn: libvirt.virConnect, volume: libvirt.virStorageVol, path: str) -> None:
    """The file at `path` into `volume` from offset 0, holes skipped; the volume keeps its size
    (a dir pool's upload cuts the file to what was sent)."""
    fd = os.open(path, os.O_RDONLY)
    stream = conn.newStream(0)
    try:
        capacity = volume.info()[1]
        volume.upload(stream, 0, 0, libvirt.VIR_STORAGE_VOL_UPLOAD_SPARSE_STREAM)
        stream.sparseSendAll(lambda _s, n, f: os.read(f, n), _hole_or_data, _skip, fd)
        stream.finish()
        if volume.info()[1] < capacity:
            volume.resize(capacity, 0)
    except libvirt.libvirtError as e:
        stream.abort()
        raise libvirt_error(f"cannot write volume {volume.name()}", e) from None
    finally:
        os.close(fd)


def _owned(domain: libvirt.virDomain) -> tuple[str, Ownership]:
    xml = domain.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    owned = ownership(ET.fromstring(xml))
    if owned is None or not owned.volumes:
        raise DriverError(f"domain {domain.name()} was not composed by vmyard; it is not deployed onto")
    return xml, owned


def _volume(conn: libvirt.virConnect, made: MadeVolume) -> libvirt.virStorageVol:
    try:
        return conn.storagePoolLookupByName(made.pool).storageVolLookupByName(made.name)
    except libvirt.libvirtError as e:
        raise libvirt_error(f"the volume {made.pool}/{made.name} of disk {made.disk} is gone", e) from None


class VirshDeployMixin:
    """deploy_machine, erase_machine and cloud_init_status for VirshDriver (LXD profiles do not apply)."""

    def deploy_machine(self, target: HostTarget, instance_name: str, image: ImageRef, cloud_init: CloudInitData,
                       profiles: list[str], progress=None) -> str:
        seed_data = seed_iso(instance_name, cloud_init)
        with tempfile.TemporaryDirectory(prefix="vmyard-image-") as work:
            raw = raw_image(image, work)
            with connect(target) as (conn, _):
                domain = domain_or_error(conn, instance_name)
                xml, owned = _owned(domain)
                stop(domain)
                root = owned.volumes[0]
                volume = _volume(conn, root)
                if os.path.getsize(raw) > volume.info()[1]:
                    raise DriverError(f"the image needs {os.path.getsize(raw)} bytes, more than the "
                                      f"{volume.info()[1]}-byte root disk of {instance_name}")
                upload(conn, volume, raw)
                xml = self._replace_seed(conn, xml, owned, root.pool, seed_data)
                try:
                    domain = conn.defineXML(xml)
                    domain.create()
                except libvirt.libvirtError as e:
                    raise libvirt_error(f"libvirt could not start {instance_name}", e) from None
                return power_state(domain)

    @staticmethod
    def _replace_seed(conn: libvirt.virConnect, xml: str, owned: Ownership, pool: str, data: bytes) -> str:
        for old in (v for v in owned.volumes if v.disk == SEED_DISK):
            delete_volume(conn, old)
        seed = MadeVolume(SEED_DISK, pool, f"{uuid.uuid4()}-seed.iso")
        volume = create_volume(conn, pool, seed.name, len(data))
        with tempfile.NamedTemporaryFile(prefix="vmyard-seed-") as f:
            f.write(data)
            f.flush()
            upload(conn, volume, f.name)
        return with_seed(xml, seed)

    def erase_machine(self, target: HostTarget, instance_name: str, profiles: list[str]) -> None:
        """Stopped, the seed disk gone, the root volume empty at its size."""
        with connect(target) as (conn, _):
            domain = domain_or_error(conn, instance_name)
            xml, owned = _owned(domain)
            stop(domain)
            root = ET.fromstring(xml)
            devices = root.find("devices")
            for disk in [d for d in devices.findall("disk") if d.get("device") == "cdrom"]:
                devices.remove(disk)
            conn.defineXML(ET.tostring(root, encoding="unicode"))
            for seed in (v for v in owned.volumes if v.disk == SEED_DISK):
                delete_volume(conn, seed)
            root_volume = owned.volumes[0]
            capacity = _volume(conn, root_volume).info()[1]
            # Made anew rather than zeroed: as fast for any size, and the same name and size.
            warning = delete_volume(conn, root_volume)
            if warning:
                raise DriverError(warning)
            create_volume(conn, root_volume.pool, root_volume.name, capacity)

    def cloud_init_status(self, target: HostTarget, instance_name: str) -> tuple[str, str]:
        return "unknown", "libvirt offers no way to look inside the VM; cloud-init reports to the region itself"
