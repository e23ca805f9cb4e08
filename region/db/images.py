"""Boot resources (images): one row per image with its one set as columns, and its files
(boot_resource_files: one, or two for an LXD split image)."""

from __future__ import annotations

import datetime

import attrs
import psycopg2.errors

from region.db.errors import FieldError, NotFound

SPLIT_METADATA = "lxd-meta"  # the metadata tarball of an LXD split image; its other file is the rootfs


@attrs.frozen
class ResourceFile:
    id: int
    filename: str
    filetype: str
    size: int
    sha256: str
    received: int  # bytes of the file already on disk

    @property
    def whole(self) -> bool:
        return self.received == self.size


@attrs.frozen
class BootResource:
    id: int
    name: str  # ubuntu/noble, custom/NAME
    architecture: str  # amd64/generic
    rtype: str  # Synced | Uploaded
    title: str
    version: str  # the set's version (MAAS: a date, YYYYMMDD)
    label: str
    state: str  # uploading | complete | failed
    lxd_fingerprint: str | None
    lxd_size: int | None
    created: datetime.datetime
    updated: datetime.datetime
    files: tuple[ResourceFile, ...] = ()

    @property
    def complete(self) -> bool:
        return self.state == "complete"

    @property
    def main_file(self) -> ResourceFile:
        """The file that says what the image is: the rootfs of a split image, else the only one."""
        return next((f for f in self.files if f.filetype != SPLIT_METADATA), self.files[0])

    @property
    def filetype(self) -> str:
        return self.main_file.filetype

    @property
    def sha256(self) -> str:
        return self.main_file.sha256

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def received(self) -> int:
        return sum(f.received for f in self.files)

    def file(self, file_id: int) -> ResourceFile:
        found = next((f for f in self.files if f.id == file_id), None)
        if found is None:
            raise NotFound("BootResourceFile")
        return found


@attrs.frozen
class NewResource:
    name: str
    architecture: str
    title: str
    filetype: str
    size: int
    sha256: str


_COLUMNS = "id, name, architecture, rtype, title, version, label, state, lxd_fingerprint, lxd_size, created, updated"
_FILE_COLUMNS = "id, filename, filetype, size, sha256, received"


def _with_files(cur, rows: list[tuple]) -> list[BootResource]:
    """Resources from their rows, each with its files (one query for all)."""
    files: dict[int, list[ResourceFile]] = {}
    if rows:
        cur.execute(f"SELECT resource_id, {_FILE_COLUMNS} FROM boot_resource_files WHERE resource_id = ANY(%s)"
                    " ORDER BY id", ([r[0] for r in rows],))
        for resource_id, *file in cur.fetchall():
            files.setdefault(resource_id, []).append(ResourceFile(*file))
    return [BootResource(*r, files=tuple(files.get(r[0], ()))) for r in rows]


def _one(cur) -> BootResource | None:
    row = cur.fetchone()
    return _with_files(cur, [row])[0] if row else None


def list_thd(cur) -> list[BootResource]:
    cur.execute(f"SELECT {_COLUMNS} FROM boot_resources ORDER BY id")
    return _with_files(cur, cur.fetchall())


def get_thd(cur, resource_id: int, *, for_update: bool = False) -> BootResource:
    cur.execute(f"SELECT {_COLUMNS} FROM boot_resources WHERE id = %s" + (" FOR UPDATE" if for_update else ""),
                (resource_id,))
    found = _one(cur)
    if found is None:
        raise NotFound("BootResource")
    return found


def add_file_thd(cur, resource_id: int, new: NewResource, *, filename: str) -> ResourceFile:
    cur.execute(f"INSERT INTO boot_resource_files (resource_id, filename, filetype, size, sha256)"
                f" VALUES (%s, %s, %s, %s, %s) RETURNING {_FILE_COLUMNS}",
                (resource_id, filename, new.filetype, new.size, new.sha256))
    return ResourceFile(*cur.fetchone())


def create_thd(cur, new: NewResource, *, version: str, filename: str) -> BootResource:
    cur.execute("SAVEPOINT boot_resource_create")
    try:
        cur.execute("INSERT INTO boot_resources (name, architecture, rtype, title, version)"
                    " VALUES (%s, %s, 'Uploaded', %s, %s) RETURNING id",
                    (new.name, new.architecture, new.title, version))
    except psycopg2.errors.UniqueViolation:
        cur.execute("ROLLBACK TO SAVEPOINT boot_resource_create")
        raise FieldError("name", f"A boot resource named {new.name} for {new.architecture} already exists.") \
            from None
    resource_id = cur.fetchone()[0]
    add_file_thd(cur, resource_id, new, filename=filename)
    return get_thd(cur, resource_id)


def find_uploading_thd(cur, name: str, architecture: str) -> BootResource | None:
    """An uploaded resource of that name still receiving its files (locked), or None."""
    cur.execute(f"SELECT {_COLUMNS} FROM boot_resources WHERE name = %s AND architecture = %s"
                " AND rtype = 'Uploaded' AND state = 'uploading' FOR UPDATE", (name, architecture))
    return _one(cur)


def record_received_thd(cur, file_id: int, before: int, after: int) -> bool:
    """Move a file's `received` from `before` to `after`; False if another upload moved it first."""
    cur.execute("UPDATE boot_resource_files f SET received = %s FROM boot_resources r"
                " WHERE f.id = %s AND f.received = %s AND r.id = f.resource_id AND r.state = 'uploading'",
                (after, file_id, before))
    if cur.rowcount != 1:
        return False
    cur.execute("UPDATE boot_resources SET updated = now() WHERE id = (SELECT resource_id FROM boot_resource_files"
                " WHERE id = %s)", (file_id,))
    return True


def finish_thd(cur, resource_id: int, *, state: str, lxd_fingerprint: str | None = None,
               lxd_size: int | None = None) -> BootResource:
    cur.execute(f"UPDATE boot_resources SET state = %s, lxd_fingerprint = %s, lxd_size = %s, updated = now()"
                f" WHERE id = %s RETURNING {_COLUMNS}", (state, lxd_fingerprint, lxd_size, resource_id))
    found = _one(cur)
    if found is None:
        raise NotFound("BootResource")
    return found


def delete_thd(cur, resource_id: int) -> BootResource:
    gone = get_thd(cur, resource_id)
    cur.execute("DELETE FROM boot_resources WHERE id = %s", (resource_id,))
    return gone


# -- synced resources (services/image_sync.py): one file each ----------------------------------

def find_thd(cur, name: str, architecture: str) -> BootResource | None:
    cur.execute(f"SELECT {_COLUMNS} FROM boot_resources WHERE name = %s AND architecture = %s FOR UPDATE",
                (name, architecture))
    return _one(cur)


def begin_thd(cur, *, resource_id: int | None, name: str, architecture: str, title: str, version: str,
              filename: str, filetype: str, size: int, sha256: str) -> BootResource:
    """A Synced resource about to receive `version`: a new row, or the existing one restarted."""
    if resource_id is None:
        cur.execute("INSERT INTO boot_resources (name, architecture, rtype, label, title, version)"
                    " VALUES (%s, %s, 'Synced', 'stable', %s, %s) RETURNING id", (name, architecture, title, version))
        resource_id = cur.fetchone()[0]
    else:
        cur.execute("UPDATE boot_resources SET title = %s, version = %s, state = 'uploading', lxd_fingerprint = NULL,"
                    " lxd_size = NULL, updated = now() WHERE id = %s", (title, version, resource_id))
        cur.execute("DELETE FROM boot_resource_files WHERE resource_id = %s", (resource_id,))
    add_file_thd(cur, resource_id, NewResource(name, architecture, title, filetype, size, sha256), filename=filename)
    return get_thd(cur, resource_id)


def set_received_thd(cur, resource_id: int, received: int) -> None:
    cur.execute("UPDATE boot_resource_files f SET received = %s FROM boot_resources r"
                " WHERE f.resource_id = %s AND r.id = f.resource_id AND r.state = 'uploading'",
                (received, resource_id))


def restore_thd(cur, previous: BootResource) -> None:
    """Put a synced resource back as it was before a newer version was tried (its files too)."""
    p = previous
    cur.execute("UPDATE boot_resources SET title = %s, version = %s, state = %s, lxd_fingerprint = %s,"
                " lxd_size = %s, updated = now() WHERE id = %s",
                (p.title, p.version, p.state, p.lxd_fingerprint, p.lxd_size, p.id))
    cur.execute("DELETE FROM boot_resource_files WHERE resource_id = %s", (p.id,))
    for f in p.files:
        cur.execute("INSERT INTO boot_resource_files (id, resource_id, filename, filetype, size, sha256, received)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s)", (f.id, p.id, f.filename, f.filetype, f.size, f.sha256,
                                                             f.received))


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
