"""A throw-away PostgreSQL cluster for a test session or a benchmark (run as a non-root user).

It reuses the embedded-cluster code the region itself runs, with durability
switched off for speed.  Each test gets its own database, cloned from a
template that already has the schema at head (or an empty one).
"""

from __future__ import annotations

import itertools
import shutil
import subprocess
import tempfile
from pathlib import Path

import attrs
import psycopg2

from region.db import migrate
from region.embedded_pg import EmbeddedPostgres, find_pg_bindir

TEMPLATE = "vmyard_template"
_counter = itertools.count()


@attrs.define
class PostgresCluster:
    base: Path
    pg: EmbeddedPostgres

    @classmethod
    def start(cls) -> "PostgresCluster":
        # Under /tmp (not pytest's 0700 tmp dirs) so the unprivileged
        # PostgreSQL user can reach it.
        base = Path(tempfile.mkdtemp(prefix="vmyard-test-pg-", dir="/tmp"))
        base.chmod(0o711)
        pg = EmbeddedPostgres(base, extra_settings={"fsync": "off", "synchronous_commit": "off",
                                                    "full_page_writes": "off", "max_connections": "300"})
        pg.start()
        cluster = cls(base, pg)
        cluster._create(TEMPLATE, template=None)
        migrate.migrate(cluster.dsn(TEMPLATE))
        return cluster

    def dsn(self, dbname: str) -> str:
        return f"host={self.pg.socket_dir} port=5432 dbname={dbname} user=vmyard"

    def _admin(self):
        conn = psycopg2.connect(self.dsn("vmyard"))  # a new embedded cluster has no "postgres" database
        conn.autocommit = True
        return conn

    def _create(self, name: str, template: str | None) -> None:
        conn = self._admin()
        try:
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
        finally:
            conn.close()

    def new_database(self, *, migrated: bool = True) -> str:
        name = f"t{next(_counter)}"
        self._create(name, TEMPLATE if migrated else "template0")
        return self.dsn(name)

    def drop_database(self, dsn: str) -> None:
        """Drop a database `new_database` made (connections to it are ended first).  A session
        makes hundreds: dropped one by one as tests end, they are not left to a final removal
        of the whole cluster's files (~150,000 files and 16 s for 300 databases here)."""
        name = dict(part.split("=", 1) for part in dsn.split())["dbname"]
        conn = self._admin()
        try:
            with conn.cursor() as cur:
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            conn.close()

    def stop(self) -> None:
        self.pg.stop()
        shutil.rmtree(self.base, ignore_errors=True)


def pg_dump(dsn: str) -> str:
    """A plain-SQL dump of the database `dsn` names (for "is X stored in clear?" checks)."""
    params = dict(part.split("=", 1) for part in dsn.split())
    return subprocess.run(
        [str(find_pg_bindir() / "pg_dump"), "-h", params["host"], "-p", params["port"], "-U", params["user"],
         params["dbname"]],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout
