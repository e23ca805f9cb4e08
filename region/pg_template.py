"""An optional template cluster, made once at install time, that new embedded clusters copy
instead of running initdb and the migrations (most of a cold start's CPU: ~1.2 + 0.3 s on a
2-core machine).

`python -m region.pg_template` makes it unless it is there (a cluster with the schema at
head, flushed to disk, owned by the user the embedded PostgreSQL runs as) under
`/var/cache/vmyard/pg-template/<major>/` (`VMYARD_PG_TEMPLATE_DIR` moves it).  A cluster is
copied from it only when it was made for this PostgreSQL major version, with the options
initdb would be given now, owned by the user the server runs as;
otherwise, or when there is none, initdb runs as usual.  Copies share initdb's system
identifier (pg_control), which only tools that tell clusters apart by it (WAL archives,
replication) would notice; an embedded cluster is never part of either.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

DEFAULT_ROOT = Path("/var/cache/vmyard/pg-template")
# What initdb is given for a new embedded cluster (the data dir and --no-sync apart).
INITDB_OPTIONS = ("-U", "vmyard", "-A", "trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-instructions")


def pg_env() -> dict[str, str]:
    """The environment for PostgreSQL's programs: ours without PG* settings, in a UTF-8 locale."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C.UTF-8"
    return env


def template_root() -> Path:
    return Path(os.environ.get("VMYARD_PG_TEMPLATE_DIR") or DEFAULT_ROOT)


def server_major(bindir: Path) -> str:
    """The major version: 15 for `postgres (PostgreSQL) 15.8 (Debian 15.8-0+deb12u1)`."""
    out = subprocess.run([str(bindir / "postgres"), "-V"], capture_output=True, text=True, check=True).stdout
    return out.split(")", 1)[1].split()[0].split(".")[0]


def _marker(root: Path, major: str) -> Path:
    return root / f"{major}.options"


def usable(root: Path, bindir: Path, user: pwd.struct_passwd | None) -> Path | None:
    """The template to copy for this server and user, or None."""
    if not root.is_dir():
        return None
    major = server_major(bindir)
    template = root / major
    try:
        made_with = _marker(root, major).read_text()
        owner = template.stat().st_uid
        version = (template / "PG_VERSION").read_text().strip()
    except OSError:
        return None
    if made_with != " ".join(INITDB_OPTIONS) or version != major or owner != (user.pw_uid if user else os.geteuid()):
        return None
    return template


def make(root: Path) -> Path:
    """(Re)make the template for this server: an embedded cluster made in `<major>.new/`, its
    database migrated to head (a copy then applies only newer migrations), stopped, flushed
    to disk, then moved to `<major>/`; the options it was made with are written last, so a
    half-made template is never used."""
    from region.db import migrate
    from region.embedded_pg import EmbeddedPostgres, find_pg_bindir

    major = server_major(find_pg_bindir())
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)
    template, staging, marker = root / major, root / f"{major}.new", _marker(root, major)
    marker.unlink(missing_ok=True)
    for old in (template, staging):
        shutil.rmtree(old, ignore_errors=True)
    pg = EmbeddedPostgres(staging, use_template=False)
    try:
        pg.start()
        migrate.migrate(pg.dsn)
    finally:
        pg.stop()
    pg.flush_in_background()
    pg.wait_flushed()
    pg.pgdata.rename(template)
    shutil.rmtree(staging)
    written = marker.with_suffix(".tmp")
    written.write_text(" ".join(INITDB_OPTIONS))
    written.rename(marker)
    return template


def main() -> None:
    """Make the template unless a usable one is there (so an install script can run it each time)."""
    from region.embedded_pg import ensure_service_user, find_pg_bindir

    root = template_root()
    template = usable(root, find_pg_bindir(), ensure_service_user() if os.geteuid() == 0 else None) or make(root)
    print(f"template cluster for new embedded clusters: {template}")


if __name__ == "__main__":
    sys.exit(main())
