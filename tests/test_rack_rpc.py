"""Racks against a real region: enrolment, mutual TLS, refusal, reconnect after region restart."""

from __future__ import annotations

import os
import socket
import ssl
import urllib.request

import psycopg2
import pytest
from cryptography.fernet import Fernet

from common import tls
from region.db import secrets
from region.db.pool import run_sync
from region.db.secrets import create_one_time_secret_thd
from tests.conftest import region_box
from tests.fixtures.daemons import RegionProcess, free_port, wait_for


def _racks(api):
    return {r["system_id"]: r for r in api.get("rackcontrollers/").json()}


def _connected(api, system_id):
    def check():
        rack = _racks(api).get(system_id)
        return rack if rack and rack["status"] == "connected" else None

    return check


def _table_counts(dsn) -> dict[str, int]:
    conn = psycopg2.connect(dsn)
    with conn.cursor() as cur:
        counts = {}
        for table in ("racks", "events", "secrets", "rack_connections"):
            cur.execute(f"SELECT count(*) FROM {table}")
            counts[table] = cur.fetchone()[0]
    conn.close()
    return counts


def test_rack_enrols_and_connects_over_mutual_tls(region, admin_api, enrol_secret_file, start_rack):
    rack = start_rack(region, enrol_secret_file)
    wait_for(lambda: rack.system_id, 30, "enrolment", rack.proc, rack.log)
    wait_for(_connected(admin_api, rack.system_id), 30, "the rack to connect", rack.proc, rack.log)
    # "connected" comes with the first connection; the second registers a moment later.
    both = _connected(admin_api, rack.system_id)
    info = wait_for(lambda: (r := both()) and r["connections"] == 2 and r, 30, "both connections",
                    rack.proc, rack.log)
    assert info["connections"] == 2
    assert info["version"]
    assert info["resource_uri"] == f"/MAAS/api/2.0/rackcontrollers/{rack.system_id}/"
    assert admin_api.get(f"rackcontrollers/{rack.system_id}/").json()["hostname"] == info["hostname"]
    # The rack's key never left it, and is private on disk.
    assert oct(os.stat(rack.data_dir / "rack.key").st_mode & 0o777) == "0o600"
    cert = (rack.data_dir / "rack.crt").read_text()
    tls.check_pair(cert, (rack.data_dir / "rack.key").read_text())
    # The enrolment secret is not written to any log.
    secret = enrol_secret_file.read_text().strip()
    assert secret not in rack.output() and secret not in region.output()


def test_rpc_port_refuses_clients_without_a_certificate(region):
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", region.rpc_port), timeout=10) as raw:
        with pytest.raises((ssl.SSLError, ConnectionResetError, OSError)):
            with context.wrap_socket(raw) as s:
                s.sendall(b"\x00\x04_ask\x00\x011\x00\x00")
                assert s.recv(100) == b""  # closed without an answer
                raise ConnectionResetError("closed")


def test_wrong_secret_is_refused_and_changes_nothing(region, dsn, tmp_path, start_rack):
    before = _table_counts(dsn)
    bad = tmp_path / "wrong.secret"
    bad.write_text("not-the-secret\n")
    rack = start_rack(region, bad)
    assert rack.proc.wait(60) != 0
    out = rack.output()
    assert "enrollment secret is wrong" in out
    assert rack.system_id is None
    assert _table_counts(dsn) == before


def test_missing_secret_gives_a_clear_message(region, start_rack):
    rack = start_rack(region, None)
    assert rack.proc.wait(60) != 0
    assert "no enrollment secret given" in rack.output()


def test_one_time_secret_enrols_exactly_one_rack(region, dsn, admin_api, tmp_path, start_rack):
    once = run_sync(dsn, create_one_time_secret_thd, region_box(region))
    path = tmp_path / "once.secret"
    path.write_text(once)
    first = start_rack(region, path, name="first")
    wait_for(lambda: first.system_id, 30, "first enrolment", first.proc, first.log)
    second = start_rack(region, path, name="second")
    assert second.proc.wait(60) != 0
    assert "enrollment secret is wrong" in second.output()


def test_rack_reconnects_after_region_restart(region, admin_api, enrol_secret_file, start_rack):
    rack = start_rack(region, enrol_secret_file)
    wait_for(lambda: rack.system_id, 30, "enrolment", rack.proc, rack.log)
    first = wait_for(_connected(admin_api, rack.system_id), 30, "connect", rack.proc, rack.log)

    assert region.stop() == 0
    # The last connection dropped; the region recorded it before it stopped.
    region.start().wait_ready()
    again = wait_for(_connected(admin_api, rack.system_id), 60, "reconnect after restart", rack.proc, rack.log)
    assert rack.running, "the rack was not restarted"
    assert again["last_seen"] >= first["last_seen"]
    assert rack.output().count("enrolled with the region") == 1


def test_disconnection_is_recorded(region, admin_api, enrol_secret_file, start_rack):
    rack = start_rack(region, enrol_secret_file)
    wait_for(lambda: rack.system_id, 30, "enrolment", rack.proc, rack.log)
    wait_for(_connected(admin_api, rack.system_id), 30, "connect", rack.proc, rack.log)
    rack.stop()
    gone = wait_for(lambda: (r := _racks(admin_api)[rack.system_id])["status"] == "disconnected" and r,
                    30, "the region to notice the rack left")
    assert gone["connections"] == 0
    assert gone["last_seen"] is not None


# An AMP Ping with an empty payload.
PING = b"\x00\x04_ask\x00\x011\x00\x08_command\x00\x04Ping\x00\x07payload\x00\x00\x00\x00"


def tls_session(region, rack) -> ssl.SSLSocket:
    """A TLS connection to the region's RPC port with the rack's own certificate."""
    ctx = ssl.create_default_context(cafile=str(rack.data_dir / "ca.crt"))
    ctx.check_hostname = False
    ctx.load_cert_chain(rack.data_dir / "rack.crt", rack.data_dir / "rack.key")
    raw = socket.create_connection(("127.0.0.1", region.rpc_port), timeout=10)
    return ctx.wrap_socket(raw)


def test_deleted_rack_is_locked_out(region, admin_api, enrol_secret_file, start_rack):
    rack = start_rack(region, enrol_secret_file)
    wait_for(lambda: rack.system_id, 30, "enrolment", rack.proc, rack.log)
    wait_for(_connected(admin_api, rack.system_id), 30, "connect", rack.proc, rack.log)
    # Before the deletion the rack's certificate gets AMP answers.
    with tls_session(region, rack) as s:
        s.sendall(PING)
        assert b"_answer" in s.recv(1000)
    assert admin_api.delete(f"rackcontrollers/{rack.system_id}/").status == 204
    assert admin_api.get(f"rackcontrollers/{rack.system_id}/").status == 404
    # Its connections are dropped at once (the region tells it why), and it stops.
    assert rack.proc.wait(10) != 0, "a disowned rack stops instead of retrying forever"
    assert "does not know this rack: this rack was deleted" in rack.output()
    assert rack.system_id not in _racks(admin_api)
    # Its certificate no longer passes the handshake.
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        with tls_session(region, rack) as s:
            s.sendall(PING)
            s.recv(1000)


def test_region_key_mismatch_is_reported(region, dsn, tmp_path):
    """A second region on the same database with another key must refuse to start."""
    other = tmp_path / "other.key"
    other.write_bytes(Fernet.generate_key())
    proc = RegionProcess.make(tmp_path / "second", dsn=dsn, extra=["--secret-key-file", str(other)])
    proc.start()
    try:
        assert proc.proc.wait(60) != 0
        assert "cannot be decrypted with this region key" in proc.output()
    finally:
        proc.stop()
    # The first region's secrets are untouched.
    assert run_sync(dsn, secrets.get_thd, region_box(region), secrets.ENROLLMENT_SECRET)


def test_rack_enrols_through_https(start_region, dsn, tmp_path, start_rack):
    https_port = free_port()
    region = start_region("tls", extra=["--https", f"127.0.0.1:{https_port}"])
    secret = run_sync(dsn, secrets.get_thd, region_box(region), secrets.ENROLLMENT_SECRET)
    path = tmp_path / "tls.secret"
    path.write_text(secret)
    # The region's HTTPS certificate comes from the region CA; the rack does
    # not need to trust it for enrolment (the HMAC proofs authenticate).
    rack = start_rack(region, path, name="tlsrack", url=f"https://127.0.0.1:{https_port}/MAAS/")
    wait_for(lambda: rack.system_id, 30, "enrolment over https", rack.proc, rack.log)
    wait_for(lambda: "connected to region" in rack.output(), 30, "AMP connection", rack.proc, rack.log)
    # Clients that trust the region CA can verify the HTTPS listener.
    ctx = ssl.create_default_context(cadata=(rack.data_dir / "ca.crt").read_text())
    ctx.check_hostname = False
    url = f"https://127.0.0.1:{https_port}/MAAS/api/2.0/version/"
    with urllib.request.urlopen(url, context=ctx, timeout=10) as reply:
        assert reply.status == 200
