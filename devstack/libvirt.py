"""A real libvirtd reached over qemu+ssh with a password, for tests and local trials.

libvirtd is a system daemon (its sockets are in /run/libvirt, its state in /var/lib/libvirt):
`LibvirtLab.start` starts virtlogd and libvirtd by hand only if no libvirtd answers, with a
config of its own (unix socket open to group `libvirt`, no polkit: there is no dbus here).
Labs of concurrent test sessions share that daemon, so they register in `SHARED_DIR`: the
last lab to stop stops the daemons a lab started (by PID), never one that was already running.  What the lab defines on the daemon (two
isolated networks without DHCP, a dir pool in a private directory) is uniquely named and
removed again.  An sshd of its own (devstack/sshd.py) lets a user in group `libvirt` log in
with a password.  Recipe and pitfalls: shared/harness/real-hosts.md §4.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import attrs

from devstack.daemons import wait_for
from devstack.sshd import Sshd

LOCAL_URI = "qemu:///system"
SHARED_DIR = Path("/run/vmyard-libvirt-labs")  # lock, users/<lab>, daemons (PIDs a lab started)
TEST_DOMAIN_PREFIX = "vyt-"  # domains tests make; stop() removes any left behind
LIBVIRTD_CONF = """
unix_sock_group = "libvirt"
unix_sock_ro_perms = "0777"
unix_sock_rw_perms = "0770"
auth_unix_ro = "none"
auth_unix_rw = "none"
"""


def virsh(*args: str, check: bool = True) -> str:
    done = subprocess.run(["virsh", "-q", "-c", LOCAL_URI, *args], capture_output=True, text=True,
                          env={**os.environ, "TERM": "dumb"})
    if check and done.returncode != 0:
        raise RuntimeError(f"virsh {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def _answers() -> bool:
    return subprocess.run(["virsh", "-c", LOCAL_URI, "version"], capture_output=True).returncode == 0


def _fix_kvm_permissions() -> None:
    """libvirt runs qemu as libvirt-qemu (group kvm); a 0600 /dev/kvm fails every start and makes
    every `define` take ~50 s (what udev would otherwise set)."""
    kvm = Path("/dev/kvm")
    if kvm.exists() and not kvm.stat().st_mode & stat.S_IRGRP:
        shutil.chown(kvm, group="kvm")
        kvm.chmod(0o660)


def _pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _add_user(name: str, password: str) -> None:
    subprocess.run(["useradd", "-M", "-d", "/nonexistent", "-s", "/bin/sh", "-G", "libvirt", name],
                   check=True, capture_output=True)
    subprocess.run(["chpasswd"], input=f"{name}:{password}\n", text=True, check=True, capture_output=True)


@attrs.define
class LibvirtLab:
    state: Path
    user: str
    password: str = attrs.field(repr=False)
    sshd: Sshd
    networks: list[str]
    pool: str
    pool_dir: Path

    @classmethod
    def start(cls) -> "LibvirtLab":
        state = Path(tempfile.mkdtemp(prefix="vmyard-libvirt-"))
        tag = secrets.token_hex(3)
        with _shared() as shared:
            (shared / "users" / f"{os.getpid()}-{tag}").touch()
            _fix_kvm_permissions()
            if not _answers():
                pids = _start_daemons(state)
                (shared / "daemons").write_text(" ".join(map(str, pids)))
        # A user of its own, so labs of concurrent test sessions never change each other's password.
        user, password = f"vmyardvirsh{tag}", secrets.token_urlsafe(12)
        _add_user(user, password)
        networks = [f"vmyard-{tag}-{i}" for i in range(2)]
        for i, name in enumerate(networks):
            xml = state / f"{name}.xml"
            # Isolated: no <forward>, no <ip>, so no DHCP and no NAT to the outside.
            xml.write_text(f"<network><name>{name}</name><bridge name='vy{tag}{i}' stp='off'/></network>")
            virsh("net-define", str(xml))
            virsh("net-start", name)
        pool, pool_dir = f"vmyard-{tag}", state / "pool"
        pool_dir.mkdir()
        state.chmod(0o755)  # qemu (libvirt-qemu) must reach the volumes
        virsh("pool-define-as", pool, "dir", "--target", str(pool_dir))
        virsh("pool-start", pool)
        sshd = Sshd.start(state / "sshd", user)
        return cls(state, user, password, sshd, networks, pool, pool_dir)

    @property
    def address(self) -> str:
        return f"qemu+ssh://{self.user}@127.0.0.1:{self.sshd.port}/system"

    def stop(self) -> None:
        self.sshd.stop()
        for name in virsh("list", "--all", "--name", check=False).split():
            # Only domains on our pool: another session's lab may share the daemon.
            if name.startswith(TEST_DOMAIN_PREFIX) and f"pool='{self.pool}'" in virsh("dumpxml", name, check=False):
                virsh("destroy", name, check=False)
                virsh("undefine", name, "--nvram", check=False)
        for name in self.networks:
            virsh("net-destroy", name, check=False)
            virsh("net-undefine", name, check=False)
        virsh("pool-destroy", self.pool, check=False)
        virsh("pool-undefine", self.pool, check=False)
        subprocess.run(["userdel", self.user], capture_output=True)
        with _shared() as shared:
            (shared / "users" / f"{os.getpid()}-{self.pool.removeprefix('vmyard-')}").unlink(missing_ok=True)
            daemons = shared / "daemons"
            if daemons.exists() and not _live_users(shared):
                for pid in reversed(daemons.read_text().split()):
                    _stop_pid(int(pid))
                daemons.unlink()
        shutil.rmtree(self.state, ignore_errors=True)


@contextlib.contextmanager
def _shared():
    """The labs' shared directory, locked against other labs for the block."""
    (SHARED_DIR / "users").mkdir(mode=0o700, parents=True, exist_ok=True)
    with open(SHARED_DIR / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield SHARED_DIR


def _live_users(shared: Path) -> list[Path]:
    """Labs still registered, less those whose process died without stopping."""
    live = []
    for entry in (shared / "users").iterdir():
        if Path(f"/proc/{entry.name.split('-')[0]}").exists():
            live.append(entry)
        else:
            entry.unlink(missing_ok=True)
    return live


def _start_daemons(state: Path) -> list[int]:
    """virtlogd (unless one runs) and libvirtd; the PIDs started."""
    started = []
    if subprocess.run(["pgrep", "-x", "virtlogd"], capture_output=True).returncode != 0:
        subprocess.run(["virtlogd", "-d", "-p", str(state / "virtlogd.pid")], check=True)
        wait_for(lambda: _pid(state / "virtlogd.pid"), 10, "virtlogd")
        started.append(_pid(state / "virtlogd.pid"))
    conf = state / "libvirtd.conf"
    conf.write_text(LIBVIRTD_CONF)
    subprocess.run(["libvirtd", "-d", "-f", str(conf), "-p", str(state / "libvirtd.pid")], check=True)
    wait_for(lambda: _pid(state / "libvirtd.pid"), 10, "libvirtd pid file")
    started.append(_pid(state / "libvirtd.pid"))
    wait_for(_answers, 90, "libvirtd (probes QEMU once, ~10 s cold)")
    return started


def _stop_pid(pid: int) -> None:
    try:
        os.kill(pid, 15)
    except ProcessLookupError:
        return
    def gone() -> bool:
        try:  # a daemon's parent is init, which may reap it late: a zombie has exited
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
        except (OSError, IndexError):
            return True

    wait_for(gone, 30, f"process {pid} to exit")
