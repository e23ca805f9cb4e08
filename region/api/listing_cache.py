"""Rendered machine JSON kept between `machines/` listings, keyed on row versions (issue 16).

A listing first reads each selected machine's row versions (`region.db.listing.versions_thd`:
the xmin of its row and of its disks, NICs and static IPs, its owner's name) and what machines
share (catalog, zones, pools, hosts), which it renders as it always does and digests.  A
machine whose versions and shared digests equal those its kept JSON was rendered at reuses that
JSON; only the others are loaded and rendered.  Nothing on the write paths invalidates an
entry: every write gives the rows it touches a new xmin, so no write can be forgotten; a host
refresh that rewrites rows without changing what its machines show keeps their entries.

The cache is bounded in bytes (the region's `machine_json_cache_bytes`), least recently listed
out first; a listing of every machine drops the entries of machines that are gone.  A region
fills it once it has started (`warm`), so the first listing after a restart reuses it too.  Lookups run
in a database thread and stores in the render pool: a lock guards the entries; two listings
at once may both render a machine, and whichever stores last wins (an entry is only ever reused
at the versions it was rendered from, so an older one is a miss, never a wrong reply).
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from typing import Iterator

import orjson

from region.api.machine_json import CHUNK_MACHINES, ListingRenderer, listing_chunks
from region.api.streaming import in_render_pool, json_array_chunks
from region.db.listing import VersionedListing
from region.services import machines as machine_service
from region.services.context import Context, RegionResources
from region.services.machines import MachineView, MachineViews

# What an entry costs besides its JSON: the key's strings and tuples, the entry's tuple and slot.
ENTRY_OVERHEAD = 400

Key = tuple  # (row versions, the host, zone and pool as shown, digest of the catalog as shown)


class MachineJSONCache:
    """Machine id -> (key, rendered JSON), at most `limit` bytes (JSON and ENTRY_OVERHEAD)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._entries: OrderedDict[int, tuple[Key, bytes]] = OrderedDict()  # least recently listed first
        self._size = 0
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        return self._size

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, keys: list[tuple[int, Key]], *, complete: bool) -> dict[int, bytes]:
        """The kept JSON of the machines in `keys` whose entries have those keys; `complete`:
        `keys` names every machine there is, so entries of others are dropped."""
        hits = {}
        with self._lock:
            entries = self._entries
            if complete:
                present = {machine_id for machine_id, _ in keys}
                for gone in [machine_id for machine_id in entries if machine_id not in present]:
                    self._drop(gone)
            for machine_id, key in keys:
                found = entries.get(machine_id)
                if found is not None and found[0] == key:
                    hits[machine_id] = found[1]
                    entries.move_to_end(machine_id)
        return hits

    def store(self, rendered: list[tuple[int, Key, bytes]]) -> None:
        with self._lock:
            for machine_id, key, body in rendered:
                self._drop(machine_id)
                cost = len(body) + ENTRY_OVERHEAD
                if cost <= self.limit:
                    self._entries[machine_id] = (key, body)
                    self._size += cost
            while self._size > self.limit:
                _, (_, body) = self._entries.popitem(last=False)
                self._size -= len(body) + ENTRY_OVERHEAD

    def _drop(self, machine_id: int) -> None:
        found = self._entries.pop(machine_id, None)
        if found is not None:
            self._size -= len(found[1]) + ENTRY_OVERHEAD


class CachedListing:
    """One listing's use of a cache: `missing` (the service calls it in its transaction) keys
    the listing's machines and takes the hits; `chunks` makes the reply from the hits and the
    views of the rest, storing what it renders."""

    def __init__(self, cache: MachineJSONCache) -> None:
        self._cache = cache
        self._order: list[tuple[int, Key]] | None = None  # every machine listed, in id order
        self._hits: dict[int, bytes] = {}
        self._renderer: ListingRenderer | None = None

    def missing(self, found: VersionedListing, *, complete: bool) -> list[int]:
        renderer = ListingRenderer(found.catalog)
        catalog = renderer.catalog_digest()
        hosts = {host_id: renderer.host_shown(host, found.host_interfaces[host_id])
                 for host_id, host in found.hosts.items()}
        zones = {zone_id: renderer.zone_shown(zone) for zone_id, zone in found.zones.items()}
        pools = {pool_id: renderer.pool_shown(pool) for pool_id, pool in found.pools.items()}
        # v: (id, host id, zone id, pool id, row versions...): see region.db.listing.MachineVersion
        order = [(v[0], (v[4:], hosts[v[1]], zones[v[2]], pools[v[3]], catalog)) for v in found.versions]
        hits = self._cache.lookup(order, complete=complete)
        self._order, self._hits, self._renderer = order, hits, renderer
        return [machine_id for machine_id, _ in order if machine_id not in hits]

    def chunks(self, found: MachineViews) -> Iterator[bytes]:
        """The listing's JSON document in chunks (`found`: the views of the missing machines,
        emptied as they are rendered)."""
        if self._order is None:  # the service answered without asking (another domain)
            return listing_chunks(found)
        return self._chunks(found)

    def _chunks(self, found: MachineViews) -> Iterator[bytes]:
        views = {v.machine.id: v for v in found.machines}
        found.machines.clear()  # each view is freed as it is rendered
        return json_array_chunks(self._elements(views))

    def _elements(self, views: dict[int, MachineView]) -> Iterator[bytes]:
        order, hits, render = self._order, self._hits, self._renderer.render
        for start in range(0, len(order), CHUNK_MACHINES):
            pieces, made = [], []
            for machine_id, key in order[start:start + CHUNK_MACHINES]:
                body = hits.pop(machine_id, None)
                if body is None:
                    # A copy: orjson's bytes keep the capacity of its buffer (~16 KB for ~7 KB here).
                    body = bytes(memoryview(orjson.dumps(render(views.pop(machine_id)))))
                    made.append((machine_id, key, body))
                pieces.append(body)
            if made:
                self._cache.store(made)
            yield b",".join(pieces)


_caches: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # by the region's Database
_caches_lock = threading.Lock()


def cache_of(db) -> MachineJSONCache | None:
    """The cache of the region whose Database is `db`, if it has made one (for its metrics)."""
    with _caches_lock:
        return _caches.get(db)


def cached_listing(ctx: Context) -> CachedListing | None:
    """A listing's use of its region's cache; None when the region keeps none."""
    limit = ctx.config.machine_json_cache_bytes
    if not limit:
        return None
    with _caches_lock:
        cache = _caches.get(ctx.db)
        if cache is None:
            cache = _caches[ctx.db] = MachineJSONCache(limit)
    return CachedListing(cache)


async def warm(region: RegionResources) -> int:
    """Render every machine into the region's cache, as a listing of all machines would (a
    region does it once it has started); the number rendered.  One chunk of machines at a
    time in the render threads: cancelled (the region stops), it ends after that chunk."""
    reuse = cached_listing(Context(region))
    if reuse is None:
        return 0
    views = await machine_service.machines_to_render(region, reuse)
    rendered = len(views.machines)
    chunks = reuse.chunks(views)
    while await in_render_pool(next, chunks, None) is not None:
        pass
    return rendered
