"""Boot resources (images): create, receive in chunks, make LXD images of, list, delete, serve.

Every byte of an image is read and written in a small thread pool of its own (hashing,
copying a chunk, converting a tarball), never on the reactor, and never held whole in
memory.  Chunks of one upload are written one at a time (a lock per upload in this
process; the row's `received` guards against another region).
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import re
import time
from pathlib import Path
from typing import Any, BinaryIO, Callable

import attrs

from twisted.internet import defer
from twisted.logger import Logger

from common.logsafe import loggable
from common.threadpools import LazyThreadPool
from region.db import images
from region.db.images import BootResource, NewResource
from region.services import image_files
from region.services.context import Context
from region.services.errors import Conflict, FieldError, Forbidden, NotFound, Refused

log = Logger()

# filetype -> the file's name in the resource's set (MAAS's names where MAAS has the type).
FILENAMES = {"tgz": "root-tgz", "lxd": "lxd.tar", "ddraw": "root-dd", "ddgz": "root-dd.gz",
             "ddxz": "root-dd.xz", "qcow2": "root.qcow2"}
IMAGE_THREADS = 2
TOKEN_LIFETIME = 600  # seconds a rack has to start fetching an image
_TOKEN_PURPOSE = "vmyard image download"
_FINGERPRINT = re.compile(r"[0-9a-f]{64}")
_EXPIRY = re.compile(r"[0-9]{1,12}")


class _ImageWork:
    """The image thread pool (started on first use), the running hashes and the upload locks."""

    def __init__(self) -> None:
        self.pool = LazyThreadPool("region-images", IMAGE_THREADS)
        self.hashes = image_files.ChunkHashes()
        self._locks: dict[int, defer.DeferredLock] = {}

    def lock(self, resource_id: int) -> defer.DeferredLock:
        return self._locks.setdefault(resource_id, defer.DeferredLock())

    def forget(self, resource_id: int) -> None:
        """A deleted upload: its running hash and lock go (a waiter still holds its lock)."""
        self.hashes.forget(resource_id)
        self._locks.pop(resource_id, None)


_work = _ImageWork()


def in_image_pool(fn: Callable[..., Any], *args: Any) -> defer.Deferred:
    """Run blocking image work (also the image sync's) in the image thread pool."""
    return _work.pool.run(fn, *args)


def images_dir(ctx: Context) -> Path:
    return Path(ctx.config.data_dir) / "images"


def _audit_thd(ctx: Context, cur, event_type: str, description: str, resource_id: int) -> None:
    ctx.audit_thd(cur, event_type, description, "boot_resource", resource_id)


async def list_all(ctx: Context) -> list[BootResource]:
    return await ctx.db.run(images.list_thd)


async def get(ctx: Context, resource_id: int) -> BootResource:
    return await ctx.db.run(images.get_thd, resource_id)


def _check_filetype(new: NewResource) -> None:
    if new.filetype not in FILENAMES:
        raise FieldError("filetype", f"Unknown filetype {new.filetype!r}; one of: {', '.join(FILENAMES)}.")
    if new.filetype in image_files.DISK_FILETYPES and not image_files.can_convert_disks():
        raise FieldError("filetype", "Disk images are made into LXD VM images with qemu-img, which this region "
                                     "lacks: install Debian's qemu-utils.")


async def _check_room(ctx: Context, size: int) -> None:
    free = await in_image_pool(image_files.free_bytes, images_dir(ctx))
    if free < size:
        raise Refused(f"The region's data dir has {free} bytes free, too few for an image of {size} bytes.")


def _version() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d")


async def create(ctx: Context, new: NewResource) -> BootResource:
    """Record an image whose bytes will follow in chunks; refused up front if they cannot fit."""
    _check_filetype(new)
    await _check_room(ctx, new.size)

    def create_thd(cur):
        resource = images.create_thd(cur, new, version=_version(), filename=FILENAMES[new.filetype])
        _audit_thd(ctx, cur, "BOOT_RESOURCE_CREATED",
                   f"Boot resource {resource.name} ({resource.architecture}) created.", resource.id)
        return resource

    return await ctx.db.run(create_thd)


async def create_inline(ctx: Context, new: NewResource, content: bytes) -> BootResource:
    """An image sent whole in the POST (the form's `content` part, already in memory within the
    form limit): staged on disk, checked (`new.sha256`, when given), made into its LXD image,
    and only then recorded, complete.  A failure leaves no row and no file behind."""
    _check_filetype(new)
    await _check_room(ctx, 2 * len(content))
    images_path = images_dir(ctx)
    try:
        staged, sha256 = await in_image_pool(image_files.stage, images_path, content)
    except image_files.DiskFull:
        raise Refused("The region's data dir is full; the image was not stored.") from None
    made: tuple[str, int] | None = None
    try:
        if new.sha256 and sha256 != new.sha256:
            raise FieldError("sha256", f"The file's sha256 is {sha256}, not {new.sha256}; nothing was stored.")
        new = attrs.evolve(new, sha256=sha256)
        try:
            made = await in_image_pool(_make_lxd_image, staged, new, images_path)
        except image_files.BadImage as e:
            raise FieldError("content", f"The file is not a {new.filetype} image: {e}.") from None
        except image_files.DiskFull:
            raise Refused("The region's data dir is full; the image was not stored.") from None
        fingerprint, lxd_size = made

        def create_complete_thd(cur):
            created = images.create_thd(cur, new, version=_version(), filename=FILENAMES[new.filetype])
            images.record_received_thd(cur, created.id, 0, new.size)
            done = images.finish_thd(cur, created.id, state="complete", lxd_fingerprint=fingerprint,
                                     lxd_size=lxd_size)
            images.record_holder_thd(cur, fingerprint, ctx.config.url)
            _audit_thd(ctx, cur, "BOOT_RESOURCE_UPLOADED", f"Boot resource {done.name} uploaded.", done.id)
            return done

        return await ctx.db.run(create_complete_thd)
    except BaseException:
        if made is not None:
            await in_image_pool(image_files.lxd_path(images_path, made[0]).unlink, True)
        raise
    finally:
        await in_image_pool(staged.unlink, True)


async def upload_chunk(ctx: Context, resource_id: int, file_id: int, body: BinaryIO, length: int) -> BootResource:
    """Append one chunk; the chunk that reaches the file's size checks the sha256 and makes
    the LXD image (any later PUT does, if the region stopped before it could).  A wrong sha256
    or a bad file marks the upload failed and removes its bytes."""
    if file_id != resource_id:
        raise NotFound("BootResourceFile")
    async with _work.lock(resource_id):
        resource = await get(ctx, resource_id)
        if resource.rtype != "Uploaded":
            raise Conflict(f"Boot resource {resource_id} is synced from the boot source; it takes no uploads.")
        if resource.state != "uploading":
            raise Conflict(f"The file of boot resource {resource_id} is {resource.state}; it takes no more bytes.")
        path = image_files.upload_path(images_dir(ctx), resource_id)
        if resource.received == resource.size:  # the region stopped between the last chunk and its check
            digest = await in_image_pool(_work.hashes.at, resource_id, path, resource.size)
            return await _finish(ctx, resource, digest.hexdigest())
        if length <= 0:
            raise Refused("The chunk is empty.")
        if resource.received + length > resource.size:
            raise Refused(f"The chunk of {length} bytes would take the file past its size ({resource.size} bytes; "
                          f"{resource.received} received).")
        try:
            digest = await in_image_pool(_write, resource, path, body, length)
        except image_files.DiskFull:
            raise Refused("The region's data dir is full; the chunk was not stored (the upload can resume "
                          "from the bytes already received once there is room).") from None
        after = resource.received + length
        if not await ctx.db.run(images.record_received_thd, resource_id, resource.received, after):
            raise Conflict("Another upload of this file moved on meanwhile; read its progress and resume.")
        if after < resource.size:
            _work.hashes.keep(resource_id, after, digest)
            return await get(ctx, resource_id)
        return await _finish(ctx, resource, digest.hexdigest())


def _write(resource: BootResource, path: Path, body: BinaryIO, length: int):
    digest = _work.hashes.at(resource.id, path, resource.received)
    image_files.write_chunk(path, resource.received, body, length, digest)
    return digest


async def _finish(ctx: Context, resource: BootResource, sha256: str) -> BootResource:
    images_path = images_dir(ctx)
    if sha256 != resource.sha256:
        await _fail(ctx, resource, f"its sha256 is {sha256}, not the {resource.sha256} given")
        raise FieldError("sha256", f"The uploaded file's sha256 is {sha256}, not {resource.sha256}; "
                                   "the upload failed and its bytes were removed.")
    try:
        fingerprint, lxd_size = await in_image_pool(
            _make_lxd_image, image_files.upload_path(images_path, resource.id), resource, images_path)
    except (image_files.BadImage, image_files.DiskFull) as e:
        await _fail(ctx, resource, str(e))
        raise Refused(f"The upload failed and its bytes were removed: {e}.") from None

    def complete_thd(cur):
        done = images.finish_thd(cur, resource.id, state="complete", lxd_fingerprint=fingerprint,
                                 lxd_size=lxd_size)
        images.record_holder_thd(cur, fingerprint, ctx.config.url)
        _audit_thd(ctx, cur, "BOOT_RESOURCE_UPLOADED", f"Boot resource {done.name} uploaded.", done.id)
        return done

    return await ctx.db.run(complete_thd)


def _make_lxd_image(upload: Path, image: BootResource | NewResource, images_path: Path) -> tuple[str, int]:
    """The LXD image made from a complete file (`upload`, consumed): its fingerprint and size."""
    if image.filetype == "lxd":
        image_files.check_lxd_tarball(upload)
        upload.replace(image_files.lxd_path(images_path, image.sha256))
        return image.sha256, image.size
    metadata = image_files.metadata_yaml(image.architecture, image.name, image.title)
    if image.filetype == "tgz":
        made = image_files.rootfs_to_lxd(upload, images_path, metadata)
    else:
        made = image_files.disk_to_lxd(upload, images_path, image.filetype, metadata)
    upload.unlink()
    return made


async def _fail(ctx: Context, resource: BootResource, reason: str) -> None:
    _work.hashes.forget(resource.id)
    await in_image_pool(image_files.remove_files, images_dir(ctx), resource.id, None)

    def fail_thd(cur):
        images.finish_thd(cur, resource.id, state="failed")
        _audit_thd(ctx, cur, "BOOT_RESOURCE_UPLOAD_FAILED",
                   f"Upload of boot resource {resource.name} failed: {reason}.", resource.id)

    await ctx.db.run(fail_thd)
    log.warn("upload of boot resource {resource_id} failed: {reason}", resource_id=resource.id,
             reason=loggable(reason))


async def delete(ctx: Context, resource_id: int) -> BootResource:
    async with _work.lock(resource_id):
        def delete_thd(cur):
            gone = images.delete_thd(cur, resource_id)
            if gone.lxd_fingerprint:
                images.forget_holders_thd(cur, gone.lxd_fingerprint)
            _audit_thd(ctx, cur, "BOOT_RESOURCE_DELETED", f"Boot resource {gone.name} deleted.", gone.id)
            return gone

        gone = await ctx.db.run(delete_thd)
        _work.forget(resource_id)
        await in_image_pool(image_files.remove_files, images_dir(ctx), resource_id, gone.lxd_fingerprint)
        return gone


# -- serving LXD images to racks -----------------------------------------------------------

def _signature(ctx: Context, fingerprint: str, expiry: int) -> str:
    key = ctx.box.derive_key(_TOKEN_PURPOSE)
    return hmac.new(key, f"{fingerprint}:{expiry}".encode(), hashlib.sha256).hexdigest()


def image_url_for_rack(ctx: Context, resource: BootResource) -> tuple[str, str]:
    """Where a rack fetches the resource's LXD image, and the bearer token it sends (valid
    TOKEN_LIFETIME seconds, for this image only)."""
    if not resource.complete or resource.lxd_fingerprint is None:
        raise Refused(f"Boot resource {resource.name} has no LXD image to serve.")
    expiry = int(time.time()) + TOKEN_LIFETIME
    token = f"{expiry}.{_signature(ctx, resource.lxd_fingerprint, expiry)}"
    return f"{ctx.config.url}images/{resource.lxd_fingerprint}", token


async def find_image(ctx: Context, fingerprint: str, token: str) -> Path | str:
    """What to serve for `fingerprint` if `token` was signed for it and has not expired: the
    file, when this region holds it, else the URL of a region that does (the rack is sent
    there with the same token: regions share the key that signs it)."""
    expiry, _, signature = token.partition(".")
    if not _FINGERPRINT.fullmatch(fingerprint):
        raise NotFound("image")
    valid = _EXPIRY.fullmatch(expiry) and int(expiry) >= time.time() and hmac.compare_digest(
        signature.encode(), _signature(ctx, fingerprint, int(expiry)).encode())
    if not valid:
        raise Forbidden("The image token is invalid or has expired.")
    path = image_files.lxd_path(images_dir(ctx), fingerprint)
    if path.is_file():
        return path
    elsewhere = [url for url in await ctx.db.run(images.holders_thd, fingerprint) if url != ctx.config.url]
    if not elsewhere:
        raise NotFound("image")
    return f"{elsewhere[0]}images/{fingerprint}"
