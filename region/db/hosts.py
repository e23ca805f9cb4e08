"""VM hosts and their discovered storage pools.

A host's private key is kept in `secrets` (encrypted with the region key)
under `vm-host-key:<id>`; the row only names it.
"""

from __future__ import annotations

import datetime
from typing import Any

import attrs
import psycopg2.errors

from region.db import host_load, secrets
from region.db.errors import FieldError, NotFound
from region.db.pool import Statement, statement_thd
from region.db.prepared import Prepared
from region.secretbox import SecretBox


@attrs.frozen
class HostStoragePool:
    id: int
    name: str
    type: str
    path: str
    total: int
    used: int

    @property
    def available(self) -> int:
        return self.total - self.used


@attrs.frozen
class VMHost:
    id: int
    name: str
    type: str
    power_address: str
    project: str
    state: str
    state_message: str
    certificate: str | None
    server_fingerprint: str | None
    version: str
    architectures: list[str]
    capabilities: list[str]
    tags: list[str]
    cores: int
    cpu_speed: int
    memory: int  # bytes
    zone_id: int
    pool_id: int
    cpu_over_commit_ratio: float
    memory_over_commit_ratio: float
    default_storage_pool: str | None
    default_macvlan_mode: str | None
    last_refresh: datetime.datetime | None
    deploy_profiles: list[str] = attrs.field(factory=list)  # LXD profiles deployed machines also get
    storage_pools: list[HostStoragePool] = attrs.field(factory=list)


@attrs.frozen
class NewHost:
    """What a create request has validated."""

    name: str
    type: str
    power_address: str
    project: str
    certificate: str | None
    key: str | None = attrs.field(repr=False)
    zone_id: int
    pool_id: int
    tags: list[str]
    cpu_over_commit_ratio: float
    memory_over_commit_ratio: float
    default_macvlan_mode: str | None


COLUMNS = (
    "id, name, type, power_address, project, state, state_message, certificate, server_fingerprint,"
    " version, architectures, capabilities, tags, cores, cpu_speed, memory, zone_id, pool_id,"
    " cpu_over_commit_ratio, memory_over_commit_ratio, default_storage_pool, default_macvlan_mode,"
    " last_refresh, deploy_profiles"
)


def key_secret_name(host_id: int) -> str:
    return f"vm-host-key:{host_id}"


def pools_thd(cur, host_ids: list[int]) -> dict[int, list[HostStoragePool]]:
    """The storage pools of the hosts `host_ids`, by host id."""
    cur.execute(
        "SELECT host_id, id, name, type, path, total, used FROM vm_host_storage_pools"
        " WHERE host_id = ANY(%s) ORDER BY id",
        (host_ids,),
    )
    found: dict[int, list[HostStoragePool]] = {}
    for host_id, *row in cur.fetchall():
        found.setdefault(host_id, []).append(HostStoragePool(*row))
    return found


def _hosts(cur, rows) -> list[VMHost]:
    pools = pools_thd(cur, [r[0] for r in rows])
    return [VMHost(*r, storage_pools=pools.get(r[0], [])) for r in rows]


def list_thd(cur) -> list[VMHost]:
    cur.execute(f"SELECT {COLUMNS} FROM vm_hosts ORDER BY id")
    return _hosts(cur, cur.fetchall())


_WITH_POOLS = (f"SELECT {COLUMNS}, COALESCE((SELECT json_agg(json_build_array(p.id, p.name, p.type, p.path,"
               " p.total, p.used) ORDER BY p.id) FROM vm_host_storage_pools p WHERE p.host_id = h.id), '[]'::json)")
_LOCK = Prepared("lock_host", "SELECT 1 FROM vm_hosts WHERE id = %s FOR UPDATE")
_FOR_PLACEMENT = Prepared(
    "host_for_placement",
    f"{_WITH_POOLS}, (SELECT s.value FROM secrets s WHERE s.name = h.key_secret), {host_load.LOAD_COLUMNS}"
    " FROM vm_hosts h WHERE id = %s")


def get_thd(cur, host_id: int | str, for_update: bool = False) -> VMHost:
    """The host with its storage pools, in one round trip."""
    lock = " FOR UPDATE OF h" if for_update else ""
    cur.execute(f"{_WITH_POOLS} FROM vm_hosts h WHERE id = %s{lock}", (_host_id(host_id),))
    return _host(cur.fetchone())


def _host_id(given: int | str) -> int:
    """A host id as the API gave it; NotFound for anything but digits."""
    if not str(given).isdigit():
        raise NotFound("VM host")
    return int(given)


def _host(row: tuple | None) -> VMHost:
    if row is None:
        raise NotFound("VM host")
    *host, pools = row
    return VMHost(*host, storage_pools=[HostStoragePool(*p) for p in pools])


@attrs.frozen
class LockedHost:
    host: VMHost
    key: bytes | None = attrs.field(repr=False)  # the client key, still encrypted (a compose sends it to the rack)
    load: host_load.HostLoad  # read once the lock was ours


def lock_for_placement_statements(host_id: int | str) -> list[Statement[Any]]:
    """Lock the host row for a placement and read the host and what its VMs hold; the last
    statement's result is the LockedHost.  Must open the transaction.

    READ COMMITTED + the row lock: once the lock is ours, every later statement sees the
    reservations committed before it (a REPEATABLE READ snapshot would predate the wait; so
    would the lock's own statement, which is why the read is a second statement).  The
    isolation level, the lock and the read travel in one round trip.
    """
    host_id = _host_id(host_id)

    def locked(rows: list[tuple] | None) -> LockedHost:
        if not rows:
            raise NotFound("VM host")
        *host, key, numa, vms = rows[0]
        return LockedHost(_host(host), key, host_load.load_of(numa, vms))

    return [Statement("SET TRANSACTION ISOLATION LEVEL READ COMMITTED", None), Statement(_LOCK, (host_id,)),
            Statement(_FOR_PLACEMENT, (host_id,), locked)]


def lock_for_placement_thd(cur, host_id: int | str) -> LockedHost:
    """`lock_for_placement_statements` in a transaction run in a thread."""
    *first, read = lock_for_placement_statements(host_id)
    for statement in first:
        cur.execute_later(statement.sql, statement.args)
    return statement_thd(cur, read)


def certificate_by_name_thd(cur, name: str) -> str | None:
    cur.execute("SELECT certificate FROM vm_hosts WHERE name = %s", (name,))
    row = cur.fetchone()
    return row[0] if row else None


def create_thd(cur, box: SecretBox, new: NewHost) -> VMHost:
    cur.execute("SAVEPOINT create_host")
    try:
        cur.execute(
            "INSERT INTO vm_hosts (name, type, power_address, project, certificate, zone_id, pool_id, tags,"
            " cpu_over_commit_ratio, memory_over_commit_ratio, default_macvlan_mode)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (new.name, new.type, new.power_address, new.project, new.certificate, new.zone_id, new.pool_id,
             new.tags, new.cpu_over_commit_ratio, new.memory_over_commit_ratio, new.default_macvlan_mode),
        )
    except psycopg2.errors.UniqueViolation:
        cur.execute("ROLLBACK TO SAVEPOINT create_host")
        raise FieldError("name", f"A VM host named {new.name!r} already exists.") from None
    host_id = cur.fetchone()[0]
    if new.key is not None:
        secrets.put_thd(cur, box, key_secret_name(host_id), new.key)
        cur.execute("UPDATE vm_hosts SET key_secret = %s WHERE id = %s", (key_secret_name(host_id), host_id))
    return get_thd(cur, host_id)


def key_thd(cur, box: SecretBox, host_id: int) -> str | None:
    return secrets.get_thd(cur, box, key_secret_name(host_id))


def delete_thd(cur, host_id: int | str) -> VMHost:
    host = get_thd(cur, host_id)
    cur.execute("DELETE FROM vm_hosts WHERE id = %s", (host.id,))
    secrets.delete_thd(cur, key_secret_name(host.id))
    return host


def find_duplicate_thd(cur, host_type: str, address: str, project: str, exclude_id: int | None = None) -> str | None:
    """The name of another host with the same type, address and project, if any."""
    cur.execute("SELECT name FROM vm_hosts WHERE type = %s AND power_address = %s AND project = %s"
                " AND id IS DISTINCT FROM %s", (host_type, address, project, exclude_id))
    row = cur.fetchone()
    return row[0] if row else None


def name_taken_thd(cur, name: str, exclude_id: int | None = None) -> bool:
    cur.execute("SELECT 1 FROM vm_hosts WHERE name = %s AND id IS DISTINCT FROM %s", (name, exclude_id))
    return cur.fetchone() is not None


_UPDATABLE = frozenset({
    "name", "power_address", "project", "zone_id", "pool_id", "tags", "cpu_over_commit_ratio",
    "memory_over_commit_ratio", "default_storage_pool", "default_macvlan_mode", "certificate",
    "server_fingerprint", "deploy_profiles",
})


def update_thd(cur, box: SecretBox, host_id: int, changes: dict, key: str | None = None) -> VMHost:
    """Change the given columns (and the key, when given); unknown names are a bug."""
    unknown = set(changes) - _UPDATABLE
    if unknown:
        raise ValueError(f"not updatable: {sorted(unknown)}")
    if changes:
        assignments = ", ".join(f"{column} = %s" for column in changes)
        cur.execute("SAVEPOINT update_host")
        try:
            cur.execute(f"UPDATE vm_hosts SET {assignments}, updated = now() WHERE id = %s",
                        (*changes.values(), host_id))
        except psycopg2.errors.UniqueViolation:
            cur.execute("ROLLBACK TO SAVEPOINT update_host")
            raise FieldError("name", f"A VM host named {changes.get('name')!r} already exists.") from None
    if key is not None:
        secrets.put_thd(cur, box, key_secret_name(host_id), key)
        cur.execute("UPDATE vm_hosts SET key_secret = %s WHERE id = %s", (key_secret_name(host_id), host_id))
    return get_thd(cur, host_id)


def record_discovery_thd(cur, host_id: int, found) -> None:
    """A successful discovery: live facts, the pinned server certificate (an SSH fingerprint an
    admin gave becomes the key the rack checked against it), state ready."""
    cur.execute(
        "UPDATE vm_hosts SET version = %s, architectures = %s, capabilities = %s, cores = %s,"
        " cpu_speed = %s, memory = %s, server_fingerprint = CASE WHEN server_fingerprint IS NULL"
        " OR server_fingerprint LIKE 'SHA256:%%' THEN %s ELSE server_fingerprint END,"
        " state = 'ready', state_message = '', last_refresh = now(), updated = now() WHERE id = %s",
        (found.version, found.architectures, found.capabilities, found.cores, found.cpu_speed,
         found.memory, found.server_fingerprint, host_id),
    )


def record_failure_thd(cur, host_id: int, state: str, message: str) -> None:
    """A failed discovery: the state and reason change, everything else is kept."""
    cur.execute("UPDATE vm_hosts SET state = %s, state_message = %s, updated = now() WHERE id = %s",
                (state, message, host_id))


# -- refresh lease: at most one refresh per host at a time, across all regions -------------

def claim_refresh_thd(cur, host_id: int, owner: str, lease_seconds: float, due_only: bool = False) -> bool:
    """`due_only`: only if the next refresh is due, so that a periodic refresh another
    region has just finished does not run again here."""
    cur.execute(
        "UPDATE vm_hosts SET refresh_owner = %s, refresh_lease_until = now() + make_interval(secs => %s)"
        " WHERE id = %s AND (refresh_lease_until IS NULL OR refresh_lease_until < now())"
        " AND (NOT %s OR next_refresh <= now()) RETURNING id",
        (owner, lease_seconds, host_id, due_only),
    )
    return cur.fetchone() is not None


def release_refresh_thd(cur, host_id: int, owner: str, next_in_seconds: float) -> None:
    """After a refresh that reached the host (or did not get that far): the backoff resets."""
    cur.execute(
        "UPDATE vm_hosts SET refresh_owner = NULL, refresh_lease_until = NULL, refresh_failures = 0,"
        " next_refresh = now() + make_interval(secs => %s) WHERE id = %s AND refresh_owner = %s",
        (next_in_seconds, host_id, owner),
    )


def release_failed_refresh_thd(cur, host_id: int, owner: str, next_in_seconds: float, max_seconds: float) -> None:
    """After a failed refresh: the next one waits `next_in_seconds` doubled for each failure
    in a row before this one, at most `max_seconds`."""
    cur.execute(
        "UPDATE vm_hosts SET refresh_owner = NULL, refresh_lease_until = NULL,"
        " next_refresh = now() + make_interval(secs => least(%s * power(2, least(refresh_failures, 30)), %s)),"
        " refresh_failures = refresh_failures + 1 WHERE id = %s AND refresh_owner = %s",
        (next_in_seconds, max_seconds, host_id, owner),
    )


def release_owned_refreshes_thd(cur, owner: str) -> int:
    """Drops every lease `owner` holds (its refreshes were cancelled); the hosts stay due."""
    cur.execute("UPDATE vm_hosts SET refresh_owner = NULL, refresh_lease_until = NULL WHERE refresh_owner = %s",
                (owner,))
    return cur.rowcount


@attrs.frozen
class LeasedRefresh:
    host_id: int
    lag: float  # seconds past its due time
    failing: bool  # its last refresh failed: it is backing off


def lease_due_thd(cur, owner: str, limit: int, failing: bool, lease_seconds: float) -> list[LeasedRefresh]:
    """Leases up to `limit` due hosts, longest overdue first, among those whose last refresh
    failed or not (`failing`), skipping rows another region is leasing at this moment."""
    which = "refresh_failures > 0" if failing else "refresh_failures = 0"  # as the index reads them
    cur.execute(
        f"WITH due AS (SELECT id FROM vm_hosts WHERE {which} AND next_refresh <= now()"
        "   AND (refresh_lease_until IS NULL OR refresh_lease_until < now())"
        "   ORDER BY next_refresh LIMIT %s FOR UPDATE SKIP LOCKED)"
        " UPDATE vm_hosts h SET refresh_owner = %s, refresh_lease_until = now() + make_interval(secs => %s)"
        " FROM due WHERE h.id = due.id"
        " RETURNING h.id, extract(epoch FROM now() - h.next_refresh)::float8",
        (limit, owner, lease_seconds))
    return [LeasedRefresh(host_id, max(0.0, lag), failing) for host_id, lag in cur.fetchall()]


@attrs.frozen
class RefreshBacklog:
    total: int
    overdue: int  # due and not leased
    max_lag: float  # seconds the most overdue of them has waited
    failing: int


def refresh_backlog_thd(cur) -> RefreshBacklog:
    cur.execute(
        "SELECT count(*), count(*) FILTER (WHERE due), coalesce(max(lag) FILTER (WHERE due), 0),"
        " count(*) FILTER (WHERE refresh_failures > 0)"
        " FROM (SELECT refresh_failures, extract(epoch FROM now() - next_refresh)::float8 AS lag,"
        "   next_refresh <= now() AND (refresh_lease_until IS NULL OR refresh_lease_until < now()) AS due"
        "   FROM vm_hosts) h")
    total, overdue, max_lag, failing = cur.fetchone()
    return RefreshBacklog(total, overdue, max_lag, failing)


def schedule_refresh_thd(cur, host_id: int, next_in_seconds: float) -> None:
    cur.execute("UPDATE vm_hosts SET next_refresh = now() + make_interval(secs => %s) WHERE id = %s",
                (next_in_seconds, host_id))


def refreshing_thd(cur, host_id: int) -> bool:
    cur.execute("SELECT refresh_lease_until > now() FROM vm_hosts WHERE id = %s", (host_id,))
    row = cur.fetchone()
    return bool(row and row[0])
