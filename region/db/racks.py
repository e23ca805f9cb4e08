"""Racks, the region processes they connect to, and who is connected where."""

from __future__ import annotations

import datetime

import attrs

from common.rpc.wire import RegionEndpoint
from region.db.errors import NotFound

# A region whose heartbeat is older than this is taken to be dead, and the
# connections it recorded no longer count.
REGION_STALE_AFTER = datetime.timedelta(seconds=90)


@attrs.frozen
class Rack:
    id: int
    system_id: str
    hostname: str
    version: str
    cert_fingerprint: str
    created: datetime.datetime
    last_seen: datetime.datetime | None
    connections: int  # live connections across all live regions

    @property
    def connected(self) -> bool:
        return self.connections > 0


_SELECT = """
SELECT r.id, r.system_id, r.hostname, r.version, r.cert_fingerprint, r.created, r.last_seen,
       COALESCE((SELECT sum(c.connections) FROM rack_connections c
                 JOIN region_processes p ON p.id = c.region_id
                 WHERE c.rack_id = r.id AND p.heartbeat > now() - %s), 0)::int
FROM racks r
"""


def list_thd(cur) -> list[Rack]:
    cur.execute(_SELECT + " ORDER BY r.id", (REGION_STALE_AFTER,))
    return [Rack(*r) for r in cur.fetchall()]


def get_thd(cur, system_id: str) -> Rack:
    cur.execute(_SELECT + " WHERE r.system_id = %s", (REGION_STALE_AFTER, system_id))
    row = cur.fetchone()
    if row is None:
        raise NotFound("rack controller")
    return Rack(*row)


def get_by_fingerprint_thd(cur, fingerprint: str) -> Rack | None:
    cur.execute(_SELECT + " WHERE r.cert_fingerprint = %s", (REGION_STALE_AFTER, fingerprint))
    row = cur.fetchone()
    return None if row is None else Rack(*row)


def enrol_thd(cur, system_id: str, hostname: str, fingerprint: str) -> None:
    cur.execute(
        "INSERT INTO racks (system_id, hostname, cert_fingerprint) VALUES (%s, %s, %s)",
        (system_id, hostname, fingerprint),
    )


@attrs.frozen
class Revocation:
    id: int
    system_id: str
    cert_fingerprint: str


def delete_thd(cur, system_id: str) -> str:
    """Forget the rack and revoke its certificate; returns the certificate's fingerprint."""
    cur.execute("DELETE FROM racks WHERE system_id = %s RETURNING cert_fingerprint", (system_id,))
    row = cur.fetchone()
    if row is None:
        raise NotFound("rack controller")
    cur.execute("INSERT INTO revoked_racks (system_id, cert_fingerprint) VALUES (%s, %s)", (system_id, row[0]))
    return row[0]


def revoked_since_thd(cur, last_id: int) -> list[Revocation]:
    cur.execute("SELECT id, system_id, cert_fingerprint FROM revoked_racks WHERE id > %s ORDER BY id",
                (last_id,))
    return [Revocation(*row) for row in cur.fetchall()]


def register_region_thd(cur, region_id: str, hostname: str, pid: int) -> None:
    cur.execute(
        "INSERT INTO region_processes (id, hostname, pid) VALUES (%s, %s, %s)",
        (region_id, hostname, pid),
    )
    # Forget regions that died without saying so; their connection rows go
    # with them (ON DELETE CASCADE).
    cur.execute("DELETE FROM region_processes WHERE heartbeat < now() - %s * 10", (REGION_STALE_AFTER,))


def forget_dead_local_regions_thd(cur, hostname: str, is_alive) -> list[str]:
    """Drop region processes of this machine whose PID is gone (killed, crashed):
    their racks' connections and their compose reservations stop counting now,
    not after the heartbeat goes stale."""
    cur.execute("SELECT id, pid FROM region_processes WHERE hostname = %s", (hostname,))
    dead = [region_id for region_id, pid in cur.fetchall() if not is_alive(pid)]
    if dead:
        cur.execute("DELETE FROM region_processes WHERE id = ANY(%s)", (dead,))
    return dead


def set_rpc_endpoint_thd(cur, region_id: str, host: str, port: int) -> None:
    cur.execute("UPDATE region_processes SET rpc_host = %s, rpc_port = %s WHERE id = %s", (host, port, region_id))


def live_region_endpoints_thd(cur) -> list[RegionEndpoint]:
    cur.execute("SELECT id, rpc_host, rpc_port FROM region_processes"
                " WHERE heartbeat > now() - %s AND rpc_host IS NOT NULL ORDER BY id", (REGION_STALE_AFTER,))
    return [RegionEndpoint(*row) for row in cur.fetchall()]


def heartbeat_thd(cur, region_id: str) -> None:
    cur.execute("UPDATE region_processes SET heartbeat = now() WHERE id = %s", (region_id,))


def unregister_region_thd(cur, region_id: str) -> None:
    cur.execute("DELETE FROM region_processes WHERE id = %s", (region_id,))


def rack_connected_thd(cur, region_id: str, rack_id: int, hostname: str, version: str) -> bool:
    """Count one more connection; True when it is the rack's first here."""
    cur.execute(
        "UPDATE racks SET hostname = %s, version = %s, last_seen = now() WHERE id = %s",
        (hostname, version, rack_id),
    )
    cur.execute(
        "INSERT INTO rack_connections (rack_id, region_id, connections) VALUES (%s, %s, 1)"
        " ON CONFLICT (rack_id, region_id)"
        " DO UPDATE SET connections = rack_connections.connections + 1 RETURNING connections",
        (rack_id, region_id),
    )
    return cur.fetchone()[0] == 1


def rack_disconnected_thd(cur, region_id: str, rack_id: int) -> bool:
    """Count one connection less; True when the rack has none left here."""
    cur.execute("UPDATE racks SET last_seen = now() WHERE id = %s", (rack_id,))
    cur.execute(
        "UPDATE rack_connections SET connections = connections - 1"
        " WHERE rack_id = %s AND region_id = %s AND connections > 1 RETURNING connections",
        (rack_id, region_id),
    )
    if cur.fetchone() is not None:
        return False
    cur.execute("DELETE FROM rack_connections WHERE rack_id = %s AND region_id = %s", (rack_id, region_id))
    return True


def touch_racks_thd(cur, rack_ids: list[int]) -> None:
    if rack_ids:
        cur.execute("UPDATE racks SET last_seen = now() WHERE id = ANY(%s)", (rack_ids,))
