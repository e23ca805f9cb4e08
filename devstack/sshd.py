"""A private sshd on 127.0.0.1 with password logins, for qemu+ssh tests.

Its config, host key, PID file and log live in one private directory; it runs in the
foreground (`-D`) as our child and is stopped by its PID.  `rotate_host_key()` swaps
the host key and has sshd re-read it (SIGHUP), as a reinstalled server would.
"""

from __future__ import annotations

import signal
import socket
import subprocess
from pathlib import Path

import attrs

from devstack.daemons import Daemon, free_port, wait_for

SSHD = "/usr/sbin/sshd"
PRIVSEP_DIR = Path("/run/sshd")  # sshd refuses to start without it (Debian's privilege separation dir)


def _config(state: Path, port: int, user: str) -> str:
    return "\n".join([
        f"Port {port}",
        "ListenAddress 127.0.0.1",
        f"HostKey {state / 'host_ed25519'}",
        f"PidFile {state / 'sshd.pid'}",
        "PasswordAuthentication yes",
        "KbdInteractiveAuthentication no",
        "PubkeyAuthentication no",
        "UsePAM no",  # checks /etc/shadow itself: no PAM stack needed
        f"AllowUsers {user}",
        "PermitRootLogin no",
        "MaxStartups 50:30:100",  # tests open many short connections at once
        "LogLevel INFO",
        "",
    ])


def _new_host_key(state: Path) -> None:
    key = state / "host_ed25519"
    for path in (key, key.with_suffix(".pub")):
        path.unlink(missing_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "vmyard-test", "-f", str(key)],
                   check=True, capture_output=True)


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            return s.recv(4).startswith(b"SSH-")
    except OSError:
        return False


@attrs.define
class Sshd:
    state: Path
    port: int
    user: str
    daemon: Daemon

    @classmethod
    def start(cls, state: Path, user: str) -> "Sshd":
        state.mkdir(parents=True, exist_ok=True)
        state.chmod(0o700)
        PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
        _new_host_key(state)
        port = free_port()
        conf = state / "sshd_config"
        conf.write_text(_config(state, port, user))
        daemon = Daemon([SSHD, "-D", "-e", "-f", str(conf)], state / "sshd.log").start()
        wait_for(lambda: _accepts(port), 20, "sshd", daemon.proc, daemon.log)
        return cls(state, port, user, daemon)

    @property
    def host_public_key(self) -> str:
        """'ssh-ed25519 AAAA…' as the server presents it now."""
        return " ".join((self.state / "host_ed25519.pub").read_text().split()[:2])

    def rotate_host_key(self) -> None:
        _new_host_key(self.state)
        self.daemon.proc.send_signal(signal.SIGHUP)  # sshd re-executes itself with the new key, same PID
        wait_for(lambda: self.presented_key() == self.host_public_key, 20, "sshd serving its new host key",
                 self.daemon.proc, self.daemon.log)

    def presented_key(self) -> str:
        scan = subprocess.run(["ssh-keyscan", "-T", "2", "-t", "ed25519", "-p", str(self.port), "127.0.0.1"],
                              capture_output=True, text=True)
        lines = [line.split()[1:3] for line in scan.stdout.splitlines() if not line.startswith("#")]
        return " ".join(lines[0]) if lines else ""

    def stop(self) -> None:
        self.daemon.stop()
