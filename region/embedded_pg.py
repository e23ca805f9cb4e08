"""The embedded default: a private PostgreSQL cluster inside the data dir.

With no DSN configured the region runs its own cluster: `initdb` on first
start, `pg_ctl start` on every start, `pg_ctl stop` on shutdown.  `prestart` begins that
in a thread as soon as the daemon has its configuration, so it overlaps the imports.

A new cluster is made with `initdb --no-sync` and flushed to disk by `initdb --sync-only`
in the background once the server runs: the files initdb writes are the same, only the
fsync of each (most of initdb's time on a slow disk) leaves the start path.  The window
is the first seconds of a brand-new, empty cluster; the server itself runs with fsync on,
so everything the region writes is durable as usual.  It listens
only on a Unix socket in a directory only its owner can enter, so "trust"
authentication on that socket admits nobody else.  PostgreSQL refuses to run
as root; when we are root it runs as the system user `vmyard`, created on
demand.
"""

from __future__ import annotations

import glob
import hashlib
import os
import pwd
import shutil
import subprocess
import tempfile
import threading
from concurrent.futures import Future
from pathlib import Path

from typing import TYPE_CHECKING

import attrs
from twisted.application import service
from twisted.internet import defer, threads
from twisted.logger import Logger

from common.procs import process_exists

if TYPE_CHECKING:
    from region.config import RegionConfig

log = Logger()

SERVICE_USER = "vmyard"
DB_NAME = "vmyard"
DB_USER = "vmyard"
PORT = 5432
_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes; leave room for ".s.PGSQL.5432"


class EmbeddedPostgresError(RuntimeError):
    pass


def find_pg_bindir() -> Path:
    """The newest PostgreSQL server binaries: on PATH, else Debian's layout."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
    )
    for path in [*reversed(candidates)]:
        if (Path(path) / "initdb").exists():
            return Path(path)
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    raise EmbeddedPostgresError(
        "PostgreSQL server binaries (initdb, pg_ctl) are not installed; "
        "install the 'postgresql' package or configure database_dsn"
    )


def ensure_service_user(name: str = SERVICE_USER) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
         "--shell", "/usr/sbin/nologin", name],
        check=True, capture_output=True,
    )
    return pwd.getpwnam(name)


@attrs.define
class EmbeddedPostgres:
    """One cluster under `data_dir/postgres`.

    :ivar started_here: True when `start()` launched the server (so `stop()`
        should stop it); False when it was already running.
    :ivar unsynced: initdb has just made it without flushing it to disk (see above).
    """

    data_dir: Path
    extra_settings: dict[str, str] = attrs.field(factory=dict)
    started_here: bool = False
    unsynced: bool = False
    _bindir: Path | None = None

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "postgres"

    @property
    def socket_dir(self) -> Path:
        local = self.data_dir / "run"
        if len(str(local)) < _SOCKET_PATH_MAX - 20:
            return local
        digest = hashlib.sha256(str(self.data_dir.resolve()).encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"vmyard-pg-{digest}"

    @property
    def dsn(self) -> str:
        return f"host={self.socket_dir} port={PORT} dbname={DB_NAME} user={DB_USER}"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "postgres.log"

    def _bin(self, name: str) -> str:
        if self._bindir is None:
            self._bindir = find_pg_bindir()
        return str(self._bindir / name)

    def _run_as(self) -> pwd.struct_passwd | None:
        return ensure_service_user() if os.geteuid() == 0 else None

    def _run(self, args: list[str], user: pwd.struct_passwd | None, timeout: float = 120) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C.UTF-8"
        proc = subprocess.run(
            args, user=user.pw_uid if user else None, group=user.pw_gid if user else None,
            env=env, capture_output=True, text=True, timeout=timeout, cwd="/",
        )
        if proc.returncode != 0:
            raise EmbeddedPostgresError(
                f"{Path(args[0]).name} failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}"
            )

    def _prepare_dirs(self, user: pwd.struct_passwd | None) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for d in (self.pgdata, self.socket_dir):
            d.mkdir(mode=0o700, exist_ok=True)
            if user:
                os.chown(d, user.pw_uid, user.pw_gid)
            os.chmod(d, 0o700)
        if user:
            self.log_file.touch(mode=0o600, exist_ok=True)
            os.chown(self.log_file, user.pw_uid, user.pw_gid)
            self._check_traversable(user)

    def _check_traversable(self, user: pwd.struct_passwd) -> None:
        # PostgreSQL, running as `user`, must be able to walk down to its
        # directory; say which parent blocks it instead of a cryptic failure.
        path = self.data_dir.resolve()
        for parent in [path, *path.parents]:
            st = parent.stat()
            if st.st_uid != user.pw_uid and not st.st_mode & 0o001:
                raise EmbeddedPostgresError(
                    f"{parent} is not searchable by the '{user.pw_name}' user that runs the "
                    f"embedded PostgreSQL; chmod o+x {parent} or choose another --data-dir"
                )

    def is_initialised(self) -> bool:
        return (self.pgdata / "PG_VERSION").exists()

    def is_running(self) -> bool:
        pid = self.pid()
        return pid is not None and process_exists(pid)

    def pid(self) -> int | None:
        try:
            return int((self.pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
        except (FileNotFoundError, ValueError, PermissionError):
            return None

    def initdb(self) -> None:
        user = self._run_as()
        self._prepare_dirs(user)
        if self.is_initialised():
            return
        log.info("creating the embedded PostgreSQL cluster in {pgdata}", pgdata=str(self.pgdata))
        self._run(
            [self._bin("initdb"), "-D", str(self.pgdata), "-U", DB_USER, "-A", "trust",
             "-E", "UTF8", "--locale=C.UTF-8", "--no-instructions", "--no-sync"],
            user,
        )
        self.unsynced = True

    def _sync_new_cluster(self) -> None:
        """What `initdb` would have done before returning: fsync every file it wrote."""
        try:
            self._run([self._bin("initdb"), "--sync-only", "-D", str(self.pgdata)], self._run_as(), timeout=600)
        except (EmbeddedPostgresError, OSError, subprocess.TimeoutExpired) as e:
            log.warn("could not flush the new PostgreSQL cluster to disk: {error}", error=str(e))

    def start(self) -> None:
        """initdb if needed, start unless running, create the database."""
        self.initdb()
        user = self._run_as()
        self._prepare_dirs(user)
        if not self.is_running():
            settings = {
                "listen_addresses": "''",
                "unix_socket_directories": f"'{self.socket_dir}'",
                "port": str(PORT),
                "max_connections": "100",
                **self.extra_settings,
            }
            opts = " ".join(f"-c {k}={v}" for k, v in settings.items())
            log.info("starting the embedded PostgreSQL (socket in {dir})", dir=str(self.socket_dir))
            self._run(
                [self._bin("pg_ctl"), "-D", str(self.pgdata), "-l", str(self.log_file),
                 "-o", opts, "-w", "-t", "120", "start"],
                user,
            )
            self.started_here = True
        self._create_database()
        if self.unsynced:
            self.unsynced = False
            threading.Thread(target=self._sync_new_cluster, name="embedded-pg-sync", daemon=True).start()

    def _create_database(self) -> None:
        import psycopg2

        conn = psycopg2.connect(f"host={self.socket_dir} port={PORT} dbname=postgres user={DB_USER}")
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB_NAME,))
                if cur.fetchone() is None:
                    cur.execute(f'CREATE DATABASE "{DB_NAME}"')
        finally:
            conn.close()

    def stop(self) -> None:
        if not self.is_running():
            return
        log.info("stopping the embedded PostgreSQL")
        self._run([self._bin("pg_ctl"), "-D", str(self.pgdata), "-m", "fast", "-w", "-t", "60", "stop"],
                  self._run_as())
        self.started_here = False


def prestart(config: RegionConfig) -> Future | None:
    """With no DSN: the embedded cluster's start (initdb the first time) begun at once in a
    thread, for `EmbeddedPostgresService` to wait on; it then overlaps the imports and the
    set-up that come before the region needs its database."""
    if config.database_dsn:
        return None
    config.data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(config.data_dir, 0o711)
    pg, started = EmbeddedPostgres(config.data_dir), Future()

    def start() -> None:
        try:
            pg.start()
        except BaseException as e:  # handed to the service, which reports it
            started.set_exception(e)
        else:
            started.set_result(None)

    threading.Thread(target=start, name="embedded-pg-start", daemon=True).start()
    return started


def database_dsn(config: RegionConfig) -> tuple[str, EmbeddedPostgres | None]:
    """The DSN to use and, for the embedded default, the cluster behind it."""
    if config.database_dsn:
        return config.database_dsn, None
    pg = EmbeddedPostgres(config.data_dir)
    return pg.dsn, pg


@attrs.define(eq=False)
class EmbeddedPostgresService(service.Service):
    """Runs the cluster while the service runs (pg_ctl in a thread).

    :ivar started: fires once the cluster accepts connections, or fails with why not.
    """

    pg: EmbeddedPostgres
    prestarted: Future | None = None  # from `prestart`: the start already under way
    started: defer.Deferred = attrs.field(init=False, factory=defer.Deferred)

    def startService(self) -> None:
        service.Service.startService(self)
        start = self.prestarted.result if self.prestarted is not None else self.pg.start
        threads.deferToThread(start).chainDeferred(self.started)

    def stopService(self) -> defer.Deferred:
        service.Service.stopService(self)
        # The cluster in our data dir is ours to stop.
        return threads.deferToThread(self.pg.stop)
