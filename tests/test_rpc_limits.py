"""The RPC port against a flood of plain TCP connections that never start TLS: capped in
total and per peer address, idle ones closed, and the HTTP API answering throughout."""

from __future__ import annotations

import socket
import time

from tests.fixtures.daemons import http_get, wait_for

PER_PEER = 6
TOTAL = 10
HANDSHAKE_TIMEOUT = 6.0  # long enough to look at every connection before it passes


def _limited_region(start_region, tmp_path):
    config = tmp_path / "limits.toml"
    config.write_text(f"rpc_max_connections = {TOTAL}\nrpc_max_connections_per_peer = {PER_PEER}\n"
                      f"rpc_handshake_timeout = {HANDSHAKE_TIMEOUT}\n")
    return start_region("limited", extra=["--config", str(config)])


def _connect(port: int, source: str) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))
    s.settimeout(0.2)
    return s


def _closed(s: socket.socket) -> bool:
    """Whether the region has closed `s` (it never sends anything before a TLS hello)."""
    try:
        return s.recv(1) == b""
    except socket.timeout:
        return False
    except ConnectionResetError:
        return True


def test_plain_tcp_flood_is_capped_and_idle_connections_are_closed(start_region, tmp_path):
    region = _limited_region(start_region, tmp_path)
    opened: list[socket.socket] = []
    try:
        first = [_connect(region.rpc_port, "127.0.0.1") for _ in range(PER_PEER + 4)]
        opened += first
        # Beyond the per-peer cap the region hangs up at once; those within it stay open.
        assert [_closed(s) for s in first] == [False] * PER_PEER + [True] * 4
        second = [_connect(region.rpc_port, "127.0.0.2") for _ in range(PER_PEER)]
        opened += second
        # Another peer gets what is left of the total.
        assert [_closed(s) for s in second] == [False] * (TOTAL - PER_PEER) + [True] * (2 * PER_PEER - TOTAL)
        assert http_get(region.api + "version/", 5)[0] == 200

        # Nobody started TLS: the handshake timeout closes them all.
        deadline = time.monotonic() + HANDSHAKE_TIMEOUT + 10
        assert all(wait_for(lambda s=s: _closed(s), max(deadline - time.monotonic(), 0.1),
                            "the region to close an idle connection") for s in first[:PER_PEER])
        # ... and frees their places.
        again = _connect(region.rpc_port, "127.0.0.1")
        opened.append(again)
        assert not _closed(again)
        assert "closed an RPC connection that did not finish its TLS handshake" in region.output()
        assert "refused RPC connections over the limit" in region.output()
    finally:
        for s in opened:
            s.close()
