"""A small versioned-SQL migration runner.

Migrations are `migrations/NNNN_name.sql`, applied in order, each in its own
transaction (all pending ones sent as one script), under a PostgreSQL advisory lock so that several regions starting
at once against one database apply each migration exactly once.
"""

from __future__ import annotations

import re
from pathlib import Path

import attrs

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# Arbitrary but fixed: the advisory lock id that serialises schema changes.
MIGRATION_LOCK_ID = 0x766D7961  # "vmya"


@attrs.frozen
class Migration:
    version: int
    name: str
    sql: str


def available_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found = []
    for path in sorted(directory.iterdir()):
        m = _NAME.match(path.name)
        if m:
            found.append(Migration(int(m.group(1)), m.group(2), path.read_text()))
    versions = [m.version for m in found]
    if versions != list(range(1, len(versions) + 1)):
        raise RuntimeError(f"migration versions must run 1..N without gaps, found {versions}")
    return found


def applied_versions_thd(cur) -> list[int]:
    cur.execute("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not cur.fetchone()[0]:
        return []
    cur.execute("SELECT version FROM schema_migrations ORDER BY version")
    return [r[0] for r in cur.fetchall()]


def migrate_connection(conn, directory: Path = MIGRATIONS_DIR) -> list[int]:
    """Bring the schema to head; returns the versions applied now.

    The pending migrations reach the server as one script, one round trip (a start beside
    other work in this process then waits for the GIL once, not a hundred times), each still
    in its own transaction: one that fails is rolled back and ends the script, those before
    it stay applied."""
    old_autocommit = conn.autocommit
    conn.autocommit = True  # the script's own BEGIN/COMMIT mark the transactions
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_ID,))
            try:
                cur.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations ("
                    " version integer PRIMARY KEY, name text NOT NULL,"
                    " applied_at timestamptz NOT NULL DEFAULT now())"
                )
                done = set(applied_versions_thd(cur))
                pending = [m for m in available_migrations(directory) if m.version not in done]
                if pending:
                    try:
                        cur.execute(_script(cur, pending))
                    except BaseException:
                        cur.execute("ROLLBACK")  # the failed migration's transaction
                        raise
            finally:
                cur.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_ID,))
    finally:
        conn.autocommit = old_autocommit
    return [m.version for m in pending]


def _script(cur, pending: list[Migration]) -> str:
    parts = []
    for mig in pending:
        record = cur.mogrify("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                             (mig.version, mig.name)).decode()
        parts.append(f"BEGIN;\n{mig.sql}\n;\n{record};\nCOMMIT;\n")
    return "".join(parts)


def migrate(dsn: str) -> list[int]:
    import psycopg2

    conn = psycopg2.connect(dsn)
    try:
        return migrate_connection(conn)
    finally:
        conn.close()


def head_version() -> int:
    return len(available_migrations())
