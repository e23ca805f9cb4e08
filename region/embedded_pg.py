"""The embedded default: a private PostgreSQL cluster inside the data dir.

With no DSN configured the region runs its own cluster: `initdb` on first start (or a copy
of the template cluster made at install time, see `region.pg_template`), the
`postgres` server on every start (spawned directly, ready as soon as its pid file says so),
`pg_ctl stop` on shutdown.  `prestart` begins all of that, and the migrations, in a thread
as soon as the daemon has its configuration, before Twisted is even imported, so it
overlaps the region's imports.

A new cluster is made with `initdb --no-sync` and flushed to disk by `initdb --sync-only`
in the background (`flush_in_background`) once the region listens (begun sooner, its I/O
slowed the region's first transactions by ~0.1 s): the files initdb writes are the same,
only the fsync of each (most of initdb's time on a slow disk) leaves the start path.  The
region reports ready (READY=1, "region ready") only once that flush is done, and a stop
before it flushes first, so the window is the first second of a brand-new, empty cluster; the server itself runs with fsync on, so
everything the region writes is durable as usual.  It listens only on a Unix socket in a
directory only its owner can enter, so "trust" authentication on that socket admits
nobody else.  PostgreSQL refuses to run as root; when we are root it runs as the system
user `vmyard`, created on demand.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import pwd
import shutil
import subprocess
import tempfile
import threading
import time
from concurrent import futures
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING

import attrs

from common.procs import process_exists
from region import pg_template
from region.db import migrate

if TYPE_CHECKING:
    from region.config import RegionConfig



class _LoggerOnFirstUse:
    """This module's twisted.logger Logger, made (and Twisted imported) when first used: the
    daemon begins initdb before it imports Twisted, ~0.1 s of a cold start's imports sooner."""

    def __getattr__(self, level: str):
        from twisted.logger import Logger

        logger = Logger(namespace=__name__)
        globals()["log"] = logger
        return getattr(logger, level)


log = _LoggerOnFirstUse()

SERVICE_USER = "vmyard"
DB_NAME = "vmyard"
DB_USER = "vmyard"
PORT = 5432
_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes; leave room for ".s.PGSQL.5432"
START_TIMEOUT = 120.0  # seconds for the server to accept connections
_READY_POLL = 0.01  # seconds between looks at postmaster.pid (pg_ctl -w looks every 0.1 s)


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

    :ivar unsynced: initdb has just made it without flushing it to disk (see above).
    """

    data_dir: Path
    extra_settings: dict[str, str] = attrs.field(factory=dict)
    use_template: bool = True  # copy the install-time template cluster when there is a usable one
    unsynced: bool = False
    _bindir: Path | None = None
    _server: subprocess.Popen | None = None  # the server when `start()` spawned it
    _flushed: threading.Event = attrs.field(factory=lambda: _already_set())

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

    def _bindir_path(self) -> Path:
        if self._bindir is None:
            self._bindir = find_pg_bindir()
        return self._bindir

    def _bin(self, name: str) -> str:
        return str(self._bindir_path() / name)

    def _run_as(self) -> pwd.struct_passwd | None:
        return ensure_service_user() if os.geteuid() == 0 else None

    def _run(self, args: list[str], user: pwd.struct_passwd | None, timeout: float = 120) -> None:
        self._finish(self._spawn(args, user), timeout)

    @staticmethod
    def _spawn(args: list[str], user: pwd.struct_passwd | None) -> subprocess.Popen:
        return subprocess.Popen(
            args, user=user.pw_uid if user else None, group=user.pw_gid if user else None,
            env=pg_template.pg_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, cwd="/",
        )

    @staticmethod
    def _finish(proc: subprocess.Popen, timeout: float = 120) -> None:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
        if proc.returncode != 0:
            raise EmbeddedPostgresError(
                f"{Path(proc.args[0]).name} failed ({proc.returncode}): {err.strip() or out.strip()}"
            )

    def _prepare_dirs(self, user: pwd.struct_passwd | None) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # The cluster's own directory is made by `initdb`; an existing one keeps its owner and mode.
        for d in (self.socket_dir, *([self.pgdata] if self.pgdata.exists() else [])):
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

    @property
    def _new_pgdata(self) -> Path:
        return self.data_dir / "postgres.new"

    def initdb(self) -> None:
        """Make the cluster unless there is one.  initdb writes into `postgres.new`, renamed to
        `postgres` once complete, so a start interrupted half-way is redone, not half-used."""
        user = self._run_as()
        self._prepare_dirs(user)
        if self.is_initialised():
            return
        if self.pgdata.exists():
            if any(self.pgdata.iterdir()):
                raise EmbeddedPostgresError(
                    f"{self.pgdata} holds files but no PostgreSQL cluster (PG_VERSION is missing); "
                    "move it away to have a new cluster made"
                )
            self.pgdata.rmdir()
        if self._new_pgdata.exists():
            log.warn("removing {path}, left by an interrupted initdb", path=str(self._new_pgdata))
            shutil.rmtree(self._new_pgdata)
        template = pg_template.usable(pg_template.template_root(), self._bindir_path(), user) \
            if self.use_template else None
        # Each program is logged once it runs: the first log line imports Twisted (see `log`).
        if template is not None:
            making = self._spawn(["cp", "-a", "--reflink=auto", str(template), str(self._new_pgdata)], None)
            log.info("copying the template cluster {template} to {pgdata}", template=str(template),
                     pgdata=str(self.pgdata))
        else:
            self._new_pgdata.mkdir(mode=0o700)
            if user:
                os.chown(self._new_pgdata, user.pw_uid, user.pw_gid)
            making = self._spawn([self._bin("initdb"), "-D", str(self._new_pgdata), *pg_template.INITDB_OPTIONS,
                                  "--no-sync"], user)
            log.info("creating the embedded PostgreSQL cluster in {pgdata}", pgdata=str(self.pgdata))
        self._finish(making)
        self._new_pgdata.rename(self.pgdata)
        self.unsynced = True
        log.debug("the new cluster's files are made")

    def _sync_new_cluster(self) -> None:
        """What `initdb` would have done before returning: fsync every file it wrote (and the
        rename that put the cluster in place)."""
        try:
            self._run([self._bin("initdb"), "--sync-only", "-D", str(self.pgdata)], self._run_as(), timeout=600)
            fd = os.open(self.data_dir, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            log.debug("the new PostgreSQL cluster is on disk")
        except (EmbeddedPostgresError, OSError, subprocess.TimeoutExpired) as e:
            log.warn("could not flush the new PostgreSQL cluster to disk: {error}", error=str(e))

    def start(self) -> None:
        """initdb if needed, start unless running, create the database.  A new cluster is
        flushed to disk only by `flush_in_background`."""
        self.initdb()
        if not self.is_running():
            self._spawn_server()
            log.debug("the embedded PostgreSQL accepts connections")
        self._create_database()
        log.debug("database {name} ready", name=DB_NAME)

    def flush_in_background(self) -> None:
        """A new cluster's flush to disk, in a thread; `wait_flushed` waits for it."""
        if self.unsynced:
            self.unsynced = False
            self._flushed.clear()
            threading.Thread(target=self._flush, name="embedded-pg-sync", daemon=True).start()

    def _flush(self) -> None:
        try:
            self._sync_new_cluster()
        finally:
            self._flushed.set()

    def wait_flushed(self) -> None:
        """Returns once a new cluster is on disk (at once for an existing one)."""
        self._flushed.wait()

    def _spawn_server(self) -> None:
        """`postgres` itself, in its own session (as `pg_ctl start` would run it); returns once
        its pid file says it accepts connections, sooner than `pg_ctl -w`'s 0.1 s polls."""
        user = self._run_as()
        settings = {
            "listen_addresses": "",
            "unix_socket_directories": str(self.socket_dir),
            "port": str(PORT),
            "max_connections": "100",
            **self.extra_settings,
        }
        args = [self._bin("postgres"), "-D", str(self.pgdata)]
        for name, value in settings.items():
            args += ["-c", f"{name}={value}"]
        log.info("starting the embedded PostgreSQL (socket in {dir})", dir=str(self.socket_dir))
        with open(self.log_file, "ab") as out:
            self._server = subprocess.Popen(
                args, user=user.pw_uid if user else None, group=user.pw_gid if user else None,
                env=pg_template.pg_env(), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd="/",
                start_new_session=True,  # a Ctrl-C in the region's terminal is not the server's
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not self._pid_file_says_ready():
            if self._server.poll() is not None:
                raise EmbeddedPostgresError(f"postgres exited ({self._server.returncode}) while starting; "
                                            f"see {self.log_file}: {self._log_tail()}")
            if time.monotonic() > deadline:
                raise EmbeddedPostgresError(f"postgres did not accept connections within {START_TIMEOUT:g} s; "
                                            f"see {self.log_file}")
            time.sleep(_READY_POLL)

    def _pid_file_says_ready(self) -> bool:
        # postmaster.pid: PID first, the status ("ready" once connections are accepted) 8th.
        try:
            lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
        except (FileNotFoundError, PermissionError):
            return False
        return len(lines) >= 8 and lines[0] == str(self._server.pid) and lines[7].strip() == "ready"

    def _log_tail(self) -> str:
        try:
            return " | ".join(self.log_file.read_text(errors="replace").splitlines()[-5:])
        except OSError:
            return ""

    def _create_database(self) -> None:
        """Our database, unless there is one.  In a cluster initdb has just made, that is its
        empty `postgres` database renamed: no copy of template1 written and synced to disk."""
        import psycopg2

        conn = psycopg2.connect(f"host={self.socket_dir} port={PORT} dbname=template1 user={DB_USER}")
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT datname FROM pg_database WHERE datname IN (%s, 'postgres')", (DB_NAME,))
                names = {name for (name,) in cur.fetchall()}
                if DB_NAME in names:
                    return
                if self.unsynced and "postgres" in names:
                    cur.execute(f'ALTER DATABASE postgres RENAME TO "{DB_NAME}"')
                else:
                    cur.execute(f'CREATE DATABASE "{DB_NAME}"')
        finally:
            conn.close()

    def stop(self) -> None:
        if self.is_running():
            log.info("stopping the embedded PostgreSQL")
            self._run([self._bin("pg_ctl"), "-D", str(self.pgdata), "-m", "fast", "-w", "-t", "60", "stop"],
                      self._run_as())
        if self._server is not None:
            self._server.wait()  # our child: reaped here, not left a zombie
            self._server = None
        if self.socket_dir.parent != self.data_dir:
            # A socket dir outside the data dir (its path would be too long) is not left in
            # the temp dir; one still holding a socket (another server's) stays.
            with contextlib.suppress(OSError):
                self.socket_dir.rmdir()


def _already_set() -> threading.Event:
    event = threading.Event()
    event.set()
    return event


@attrs.frozen
class ClusterStart:
    """A cluster's start under way in a thread: initdb the first time, the server, the
    database, the migrations.

    :ivar done: its result is the migration versions applied; or the error that stopped it.
    """

    pg: EmbeddedPostgres
    done: Future

    @classmethod
    def begin(cls, pg: EmbeddedPostgres) -> ClusterStart:
        begun = cls(pg, Future())
        threading.Thread(target=begun._run, name="embedded-pg-start", daemon=True).start()
        return begun

    def _run(self) -> None:
        try:
            self.pg.start()
            applied = migrate.migrate(self.pg.dsn)
            log.debug("database schema at head")
        except BaseException as e:  # handed to the service, which reports it
            self.done.set_exception(e)
        else:
            self.done.set_result(applied)

    def stop(self) -> None:
        """Once the start has ended (so a server it spawns is stopped too, not left running),
        the server stopped and a new cluster not yet flushed (the region flushes it once it
        listens) flushed."""
        futures.wait([self.done])
        self.pg.stop()
        self.pg.flush_in_background()
        self.pg.wait_flushed()


def prestart(config: RegionConfig) -> ClusterStart | None:
    """With no DSN: the embedded cluster's start begun at once in a thread, for
    `EmbeddedPostgresService` to wait on; it then overlaps the imports and the set-up that
    come before the region needs its database."""
    if config.database_dsn:
        return None
    config.data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(config.data_dir, 0o711)
    return ClusterStart.begin(EmbeddedPostgres(config.data_dir))


def database_dsn(config: RegionConfig, prestarted: ClusterStart | None = None) -> tuple[str, EmbeddedPostgres | None]:
    """The DSN to use and, for the embedded default, the cluster behind it."""
    if config.database_dsn:
        return config.database_dsn, None
    pg = prestarted.pg if prestarted is not None else EmbeddedPostgres(config.data_dir)
    return pg.dsn, pg
