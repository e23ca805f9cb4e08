"""Image sync: the lease one region holds while it syncs, and how the last sync went."""

from __future__ import annotations

import datetime

import attrs


@attrs.frozen
class SyncState:
    importing: bool  # a region holds the lease
    started: datetime.datetime | None
    finished: datetime.datetime | None
    error: str | None


def state_thd(cur) -> SyncState:
    cur.execute("SELECT lease_until IS NOT NULL AND lease_until > now(), started, finished, error"
                " FROM image_sync WHERE id = 1")
    return SyncState(*cur.fetchone())


def claim_thd(cur, region_id: str, lease: float, *, finished_before: float | None = None) -> bool:
    """Take the lease unless another region holds it; with `finished_before`, only when the
    last sync finished at least that many seconds ago (or never ran)."""
    cur.execute("UPDATE image_sync SET region_id = %s, lease_until = now() + make_interval(secs => %s),"
                " started = now() WHERE id = 1 AND (lease_until IS NULL OR lease_until < now())"
                " AND (%s::float8 IS NULL OR finished IS NULL OR finished < now() - make_interval(secs => %s))",
                (region_id, lease, finished_before, finished_before or 0))
    return cur.rowcount == 1


def renew_thd(cur, region_id: str, lease: float) -> bool:
    cur.execute("UPDATE image_sync SET lease_until = now() + make_interval(secs => %s)"
                " WHERE id = 1 AND region_id = %s AND lease_until > now()", (lease, region_id))
    return cur.rowcount == 1


def release_thd(cur, region_id: str, error: str | None) -> None:
    cur.execute("UPDATE image_sync SET lease_until = NULL, finished = now(), error = %s"
                " WHERE id = 1 AND region_id = %s", (error, region_id))
