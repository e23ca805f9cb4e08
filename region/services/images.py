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
from region.db.images import SPLIT_METADATA, BootResource, NewResource, ResourceFile
from region.services import image_files
from region.services.context import Context
from region.services.errors import Conflict, FieldError, Forbidden, NotFound, Refused

log = Logger()

# filetype -> the file's name in the resource's set (MAAS's names where MAAS has the type).
FILENAMES = {"tgz": "root-tgz", "lxd": "lxd.tar", "ddraw": "root-dd", "ddgz": "root-dd.gz",
             "ddxz": "root-dd.xz", "qcow2": "root.qcow2",
             # an LXD split image: two files of one resource, each POSTed and PUT on its own
             SPLIT_METADATA: "lxd-meta.tar", "lxd-rootfs": "rootfs.squashfs", "lxd-disk": "rootfs.img"}
SPLIT_FILETYPES = (SPLIT_METADATA, "lxd-rootfs", "lxd-disk")
IMAGE_THREADS = 2
TOKEN_LIFETIME = 600  # seconds a rack has to start fetching an image
SWEEP_INTERVAL = 600.0  # seconds between sweeps of image files no resource has
SWEEP_MIN_AGE = 3600.0  # seconds such a file is kept first (it may belong to an upload being recorded)
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

    def forget(self, resource: BootResource, *, drop_lock: bool = False) -> None:
        """A failed or deleted upload: its files' running hashes go, and for a deleted one its
        lock (a waiter still holds it)."""
        for f in resource.files:
            self.hashes.forget(f.id)
        if drop_lock:
            self._locks.pop(resource.id, None)


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
    """Record an image whose bytes will follow in chunks; refused up front if they cannot fit.
    The second file of an LXD split image (lxd-meta, and lxd-rootfs or lxd-disk) is added to
    the resource of the same name and architecture that is still receiving the first."""
    _check_filetype(new)
    await _check_room(ctx, new.size)

    def create_thd(cur):
        if new.filetype in SPLIT_FILETYPES:
            pending = images.find_uploading_thd(cur, new.name, new.architecture)
            if pending is not None and _completes_split(pending, new.filetype):
                images.add_file_thd(cur, pending.id, new, filename=FILENAMES[new.filetype])
                _audit_thd(ctx, cur, "BOOT_RESOURCE_FILE_ADDED",
                           f"Boot resource {pending.name}: {new.filetype} file added.", pending.id)
                return images.get_thd(cur, pending.id)
        resource = images.create_thd(cur, new, version=_version(), filename=FILENAMES[new.filetype])
        _audit_thd(ctx, cur, "BOOT_RESOURCE_CREATED",
                   f"Boot resource {resource.name} ({resource.architecture}) created.", resource.id)
        return resource

    return await ctx.db.run(create_thd)


def _completes_split(pending: BootResource, filetype: str) -> bool:
    """Whether a file of `filetype` is the missing half of `pending`'s split image."""
    if len(pending.files) != 1 or pending.files[0].filetype not in SPLIT_FILETYPES:
        return False
    return (pending.files[0].filetype == SPLIT_METADATA) != (filetype == SPLIT_METADATA)


def _is_whole(resource: BootResource) -> bool:
    """All its files are in, and a split image has both."""
    split = {f.filetype for f in resource.files} & set(SPLIT_FILETYPES)
    return all(f.whole for f in resource.files) and (not split or len(resource.files) == 2)


async def create_inline(ctx: Context, new: NewResource, content: bytes) -> BootResource:
    """An image sent whole in the POST (the form's `content` part, already in memory within the
    form limit): staged on disk, checked (`new.sha256`, when given), made into its LXD image,
    and only then recorded, complete.  A failure leaves no row and no file behind."""
    _check_filetype(new)
    if new.filetype in SPLIT_FILETYPES:
        raise FieldError("filetype", "The files of an LXD split image are each POSTed, then PUT to their upload_uri.")
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
            made = await in_image_pool(_make_lxd_image, {new.filetype: staged}, new, images_path)
        except image_files.BadImage as e:
            raise FieldError("content", f"The file is not a {new.filetype} image: {e}.") from None
        except image_files.DiskFull:
            raise Refused("The region's data dir is full; the image was not stored.") from None
        fingerprint, lxd_size = made

        def create_complete_thd(cur):
            created = images.create_thd(cur, new, version=_version(), filename=FILENAMES[new.filetype])
            images.record_received_thd(cur, created.files[0].id, 0, new.size)
            return _complete_thd(cur, ctx, created.id, fingerprint, lxd_size)

        return await ctx.db.run(create_complete_thd)
    except BaseException:
        if made is not None:
            await in_image_pool(image_files.lxd_path(images_path, made[0]).unlink, True)
        raise
    finally:
        await in_image_pool(staged.unlink, True)


async def upload_chunk(ctx: Context, resource_id: int, file_id: int, body: BinaryIO, length: int) -> BootResource:
    """Append one chunk to one of the resource's files; the chunk that completes a file checks
    its sha256, and the one that completes the image makes its LXD image (any later PUT does,
    if the region stopped before it could).  A wrong sha256 or a bad file marks the upload
    failed and removes its bytes."""
    async with _work.lock(resource_id):
        resource = await get(ctx, resource_id)
        file = resource.file(file_id)
        if resource.rtype != "Uploaded":
            raise Conflict(f"Boot resource {resource_id} is synced from the boot source; it takes no uploads.")
        if resource.state != "uploading":
            raise Conflict(f"The file of boot resource {resource_id} is {resource.state}; it takes no more bytes.")
        path = image_files.upload_path(images_dir(ctx), file.id)
        if file.whole:  # the region stopped between the last chunk and its check
            digest = await in_image_pool(_work.hashes.at, file.id, path, file.size)
            return await _file_done(ctx, resource, file, digest.hexdigest())
        if length <= 0:
            raise Refused("The chunk is empty.")
        if file.received + length > file.size:
            raise Refused(f"The chunk of {length} bytes would take the file past its size ({file.size} bytes; "
                          f"{file.received} received).")
        try:
            digest = await in_image_pool(_write, file, path, body, length)
        except image_files.DiskFull:
            raise Refused("The region's data dir is full; the chunk was not stored (the upload can resume "
                          "from the bytes already received once there is room).") from None
        after = file.received + length
        if not await ctx.db.run(images.record_received_thd, file.id, file.received, after):
            raise Conflict("Another upload of this file moved on meanwhile; read its progress and resume.")
        if after < file.size:
            _work.hashes.keep(file.id, after, digest)
            return await get(ctx, resource_id)
        return await _file_done(ctx, await get(ctx, resource_id), file, digest.hexdigest())


def _write(file: ResourceFile, path: Path, body: BinaryIO, length: int):
    digest = _work.hashes.at(file.id, path, file.received)
    image_files.write_chunk(path, file.received, body, length, digest)
    return digest


async def _file_done(ctx: Context, resource: BootResource, file: ResourceFile, sha256: str) -> BootResource:
    """A file is in: its sha256 checked; the image made when it was the last one."""
    if sha256 != file.sha256:
        await _fail(ctx, resource, f"the sha256 of {file.filename} is {sha256}, not the {file.sha256} given")
        raise FieldError("sha256", f"The uploaded file's sha256 is {sha256}, not {file.sha256}; "
                                   "the upload failed and its bytes were removed.")
    if not _is_whole(resource):
        return resource
    images_path = images_dir(ctx)
    try:
        fingerprint, lxd_size = await in_image_pool(_make_lxd_image, _file_paths(images_path, resource), resource,
                                                    images_path)
    except (image_files.BadImage, image_files.DiskFull) as e:
        await _fail(ctx, resource, str(e))
        raise Refused(f"The upload failed and its bytes were removed: {e}.") from None

    return await ctx.db.run(_complete_thd, ctx, resource.id, fingerprint, lxd_size)


def _complete_thd(cur, ctx: Context, resource_id: int, fingerprint: str, lxd_size: int) -> BootResource:
    """The image is made: the resource is complete, and this region holds its LXD image."""
    done = images.finish_thd(cur, resource_id, state="complete", lxd_fingerprint=fingerprint, lxd_size=lxd_size)
    images.record_holder_thd(cur, fingerprint, ctx.config.url)
    _audit_thd(ctx, cur, "BOOT_RESOURCE_UPLOADED", f"Boot resource {done.name} uploaded.", done.id)
    return done


def _file_paths(images_path: Path, resource: BootResource) -> dict[str, Path]:
    return {f.filetype: image_files.upload_path(images_path, f.id) for f in resource.files}


def _make_lxd_image(uploads: dict[str, Path], image: BootResource | NewResource,
                    images_path: Path) -> tuple[str, int]:
    """The LXD image made from complete files (`uploads` by filetype, consumed): its fingerprint
    and size."""
    if SPLIT_METADATA in uploads:
        rootfs_type = next(t for t in uploads if t != SPLIT_METADATA)
        return image_files.split_to_lxd(uploads[SPLIT_METADATA], uploads[rootfs_type], images_path)
    (filetype, upload), = uploads.items()
    if filetype == "lxd":
        image_files.check_lxd_tarball(upload)
        upload.replace(image_files.lxd_path(images_path, image.sha256))
        return image.sha256, image.size
    metadata = image_files.metadata_yaml(image.architecture, image.name, image.title)
    if filetype == "tgz":
        made = image_files.rootfs_to_lxd(upload, images_path, metadata)
    else:
        made = image_files.disk_to_lxd(upload, images_path, filetype, metadata)
    upload.unlink()
    return made


async def _fail(ctx: Context, resource: BootResource, reason: str) -> None:
    _work.forget(resource)
    await in_image_pool(image_files.remove_files, images_dir(ctx), resource.files, None)

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
        _work.forget(gone, drop_lock=True)
        await in_image_pool(image_files.remove_files, images_dir(ctx), gone.files, gone.lxd_fingerprint)
        return gone


async def sweep_files(ctx: Context) -> None:
    """Remove this region's image files no resource has any more: a resource deleted through
    another region leaves its files here (each region keeps its own)."""
    def known_thd(cur):
        found = images.list_thd(cur)
        return {r.lxd_fingerprint for r in found if r.lxd_fingerprint}, {f.id for r in found for f in r.files}

    fingerprints, file_ids = await ctx.db.run(known_thd)
    removed = await in_image_pool(image_files.sweep, images_dir(ctx), fingerprints, file_ids, SWEEP_MIN_AGE)
    if removed:
        log.info("removed image files no boot resource has: {names}", names=", ".join(removed))


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
