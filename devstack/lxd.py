"""A private, throw-away LXD daemon for tests and benchmarks.

Each `LxdServer.start()` runs its own `lxd` with a fresh LXD_DIR under /tmp,
listening over HTTPS on 127.0.0.1 only, with a `dir` storage pool inside that
directory.  It never touches another LXD daemon: every `lxd`/`lxc` call gets
LXD_DIR set explicitly, and `stop()` only kills the PID this object started.

Facts it relies on (see /work/shared/harness/real-hosts.md):
- there is no systemd, so the daemon is started by hand with `--group root`;
- LXD's qemu driver runs `modprobe vhost_vsock`; a no-op `modprobe` early on
  the daemon's PATH keeps virtual machines "supported" (they can be created,
  not started, on this machine).  The shim lives in our private dir unless
  /usr/local/sbin/modprobe already exists.
- never `lxd init --auto/--minimal` (LXD would probe random 10.x addresses);
  the preseed below creates no network at all.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import attrs

from devstack.daemons import free_port


def _preseed(port: int, password: str) -> str:
    # JSON is valid YAML; keeps quoting trivial.
    return json.dumps({
        "config": {
            "core.https_address": f"127.0.0.1:{port}",
            "core.trust_password": password,
        },
        "storage_pools": [
            # No explicit source: LXD refuses a source inside LXD_DIR, and its
            # default for `dir` is LXD_DIR/storage-pools/default -- ours.
            {"name": "default", "driver": "dir"},
        ],
        "profiles": [
            {"name": "default",
             "devices": {"root": {"path": "/", "pool": "default", "type": "disk"}}},
        ],
    })


@attrs.define
class LxdServer:
    base_dir: Path
    lxd_dir: Path
    address: str
    trust_password: str = attrs.field(repr=False)
    pid: int
    _proc: subprocess.Popen = attrs.field(repr=False)
    _env: dict[str, str] = attrs.field(repr=False)

    @property
    def url(self) -> str:
        return f"https://{self.address}"

    @property
    def port(self) -> int:
        return int(self.address.rsplit(":", 1)[1])

    @property
    def server_cert_pem(self) -> str:
        return (self.lxd_dir / "server.crt").read_text()

    @classmethod
    def start(cls, timeout: float = 60) -> "LxdServer":
        if not shutil.which("lxd") or not shutil.which("lxc"):
            raise RuntimeError("lxd is not installed (apt-get install --no-install-recommends lxd)")
        base = Path(tempfile.mkdtemp(prefix="vmyard-lxd-", dir="/tmp"))
        base.chmod(0o711)
        lxd_dir = base / "lxd"
        lxd_dir.mkdir(mode=0o711)
        path = os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        if os.access("/usr/local/sbin/modprobe", os.X_OK):
            path = "/usr/local/sbin:" + path
        else:
            shim_dir = base / "bin"
            shim_dir.mkdir()
            shim = shim_dir / "modprobe"
            shim.write_text("#!/bin/sh\nexit 0\n")
            shim.chmod(0o755)
            path = f"{shim_dir}:{path}"
        env = dict(os.environ, LXD_DIR=str(lxd_dir), PATH=path)
        for var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
            env.pop(var, None)
        proc = _spawn(base, env)
        password = secrets.token_urlsafe(18)
        port = free_port()
        server = cls(base, lxd_dir, f"127.0.0.1:{port}", password, proc.pid, proc, env)
        try:
            subprocess.run(["lxd", "waitready", "--timeout", str(int(timeout))], env=env,
                           check=True, capture_output=True, timeout=timeout + 10)
            subprocess.run(["lxd", "init", "--preseed"], env=env, check=True, capture_output=True,
                           input=_preseed(port, password).encode(), timeout=60)
            server._wait_https(timeout)
        except BaseException as e:
            detail = ""
            if isinstance(e, subprocess.CalledProcessError):
                detail = (e.stderr or b"").decode(errors="replace")
            server.stop()
            raise RuntimeError(f"could not start a private LXD: {e} {detail}") from e
        return server

    def _wait_https(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def lxc(self, *args: str, input: str | None = None) -> str:
        r = subprocess.run(["lxc", *args], env=self._env, capture_output=True, text=True,
                           input=input, timeout=120)
        if r.returncode != 0:
            raise subprocess.CalledProcessError(r.returncode, ["lxc", *args], r.stdout, r.stderr)
        return r.stdout

    def trust_add(self, cert_pem: str, name: str) -> None:
        path = self.base_dir / f"trust-{secrets.token_hex(4)}.crt"
        path.write_text(cert_pem)
        try:
            self.lxc("config", "trust", "add", str(path), "--name", name)
        finally:
            path.unlink(missing_ok=True)

    def trust_token(self, name: str) -> str:
        """A one-time trust token (LXD 5.0 prints a header line, then the token)."""
        out = self.lxc("config", "trust", "add", "--name", name)
        lines = [line.strip() for line in out.splitlines() if line.strip()]
        if not lines:
            raise RuntimeError(f"no token in lxc output: {out!r}")
        return lines[-1]

    def halt(self) -> None:
        """Stop the daemon but keep its state (the server is "down")."""
        if self._proc.poll() is None:
            subprocess.run(["lxd", "shutdown", "--timeout", "30"], env=self._env,
                           capture_output=True, timeout=60)
            try:
                self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                # Only the process (group) we started.
                os.killpg(self._proc.pid, signal.SIGKILL)
                self._proc.wait(timeout=10)

    def resume(self, timeout: float = 60) -> None:
        """Start the halted daemon again on the same state, address and certificate."""
        self._proc = _spawn(self.base_dir, self._env)
        self.pid = self._proc.pid
        subprocess.run(["lxd", "waitready", "--timeout", str(int(timeout))], env=self._env,
                       check=True, capture_output=True, timeout=timeout + 10)
        self._wait_https(timeout)

    def stop(self) -> None:
        self._force_stop_instances()
        self.halt()
        # LXD may leave its shmounts/devlxd mounts under LXD_DIR; unmount ours only.
        _unmount_under(self.lxd_dir)
        shutil.rmtree(self.base_dir, ignore_errors=True)


    def _force_stop_instances(self) -> None:
        """Its state is thrown away: no instance needs a clean shutdown, which `lxd shutdown`
        would otherwise wait for (up to 30 s for each still running container)."""
        if self._proc.poll() is not None:
            return
        try:
            running = self.lxc("list", "--all-projects", "--format", "csv", "--columns", "en", "status=running")
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            return
        for project, name in (line.split(",", 1) for line in running.splitlines() if "," in line):
            subprocess.run(["lxc", "stop", "--force", "--project", project, name], env=self._env,
                           capture_output=True, timeout=60)


def _spawn(base: Path, env: dict[str, str]) -> subprocess.Popen:
    with open(base / "lxd.out", "ab") as log:
        return subprocess.Popen(
            ["lxd", "--group", "root", "--logfile", str(base / "lxd.log")],
            env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def _unmount_under(root: Path) -> None:
    prefix = str(root) + "/"
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return
    targets = [m.split()[1] for m in mounts if len(m.split()) > 1 and m.split()[1].startswith(prefix)]
    for target in sorted(targets, key=len, reverse=True):
        subprocess.run(["umount", "-l", target], capture_output=True)
