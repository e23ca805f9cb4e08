"""Boot resources (images): one row per image, its one set and one file as columns."""

from __future__ import annotations

import datetime

import attrs
import psycopg2.errors

from region.db.errors import FieldError, NotFound


@attrs.frozen
class BootResource:
    id: int
    name: str  # ubuntu/noble, custom/NAME
    architecture: str  # amd64/generic
    rtype: str  # Synced | Uploaded
    title: str
    version: str  # the set's version (MAAS: a date, YYYYMMDD)
    label: str
    filename: str
    filetype: str
    size: int
    sha256: str
    received: int  # bytes of the file already on disk
    state: str  # uploading | complete | failed
    lxd_fingerprint: str | None
    lxd_size: int | None
    created: datetime.datetime
    updated: datetime.datetime

    @property
    def complete(self) -> bool:
        return self.state == "complete"


@attrs.frozen
class NewResource:
    name: str
    architecture: str
    title: str
    filetype: str
    size: int
    sha256: str


_COLUMNS = ("id, name, architecture, rtype, title, version, label, filename, filetype, size, sha256, received,"
            " state, lxd_fingerprint, lxd_size, created, updated")


def list_thd(cur) -> list[BootResource]:
    cur.execute(f"SELECT {_COLUMNS} FROM boot_resources ORDER BY id")
    return [BootResource(*r) for r in cur.fetchall()]


def get_thd(cur, resource_id: int, *, for_update: bool = False) -> BootResource:
    cur.execute(f"SELECT {_COLUMNS} FROM boot_resources WHERE id = %s" + (" FOR UPDATE" if for_update else ""),
                (resource_id,))
    row = cur.fetchone()
    if row is None:
        raise NotFound("BootResource")
    return BootResource(*row)


def create_thd(cur, new: NewResource, *, version: str, filename: str) -> BootResource:
    cur.execute("SAVEPOINT boot_resource_create")
    try:
        cur.execute(f"INSERT INTO boot_resources (name, architecture, rtype, title, version, filename, filetype,"
                    f" size, sha256) VALUES (%s, %s, 'Uploaded', %s, %s, %s, %s, %s, %s) RETURNING {_COLUMNS}",
                    (new.name, new.architecture, new.title, version, filename, new.filetype, new.size, new.sha256))
    except psycopg2.errors.UniqueViolation:
        cur.execute("ROLLBACK TO SAVEPOINT boot_resource_create")
        raise FieldError("name", f"A boot resource named {new.name} for {new.architecture} already exists.") \
            from None
    return BootResource(*cur.fetchone())


def record_received_thd(cur, resource_id: int, before: int, after: int) -> bool:
    """Move `received` from `before` to `after`; False if another upload moved it first."""
    cur.execute("UPDATE boot_resources SET received = %s, updated = now()"
                " WHERE id = %s AND received = %s AND state = 'uploading'", (after, resource_id, before))
    return cur.rowcount == 1


def finish_thd(cur, resource_id: int, *, state: str, lxd_fingerprint: str | None = None,
               lxd_size: int | None = None) -> BootResource:
    cur.execute(f"UPDATE boot_resources SET state = %s, lxd_fingerprint = %s, lxd_size = %s, updated = now()"
                f" WHERE id = %s RETURNING {_COLUMNS}", (state, lxd_fingerprint, lxd_size, resource_id))
    row = cur.fetchone()
    if row is None:
        raise NotFound("BootResource")
    return BootResource(*row)


def delete_thd(cur, resource_id: int) -> BootResource:
    cur.execute(f"DELETE FROM boot_resources WHERE id = %s RETURNING {_COLUMNS}", (resource_id,))
    row = cur.fetchone()
    if row is None:
        raise NotFound("BootResource")
    return BootResource(*row)


# -- synced resources (services/image_sync.py) ---------------------------------------------

def find_thd(cur, name: str, architecture: str) -> BootResource | None:
    cur.execute(f"SELECT {_COLUMNS} FROM boot_resources WHERE name = %s AND architecture = %s FOR UPDATE",
                (name, architecture))
    row = cur.fetchone()
    return BootResource(*row) if row else None


def begin_thd(cur, *, resource_id: int | None, name: str, architecture: str, title: str, version: str,
              filename: str, filetype: str, size: int, sha256: str) -> BootResource:
    """A Synced resource about to receive `version`: a new row, or the existing one restarted."""
    values = (title, version, filename, filetype, size, sha256)
    if resource_id is None:
        cur.execute(f"INSERT INTO boot_resources (name, architecture, rtype, label, title, version, filename,"
                    f" filetype, size, sha256) VALUES (%s, %s, 'Synced', 'stable', %s, %s, %s, %s, %s, %s)"
                    f" RETURNING {_COLUMNS}", (name, architecture, *values))
    else:
        cur.execute(f"UPDATE boot_resources SET title = %s, version = %s, filename = %s, filetype = %s, size = %s,"
                    f" sha256 = %s, received = 0, state = 'uploading', lxd_fingerprint = NULL, lxd_size = NULL,"
                    f" updated = now() WHERE id = %s RETURNING {_COLUMNS}", (*values, resource_id))
    return BootResource(*cur.fetchone())


def set_received_thd(cur, resource_id: int, received: int) -> None:
    cur.execute("UPDATE boot_resources SET received = %s, updated = now() WHERE id = %s AND state = 'uploading'",
                (received, resource_id))


def restore_thd(cur, previous: BootResource) -> None:
    """Put a synced resource back as it was before a newer version was tried."""
    p = previous
    cur.execute("UPDATE boot_resources SET title = %s, version = %s, filename = %s, filetype = %s, size = %s,"
                " sha256 = %s, received = %s, state = %s, lxd_fingerprint = %s, lxd_size = %s, updated = now()"
                " WHERE id = %s", (p.title, p.version, p.filename, p.filetype, p.size, p.sha256, p.received, p.state,
                                   p.lxd_fingerprint, p.lxd_size, p.id))


@attrs.frozen
class HostImage:
    """An image a VM host holds (LXD has it by this fingerprint)."""

    resource_id: int
    name: str
    architecture: str
    lxd_fingerprint: str
    copying: int | None = None  # percent while a rack still copies it to the host


def record_on_host_thd(cur, resource_id: int, host_id: int, lxd_fingerprint: str) -> None:
    cur.execute(
        "INSERT INTO boot_resource_hosts (resource_id, host_id, lxd_fingerprint) VALUES (%s, %s, %s)"
        " ON CONFLICT (resource_id, host_id) DO UPDATE SET lxd_fingerprint = EXCLUDED.lxd_fingerprint,"
        " copying = NULL",
        (resource_id, host_id, lxd_fingerprint),
    )


def record_copying_thd(cur, resource_id: int, host_id: int, lxd_fingerprint: str, percent: int) -> None:
    """A rack is copying the image to the host (never undoes a copy already there)."""
    cur.execute(
        "INSERT INTO boot_resource_hosts (resource_id, host_id, lxd_fingerprint, copying) VALUES (%s, %s, %s, %s)"
        " ON CONFLICT (resource_id, host_id) DO UPDATE SET copying = EXCLUDED.copying"
        " WHERE boot_resource_hosts.copying IS NOT NULL",
        (resource_id, host_id, lxd_fingerprint, percent),
    )


def forget_copy_thd(cur, resource_id: int, host_id: int) -> None:
    """A copy that did not finish: the host does not hold the image."""
    cur.execute("DELETE FROM boot_resource_hosts WHERE resource_id = %s AND host_id = %s AND copying IS NOT NULL",
                (resource_id, host_id))


def held_by_hosts_thd(cur) -> dict[int, list[HostImage]]:
    """Every host's images, by host id (one query for any number of hosts)."""
    cur.execute(
        "SELECT h.host_id, r.id, r.name, r.architecture, h.lxd_fingerprint, h.copying"
        " FROM boot_resource_hosts h JOIN boot_resources r ON r.id = h.resource_id ORDER BY r.name, r.id"
    )
    held: dict[int, list[HostImage]] = {}
    for host_id, *image in cur.fetchall():
        held.setdefault(host_id, []).append(HostImage(*image))
    return held


# -- which region holds which LXD image file (0021_image_holders.sql) ----------------------------

def record_holder_thd(cur, fingerprint: str, region_url: str) -> None:
    cur.execute("INSERT INTO image_holders (fingerprint, region_url) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                (fingerprint, region_url))


def holders_thd(cur, fingerprint: str) -> list[str]:
    """The URLs of the regions holding the file, the latest first."""
    cur.execute("SELECT region_url FROM image_holders WHERE fingerprint = %s ORDER BY created DESC", (fingerprint,))
    return [row[0] for row in cur.fetchall()]


def forget_holders_thd(cur, fingerprint: str) -> None:
    cur.execute("DELETE FROM image_holders WHERE fingerprint = %s", (fingerprint,))
