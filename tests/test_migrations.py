"""Migrations against a real PostgreSQL: empty -> head, idempotent, concurrent, matches the models."""

from __future__ import annotations

import threading

import attrs
import psycopg2
import pytest

from region.db import events, hosts, images, migrate, named, network_models, racks, tags, users

# Each attrs row type and the table it is read from.
MODELS = [
    (named.NamedObject, "zones"),
    (named.NamedObject, "resource_pools"),
    (users.User, "users"),
    (racks.Rack, "racks"),
    (events.Event, "events"),
    (hosts.VMHost, "vm_hosts"),
    (hosts.HostStoragePool, "vm_host_storage_pools"),
    (network_models.Space, "spaces"),
    (network_models.Fabric, "fabrics"),
    (network_models.Vlan, "vlans"),
    (network_models.Subnet, "subnets"),
    (network_models.IPRange, "ip_ranges"),
    (network_models.StaticIP, "static_ips"),
    (tags.Tag, "tags"),
    (images.BootResource, "boot_resources"),
    (images.ResourceFile, "boot_resource_files"),
]
DERIVED = {"connections", "storage_pools", "files"}  # computed by the query, not stored


def _columns(dsn: str) -> dict[str, set[str]]:
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT table_name, column_name FROM information_schema.columns"
                        " WHERE table_schema = 'public'")
            found: dict[str, set[str]] = {}
            for table, column in cur.fetchall():
                found.setdefault(table, set()).add(column)
            return found
    finally:
        conn.close()


def test_empty_database_migrates_to_head_and_matches_the_models(pg_cluster):
    dsn = pg_cluster.new_database(migrated=False)
    assert _columns(dsn) == {}
    applied = migrate.migrate(dsn)
    assert applied == list(range(1, migrate.head_version() + 1))
    columns = _columns(dsn)
    for model, table in MODELS:
        fields = {f.name for f in attrs.fields(model)} - DERIVED
        assert fields <= columns[table], f"{model.__name__} fields missing from {table}: {fields - columns[table]}"
    for table in ("api_tokens", "secrets", "region_processes", "rack_connections", "schema_migrations"):
        assert table in columns
    assert migrate.migrate(dsn) == [], "a second run applies nothing"


def test_defaults_exist_after_migration(dsn):
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            assert named.get_default_thd(cur, named.ZONES).name == "default"
            assert named.get_default_thd(cur, named.RESOURCE_POOLS).name == "default"
    finally:
        conn.close()


def test_concurrent_migrations_apply_each_version_once(pg_cluster):
    dsn = pg_cluster.new_database(migrated=False)
    results, errors = [], []

    def run():
        try:
            results.append(migrate.migrate(dsn))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert sorted(map(len, results)) == [0, 0, 0, migrate.head_version()]


def test_migration_versions_have_no_gaps(tmp_path):
    (tmp_path / "0001_a.sql").write_text("SELECT 1;")
    (tmp_path / "0003_c.sql").write_text("SELECT 1;")
    with pytest.raises(RuntimeError, match="without gaps"):
        migrate.available_migrations(tmp_path)


def test_failed_migration_leaves_no_trace(pg_cluster, tmp_path):
    dsn = pg_cluster.new_database(migrated=False)
    (tmp_path / "0001_ok.sql").write_text("CREATE TABLE ok (id int);")
    (tmp_path / "0002_bad.sql").write_text("CREATE TABLE half (id int); SELECT nonsense_function();")
    conn = psycopg2.connect(dsn)
    try:
        with pytest.raises(psycopg2.Error):
            migrate.migrate_connection(conn, tmp_path)
    finally:
        conn.close()
    columns = _columns(dsn)
    assert "ok" in columns and "half" not in columns
    conn = psycopg2.connect(dsn)
    with conn.cursor() as cur:
        assert migrate.applied_versions_thd(cur) == [1]
    conn.close()


def test_boot_resource_files_take_over_the_file_columns_of_existing_images(pg_cluster, tmp_path):
    """0023 moves each resource's file into boot_resource_files: same bytes counted, same id."""
    dsn = pg_cluster.new_database(migrated=False)
    files_version = next(m.version for m in migrate.available_migrations() if m.name == "boot_resource_files")
    for m in migrate.available_migrations():
        if m.version < files_version:
            (tmp_path / f"{m.version:04d}_{m.name}.sql").write_text(m.sql)
    conn = psycopg2.connect(dsn)
    try:
        migrate.migrate_connection(conn, tmp_path)
        with conn.cursor() as cur:  # one complete image and one upload stopped half-way, as 0010 stored them
            cur.execute("INSERT INTO boot_resources (name, architecture, rtype, version, filename, filetype, size,"
                        " sha256, received, state, lxd_fingerprint, lxd_size) VALUES"
                        " ('custom/done', 'amd64/generic', 'Uploaded', '20260101', 'root-tgz', 'tgz', 100, %s, 100,"
                        "  'complete', %s, 120),"
                        " ('custom/half', 'amd64/generic', 'Uploaded', '20260101', 'root.qcow2', 'qcow2', 300, %s,"
                        "  40, 'uploading', NULL, NULL)", ("a" * 64, "f" * 64, "b" * 64))
        conn.commit()
        migrate.migrate_connection(conn)
        with conn.cursor() as cur:
            done, half = images.list_thd(cur)
            assert done.files == (images.ResourceFile(done.id, "root-tgz", "tgz", 100, "a" * 64, 100),)
            assert (done.state, done.lxd_fingerprint, done.lxd_size) == ("complete", "f" * 64, 120)
            assert half.files == (images.ResourceFile(half.id, "root.qcow2", "qcow2", 300, "b" * 64, 40),)
            assert (half.filetype, half.size, half.received) == ("qcow2", 300, 40)
            added = images.add_file_thd(cur, half.id, images.NewResource("custom/half", "amd64/generic", "",
                                                                         "lxd-meta", 10, "c" * 64),
                                        filename="lxd-meta.tar")
            assert added.id not in (done.id, half.id)  # the id sequence moved past the copied ids
        conn.rollback()
    finally:
        conn.close()
