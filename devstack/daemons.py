"""Start real vmyard daemons as subprocesses, on free loopback ports.

Every process is started here and stopped here by its PID; nothing else on
the machine is touched.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import attrs

REPO = Path(__file__).resolve().parents[1]


# Below Linux's ephemeral range (32768-60999), so the outgoing connections of
# other tests and daemons cannot take a port between our check and the bind.
_PORTS = (20000, 32000)


def free_port() -> int:
    """A loopback TCP port that is free now (random, outside the ephemeral range)."""
    for _ in range(200):
        port = random.randrange(*_PORTS)
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {_PORTS}")


def wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: process exited with {proc.returncode}\n{_tail(log)}")
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}\n{_tail(log)}")


def _tail(log: Path | None) -> str:
    if log is None or not log.exists():
        return ""
    return "\n".join(log.read_text(errors="replace").splitlines()[-40:])


@attrs.define
class Daemon:
    """A subprocess with its log file; stop() sends SIGTERM to its PID."""

    args: list[str]
    log: Path
    env: dict[str, str] = attrs.field(factory=dict)
    proc: subprocess.Popen | None = None

    def start(self) -> "Daemon":
        env = {**os.environ, "PYTHONPATH": str(REPO), **self.env}
        self.log.parent.mkdir(parents=True, exist_ok=True)
        out = open(self.log, "ab")
        self.proc = subprocess.Popen(self.args, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=str(REPO))
        out.close()
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@attrs.define
class RegionProcess(Daemon):
    data_dir: Path = Path()
    http_port: int = 0
    rpc_port: int = 0

    @classmethod
    def make(cls, data_dir: Path, *, dsn: str | None, local_rack: bool = False, extra: list[str] = (),
             http_port: int | None = None, rpc_port: int | None = None,
             env: dict[str, str] | None = None) -> "RegionProcess":
        http_port = http_port or free_port()
        rpc_port = rpc_port or free_port()
        args = [sys.executable, "-m", "region.daemon", "--data-dir", str(data_dir),
                "--http", f"127.0.0.1:{http_port}", "--rpc", f"127.0.0.1:{rpc_port}", "--log-level", "debug"]
        if dsn:
            args += ["--database-dsn", dsn]
        if not local_rack:
            args.append("--no-local-rack")
        return cls(args=[*args, *extra], log=data_dir.parent / f"{data_dir.name}-region.log", env=env or {},
                   data_dir=data_dir, http_port=http_port, rpc_port=rpc_port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/MAAS/"

    @property
    def api(self) -> str:
        return self.url + "api/2.0/"

    def wait_ready(self, timeout: float = 90) -> "RegionProcess":
        def up():
            try:
                return http_get(self.api + "version/", 1)[0] == 200 and "region ready" in self.output()
            except OSError:
                return False

        wait_for(up, timeout, "the region to answer", self.proc, self.log)
        return self


@attrs.define
class RackProcess(Daemon):
    data_dir: Path = Path()

    @classmethod
    def make(cls, data_dir: Path, region_url: str, secret_file: Path | None) -> "RackProcess":
        args = [sys.executable, "-m", "rack.daemon", "--data-dir", str(data_dir), "--region", region_url,
                "--log-level", "debug"]
        if secret_file is not None:
            args += ["--secret-file", str(secret_file)]
        return cls(args=args, log=data_dir.parent / f"{data_dir.name}-rack.log", data_dir=data_dir)

    @property
    def system_id(self) -> str | None:
        try:
            return json.loads((self.data_dir / "rack.json").read_text())["system_id"]
        except FileNotFoundError:
            return None
