"""The embedded cluster's own life: a second start reuses it, an interrupted initdb is
redone, a directory that is not a cluster is refused, a server that cannot start says why,
the start thread brings the schema to head and flushes a new cluster, a template cluster is
copied only when it was made for this server, the daemon begins initdb before it imports
Twisted, and a socket dir made in the temp dir goes when the server stops."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import psycopg2
import pytest

from region import pg_template
from region.db import migrate
from region.embedded_pg import ClusterStart, EmbeddedPostgres, EmbeddedPostgresError, find_pg_bindir


@pytest.fixture(autouse=True)
def no_template(public_tmp, monkeypatch):
    """Clusters made here run initdb, even on a machine with an install-time template."""
    monkeypatch.setenv("VMYARD_PG_TEMPLATE_DIR", str(public_tmp / "no-template"))


def _execute(pg: EmbeddedPostgres, sql: str) -> list[tuple]:
    conn = psycopg2.connect(pg.dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def test_start_migrates_and_flushes_then_a_second_start_reuses_the_cluster(public_tmp):
    pg = EmbeddedPostgres(public_tmp)
    begun = ClusterStart.begin(pg)
    try:
        assert begun.done.result(timeout=120) == list(range(1, migrate.head_version() + 1))
        assert pg.unsynced, "flushed once the region listens, not by the start"
        pg.flush_in_background()
        pg.wait_flushed()
        assert not pg.unsynced and not (public_tmp / "postgres.new").exists()
        (system_id,) = _execute(pg, "SELECT system_identifier FROM pg_control_system()")[0]
        assert _execute(pg, "SELECT datname FROM pg_database ORDER BY 1") == [
            ("template0",), ("template1",), ("vmyard",)], "initdb's empty postgres database, renamed"
        _execute(pg, "CREATE TABLE kept (id int)")
    finally:
        pg.stop()
    assert not pg.is_running()

    again = EmbeddedPostgres(public_tmp)
    try:
        assert ClusterStart.begin(again).done.result(timeout=120) == [], "the schema is already at head"
        assert not again.unsynced, "no initdb for an existing cluster"
        assert _execute(again, "SELECT system_identifier FROM pg_control_system()")[0][0] == system_id
        assert _execute(again, "SELECT count(*) FROM kept") == [(0,)]
    finally:
        again.stop()


def test_an_existing_cluster_without_our_database_gets_a_new_one(public_tmp):
    pg = EmbeddedPostgres(public_tmp)
    pg.start()
    try:  # as if a start had stopped between initdb and the database: initdb's "postgres" only
        conn = psycopg2.connect(pg.dsn.replace("dbname=vmyard", "dbname=template1"))
        conn.autocommit = True
        conn.cursor().execute("ALTER DATABASE vmyard RENAME TO postgres")
        conn.close()
    finally:
        pg.stop()
    again = EmbeddedPostgres(public_tmp)
    try:
        again.start()
        assert _execute(again, "SELECT datname FROM pg_database ORDER BY 1") == [
            ("postgres",), ("template0",), ("template1",), ("vmyard",)], "created; the existing one left alone"
    finally:
        again.stop()


def test_an_interrupted_initdb_is_redone(public_tmp):
    leftover = public_tmp / "postgres.new"
    leftover.mkdir()
    (leftover / "PG_VERSION").write_text("15\n")  # initdb writes this early: no proof of a complete cluster
    pg = EmbeddedPostgres(public_tmp)
    try:
        pg.start()
        assert _execute(pg, "SELECT current_database()") == [("vmyard",)]
        assert not leftover.exists() and pg.is_initialised()
    finally:
        pg.stop()


def test_a_data_dir_with_files_but_no_cluster_is_refused(public_tmp):
    (public_tmp / "postgres").mkdir()
    (public_tmp / "postgres" / "stray").write_text("not a cluster")
    with pytest.raises(EmbeddedPostgresError, match=r"no PostgreSQL cluster \(PG_VERSION is missing\); move it away"):
        EmbeddedPostgres(public_tmp).start()
    assert sorted(p.name for p in (public_tmp / "postgres").iterdir()) == ["stray"], "nothing was added"
    assert not (public_tmp / "postgres.new").exists()


def test_a_server_that_cannot_start_says_why_at_once(public_tmp):
    pg = EmbeddedPostgres(public_tmp, extra_settings={"shared_buffers": "lots"})
    with pytest.raises(EmbeddedPostgresError, match=r"postgres exited \(1\) while starting.*shared_buffers"):
        pg.start()
    assert not pg.is_running()


def _system_identifier(pgdata) -> str:
    out = subprocess.run([str(find_pg_bindir() / "pg_controldata"), "-D", str(pgdata)], capture_output=True,
                         text=True, check=True, env={"LC_ALL": "C"}).stdout
    return next(line.split(":", 1)[1].strip() for line in out.splitlines() if "system identifier" in line)


def test_new_clusters_copy_a_template_made_for_this_server_only(public_tmp, monkeypatch):
    root = public_tmp / "templates"
    template = pg_template.make(root)
    monkeypatch.setenv("VMYARD_PG_TEMPLATE_DIR", str(root))

    copied = EmbeddedPostgres(public_tmp / "a")
    try:
        assert ClusterStart.begin(copied).done.result(timeout=120) == [], "the template's schema is at head"
        copied.wait_flushed()
        assert _execute(copied, "SELECT count(*) FROM schema_migrations") == [(migrate.head_version(),)]
    finally:
        copied.stop()
    assert _system_identifier(copied.pgdata) == _system_identifier(template), "a copy, no initdb"
    assert (template / "PG_VERSION").exists() and not (template / "postmaster.pid").exists(), "the template untouched"

    (root / f"{template.name}.options").write_text("--made-with-other-options")
    made = EmbeddedPostgres(public_tmp / "b")
    try:
        made.start()
    finally:
        made.stop()
    assert _system_identifier(made.pgdata) != _system_identifier(template), "initdb, not a stale template"


def test_the_daemon_begins_initdb_before_it_imports_twisted(public_tmp):
    """In a fresh interpreter, as `region.daemon` does: its imports, the configuration, then
    the cluster's start; initdb must be running before Twisted is imported (~0.1 s sooner)."""
    script = textwrap.dedent(f"""
        import json, sys
        from region import daemon, embedded_pg, config

        seen = {{}}
        spawn = embedded_pg.EmbeddedPostgres._spawn

        def watched(args, user):
            seen.setdefault(args[0].rsplit("/", 1)[-1], sorted(m for m in sys.modules if m.startswith("twisted")))
            return spawn(args, user)

        embedded_pg.EmbeddedPostgres._spawn = staticmethod(watched)
        parser = daemon.argparse.ArgumentParser()
        config.add_arguments(parser)
        cfg = config.from_arguments(parser.parse_args(["--data-dir", {str(public_tmp / "region")!r}]))
        cluster = embedded_pg.prestart(cfg)
        try:
            applied = cluster.done.result(timeout=120)
        finally:
            cluster.pg.stop()
        print(json.dumps({{"seen": seen, "applied": applied}}))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180,
                         env={**os.environ, "VMYARD_PG_TEMPLATE_DIR": str(public_tmp / "no-template")})
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.splitlines()[-1])
    assert result["seen"]["initdb"] == [], "the first initdb spawned with no Twisted module imported"
    assert result["applied"] == list(range(1, migrate.head_version() + 1))


def test_a_socket_dir_in_the_temp_dir_goes_when_the_server_stops(public_tmp):
    """A data dir whose path is too long for a Unix socket gets its socket dir in the temp dir;
    stopping the server removes that dir instead of leaving one per data dir ever used."""
    deep = public_tmp / ("d" * 60) / ("e" * 60)
    pg = EmbeddedPostgres(deep)
    assert pg.socket_dir.parent != deep, "the path is long enough for the socket to move"
    begun = ClusterStart.begin(pg)
    try:
        begun.done.result(timeout=120)
        assert pg.socket_dir.is_dir() and _execute(pg, "SELECT 1") == [(1,)]
    finally:
        begun.stop()
    assert not pg.is_running() and not pg.socket_dir.exists()
