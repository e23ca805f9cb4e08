"""A throw-away vmyard stack for benchmarks: PostgreSQL, a private LXD, a region with its local rack.

Everything lives in temp dirs and listens on 127.0.0.1 only; `running_stack()` stops
what it started (by PID: the region's, the LXD daemon's, PostgreSQL's) on the way out,
whatever happens.  No LXD network is ever created and `lxd init --auto` is never run.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Iterator

import attrs

from region.db import users
from region.db.pool import run_sync
from region.secretbox import SecretBox
from devstack.daemons import RegionProcess, wait_for
from devstack.lxd import LxdServer
from devstack.oauth import plaintext_header
from devstack.postgres import PostgresCluster

for _var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):  # as the tests do: no CA bundle from the environment
    os.environ.pop(_var, None)


@attrs.define
class Client:
    """The MAAS REST API with OAuth PLAINTEXT; returns (status, parsed JSON or text)."""

    base: str
    apikey: str

    def call(self, method: str, path: str, data: dict | None = None, timeout: float = 600):
        url, body, headers = self._signed(method, path, data)
        req = urllib.request.Request(url, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return _parsed(r.status, r.read())
        except urllib.error.HTTPError as e:
            return _parsed(e.code, e.read())

    def _signed(self, method: str, path: str, data: dict | None) -> tuple[str, bytes | None, dict[str, str]]:
        """The URL, the form body and the headers (OAuth signature included) of a call."""
        url = self.base + path
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        headers = {"Authorization": plaintext_header(self.apikey, url, method)}
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        return url, body, headers


def _parsed(status: int, raw: bytes):
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


@attrs.define
class KeepAliveClient(Client):
    """`Client` over one persistent HTTP/1.1 connection (reopened if the region closed it), as MAAS
    clients keep theirs (python-libmaas, gomaasapi, the maas CLI); one thread at a time."""

    _conn: http.client.HTTPConnection | None = None

    def call(self, method: str, path: str, data: dict | None = None, timeout: float = 600):
        url, body, headers = self._signed(method, path, data)
        parts = urllib.parse.urlsplit(url)
        while True:
            reused = self._conn is not None
            if not reused:
                self._conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
            try:
                self._conn.request(method, parts.path + (f"?{parts.query}" if parts.query else ""), body, headers)
                r = self._conn.getresponse()
                status, raw = r.status, r.read()
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.close()
                if not reused:  # only a connection the region closed while idle is opened again
                    raise
        if r.will_close:
            self.close()
        return _parsed(status, raw)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


@attrs.define
class Stack:
    pg: PostgresCluster
    lxd: LxdServer
    region: RegionProcess
    dsn: str
    api: Client
    host: dict  # the registered VM host, as GET vm-hosts/{id}/ returns it


def _admin_key(dsn: str, data_dir: Path) -> str:
    box = SecretBox.load(data_dir / "region.key")

    def create_thd(cur):
        user = users.create_user_thd(cur, "bench", "pw-bench", "bench@example.com", is_superuser=True)
        return users.create_token_thd(cur, box, user.id).apikey

    return run_sync(dsn, create_thd)


def _rack_connected(api: Client) -> bool:
    status, racks = api.call("GET", "rackcontrollers/", timeout=10)
    return status == 200 and any(r.get("status") == "connected" for r in racks)


def register_lxd(api: Client, lxd: LxdServer) -> dict:
    """Add the LXD as a VM host with its trust password (vmyard creates the project)."""
    suffix = uuid.uuid4().hex[:6]
    status, host = api.call("POST", "vm-hosts/", {
        "type": "lxd", "power_address": lxd.address, "name": f"bench-{suffix}",
        "project": f"bench-{suffix}", "password": lxd.trust_password})
    if status != 200 or host.get("state") != "ready":
        raise RuntimeError(f"registering the LXD host failed: HTTP {status}: {host}")
    return host


@contextlib.contextmanager
def running_stack(refresh_interval: float = 0, region_tree: Path | None = None) -> Iterator[Stack]:
    """The whole stack; `refresh_interval` seconds between automatic VM-host refreshes (0: none).
    `region_tree`: run the region and its rack from that checkout (e.g. a `git worktree` of an
    earlier commit with the same migrations), to compare it in the same bench."""
    with contextlib.ExitStack() as stop:
        pg = PostgresCluster.start()
        stop.callback(pg.stop)
        lxd = LxdServer.start()
        stop.callback(lxd.stop)
        base = Path(tempfile.mkdtemp(prefix="vmyard-bench-", dir="/tmp"))
        stop.callback(shutil.rmtree, base, ignore_errors=True)
        dsn = pg.new_database()
        # PYTHONSAFEPATH: `python -m` would otherwise put the working directory (this checkout) first.
        tree_env = {"PYTHONPATH": str(region_tree), "PYTHONSAFEPATH": "1"} if region_tree else None
        # At the level a region runs with by default (the test daemons' debug lines cost
        # every request a few log writes in the region and its rack).
        region = RegionProcess.make(base / "region", dsn=dsn, local_rack=True, env=tree_env,
                                    extra=["--vm-host-refresh-interval", f"{refresh_interval:g}", "--log-level", "info"])
        stop.callback(region.stop)  # SIGTERM to the PID it started, then SIGKILL
        region.start().wait_ready()
        api = Client(region.api, _admin_key(dsn, region.data_dir))
        wait_for(lambda: _rack_connected(api), 60, "the local rack to connect", region.proc, region.log)
        yield Stack(pg, lxd, region, dsn, api, register_lxd(api, lxd))
