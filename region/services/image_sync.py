"""Syncing Ubuntu images from a simplestreams server (MAAS's boot sources), off by default.

One region at a time syncs (a lease in `image_sync`, renewed while it works).  For each
configured release and architecture the newest root tarball (containers) or qcow2 disk (VMs)
is downloaded into the data dir's images/, its sha256 checked as it is written, and made into
the same LXD unified tarball an upload becomes; the resource `ubuntu/<release>` is Synced.
A resource whose file is already the stream's (same sha256) is left alone.  Progress is the
row's `received`, so `boot-resources/` shows it.  A failed file leaves none of its bytes: a
newer version that fails puts the older one back, a first one that fails leaves no row.
"""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path

import attrs
from twisted.internet import defer, task
from twisted.logger import Logger

from common.logsafe import loggable
from region.db import errors as db_errors
from region.db import image_sync as sync_rows
from region.db import images as image_rows
from region.db.image_sync import SyncState
from region.db.images import BootResource
from region.services import http_fetch, image_files, images, simplestreams
from region.services.context import Context
from region.services.errors import Refused
from region.services.simplestreams import Selection

log = Logger()

LEASE = 120.0  # seconds the sync lease lasts unless renewed
RENEW_EVERY = 30.0
PROGRESS_EVERY = 1.0  # seconds between progress writes to a resource's row
MAX_INDEX_SIZE = 4 << 20
MAX_PRODUCTS_SIZE = 64 << 20  # Ubuntu's released:download.json is some 20 MB
_running: set[defer.Deferred] = set()  # syncs started by op=import in this process


@attrs.frozen
class BootSource:
    """The configured source and how syncing from it goes."""

    url: str
    releases: tuple[str, ...]
    arches: tuple[str, ...]
    image_type: str
    state: SyncState


class SyncFailed(Exception):
    """One image could not be synced; the message says which and why."""


def _base_url(ctx: Context) -> str:
    url = ctx.config.boot_source_url
    if not url:
        raise Refused("No boot source is configured: set boot_source_url in the region's configuration.")
    return url if url.endswith("/") else url + "/"


async def boot_sources(ctx: Context) -> list[BootSource]:
    if not ctx.config.boot_source_url:
        return []
    cfg = ctx.config
    state = await ctx.db.run(sync_rows.state_thd)
    return [BootSource(cfg.boot_source_url, cfg.boot_source_releases, cfg.boot_source_arches,
                       cfg.boot_source_image_type, state)]


async def is_importing(ctx: Context) -> bool:
    return (await ctx.db.run(sync_rows.state_thd)).importing


async def start_import(ctx: Context) -> bool:
    """Start a sync now in the background; False if one is already running (here or elsewhere)."""
    _base_url(ctx)

    def claim_thd(cur) -> bool:
        claimed = sync_rows.claim_thd(cur, ctx.region.region_id, LEASE)
        if claimed:
            ctx.audit_thd(cur, "BOOT_RESOURCES_IMPORT", "Import of boot resources started.", "boot_source", 1)
        return claimed

    if not await ctx.db.run(claim_thd):
        return False
    work = defer.ensureDeferred(_sync_holding_lease(ctx))
    _running.add(work)
    work.addBoth(lambda _: _running.discard(work))
    return True


async def sync_if_due(ctx: Context) -> None:
    """The periodic sync: runs when the last one finished at least boot_source_interval ago."""
    if await ctx.db.run(sync_rows.claim_thd, ctx.region.region_id, LEASE,
                        finished_before=ctx.config.boot_source_interval):
        await _sync_holding_lease(ctx)


async def _sync_holding_lease(ctx: Context) -> None:
    renew = task.LoopingCall(_logging_failure, "renewing the image sync lease", ctx.db.run, sync_rows.renew_thd,
                             ctx.region.region_id, LEASE)
    renew.start(RENEW_EVERY, now=False)
    error = None
    try:
        problems = await _sync(ctx)
        error = "; ".join(problems) or None
    except Exception as e:
        error = f"the sync from {ctx.config.boot_source_url} failed: {e}"
        if not isinstance(e, (http_fetch.FetchError, simplestreams.BadStream, ValueError)):
            log.failure("image sync failed")
    finally:
        renew.stop()
        await ctx.db.run(sync_rows.release_thd, ctx.region.region_id, error)
    if error:
        log.warn("image sync: {error}", error=loggable(error, 2000))
    else:
        log.info("image sync from {url} finished", url=ctx.config.boot_source_url)


def _logging_failure(what: str, fn, *args) -> defer.Deferred:
    """For a LoopingCall: a failure is logged, and the loop goes on."""
    return defer.maybeDeferred(fn, *args).addErrback(lambda failure: log.failure("{what} failed", failure,
                                                                                  what=what))


@attrs.define
class _Progress:
    """Writes a download's bytes on disk into its resource's row every PROGRESS_EVERY seconds."""

    ctx: Context
    resource_id: int
    _loop: task.LoopingCall | None = None
    _last: int = 0

    def watch(self, writer: http_fetch.FileWriter) -> None:
        self._loop = task.LoopingCall(self._write, writer)
        self._loop.start(PROGRESS_EVERY, now=False)

    def _write(self, writer: http_fetch.FileWriter) -> defer.Deferred | None:
        if writer.written == self._last:
            return None
        self._last = writer.written
        return _logging_failure("recording image sync progress", self.ctx.db.run, image_rows.set_received_thd,
                                self.resource_id, writer.written)

    def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()


async def _fetch_json(url: str, limit: int):
    raw = await http_fetch.fetch_bytes(url, limit)
    return await images.in_image_pool(json.loads, raw)


async def _sync(ctx: Context) -> list[str]:
    """Sync every wanted image; returns what went wrong, one line per image."""
    cfg = ctx.config
    base = _base_url(ctx)
    index = await _fetch_json(urllib.parse.urljoin(base, simplestreams.INDEX_PATH), MAX_INDEX_SIZE)
    wanted: list[Selection] = []
    for path in await images.in_image_pool(simplestreams.product_files, index):
        doc = await _fetch_json(urllib.parse.urljoin(base, path), MAX_PRODUCTS_SIZE)
        wanted += await images.in_image_pool(simplestreams.select, doc, cfg.boot_source_releases,
                                             cfg.boot_source_arches, cfg.boot_source_image_type)
    problems = []
    missing = {(r, a) for r in cfg.boot_source_releases for a in cfg.boot_source_arches} - \
        {(s.release, s.arch) for s in wanted}
    problems += [f"the source has no {cfg.boot_source_image_type} image of ubuntu/{r} for {a}"
                 for r, a in sorted(missing)]
    for selection in wanted:
        try:
            await _sync_one(ctx, base, selection)
        except SyncFailed as e:
            problems.append(str(e))
    return problems


async def _sync_one(ctx: Context, base: str, wanted: Selection) -> None:
    def begin_thd(cur):
        """The row to download into and the row as it was before; None if already current."""
        existing = image_rows.find_thd(cur, wanted.name, wanted.architecture)
        if existing is not None and existing.rtype != "Synced":
            raise SyncFailed(f"{wanted.name} ({wanted.architecture}) is an uploaded image; not replaced")
        if existing is not None and existing.complete and existing.sha256 == wanted.sha256:
            return None
        resource = image_rows.begin_thd(
            cur, resource_id=existing.id if existing else None, name=wanted.name, architecture=wanted.architecture,
            title=wanted.title, version=wanted.version, filename=wanted.ftype, filetype=wanted.filetype,
            size=wanted.size, sha256=wanted.sha256)
        ctx.audit_thd(cur, "BOOT_RESOURCE_SYNCING", f"Syncing boot resource {wanted.name} ({wanted.architecture})"
                      f" version {wanted.version}.", "boot_resource", resource.id)
        return resource, existing

    begun = await ctx.db.run(begin_thd)
    if begun is None:
        return
    resource, previous = begun
    replaced_fingerprint = previous.lxd_fingerprint if previous else None
    log.info("image sync: downloading {name} ({arch}) {version}, {size} bytes", name=wanted.name,
             arch=wanted.architecture, version=wanted.version, size=wanted.size)
    try:
        fingerprint, lxd_size = await _download_and_convert(ctx, base, wanted, resource)
    except Exception as e:
        await _give_up(ctx, resource, previous, str(e))
        if not isinstance(e, (http_fetch.FetchError, SyncFailed, image_files.BadImage, OSError)):
            log.failure("image sync of {name} failed", name=wanted.name)
        raise SyncFailed(f"{wanted.name} ({wanted.architecture}): {e}") from None

    def complete_thd(cur):
        done = image_rows.finish_thd(cur, resource.id, state="complete", lxd_fingerprint=fingerprint,
                                     lxd_size=lxd_size)
        image_rows.record_holder_thd(cur, fingerprint, ctx.config.url)
        ctx.audit_thd(cur, "BOOT_RESOURCE_SYNCED", f"Boot resource {done.name} ({done.architecture}) synced:"
                      f" version {done.version}.", "boot_resource", done.id)

    try:
        await ctx.db.run(complete_thd)
    except db_errors.NotFound:
        for gone in (fingerprint, replaced_fingerprint):
            await images.in_image_pool(image_files.remove_files, images.images_dir(ctx), resource.files, gone)
        raise SyncFailed(f"{wanted.name} ({wanted.architecture}) was deleted while it was synced") from None
    if replaced_fingerprint and replaced_fingerprint != fingerprint:
        await images.in_image_pool(image_files.remove_files, images.images_dir(ctx), resource.files,
                                   replaced_fingerprint)


async def _download_and_convert(ctx: Context, base: str, wanted: Selection,
                                resource: BootResource) -> tuple[str, int]:
    images_path = images.images_dir(ctx)
    free = await images.in_image_pool(image_files.free_bytes, images_path)
    if free < wanted.size:
        raise SyncFailed(f"the data dir has {free} bytes free, too few for {wanted.size}")
    download = image_files.upload_path(images_path, resource.main_file.id)
    progress = _Progress(ctx, resource.id)
    try:
        sha256 = await http_fetch.download(urllib.parse.urljoin(base, wanted.path), download, wanted.size,
                                           images.in_image_pool, progress.watch)
    finally:
        progress.stop()
    if sha256 != wanted.sha256:
        await images.in_image_pool(download.unlink, True)
        raise SyncFailed(f"the file's sha256 is {sha256}, not the {wanted.sha256} the stream gives; refused")
    await ctx.db.run(image_rows.set_received_thd, resource.id, wanted.size)
    return await images.in_image_pool(_make_lxd_image, resource, download, images_path)


def _make_lxd_image(resource: BootResource, download: Path, images_path: Path) -> tuple[str, int]:
    metadata = image_files.metadata_yaml(resource.architecture, resource.name, resource.title)
    try:
        if resource.filetype == "tgz":
            return image_files.rootfs_to_lxd(download, images_path, metadata)
        return image_files.disk_to_lxd(download, images_path, "qcow2", metadata)
    finally:
        download.unlink(missing_ok=True)


async def _give_up(ctx: Context, resource: BootResource, previous: BootResource | None, reason: str) -> None:
    """A failed sync leaves nothing of the new version: a complete older version is put back,
    anything else is removed with its files."""
    keep = previous is not None and previous.complete

    def give_up_thd(cur):
        if keep:
            image_rows.restore_thd(cur, previous)
        else:
            image_rows.delete_thd(cur, resource.id)
        kept = f"; version {previous.version} kept" if keep else ""
        ctx.audit_thd(cur, "BOOT_RESOURCE_SYNC_FAILED", f"Sync of boot resource {resource.name}"
                      f" ({resource.architecture}) version {resource.version} failed: {reason[:500]}{kept}.",
                      "boot_resource", resource.id)

    await ctx.db.run(give_up_thd)
    gone_fingerprint = previous.lxd_fingerprint if previous is not None and not keep else None
    await images.in_image_pool(image_files.remove_files, images.images_dir(ctx), resource.files, gone_fingerprint)
