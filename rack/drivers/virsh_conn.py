"""Connecting to a libvirt host over SSH with a password, its host key pinned.

The user registers `qemu+ssh://user@host[:port]/system`; the rack opens it with the libvirt
Python bindings over libvirt's ssh transport, i.e. the OpenSSH client, through a per-job
wrapper (`?command=`) in a private 0700 temp dir: `ssh -F /dev/null` with that job's
known_hosts file, StrictHostKeyChecking=yes, password authentication only, one prompt,
answered by an SSH_ASKPASS script that reads the password from a 0600 file there (removed
when the connection is open; never in argv or the rack's environment).  libvirt's libssh
transport would need no process, but with libvirt 9.0 it hangs on any reply of a few KB
(`getCapabilities`), so it is not used.  The known_hosts file is written per job from the
pin the region sent (`HostTarget.server_fingerprint`), so every rack can serve every host:

- a public key ("ssh-ed25519 AAAA…"): ssh refuses any other key before the password is sent;
- None (first use): a connection that gives no password learns the key (accept-new writes
  it), then the real one pins it; the key is returned so the region records it;
- a fingerprint ("SHA256:…", what an admin gave to accept a new key): learned as above and
  compared before the password is sent.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import shlex
import tempfile
import urllib.parse
from typing import Iterator

import libvirt

from common import sshhostkey
from common.hosterrors import DriverError, ServerCertificateChanged, Unreachable, WrongTrustPassword
from common.models import HostTarget

CONNECT_TIMEOUT = 10  # seconds for SSH's TCP connect
SSH_OPTIONS = ["-F", "/dev/null", "-o", "GlobalKnownHostsFile=/dev/null", "-o", "PubkeyAuthentication=no",
               "-o", "KbdInteractiveAuthentication=no", "-o", "PreferredAuthentications=password",
               "-o", "NumberOfPasswordPrompts=1", "-o", f"ConnectTimeout={CONNECT_TIMEOUT}",
               "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4", "-o", "LogLevel=ERROR"]

# libvirt prints every error on stderr by default; ours are raised (and logged) as DriverErrors.
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)


class HostKeyChanged(ServerCertificateChanged):
    """The host presents another SSH host key than the one pinned."""


def parse_address(address: str) -> tuple[str, str, int]:
    """(user, host, port) of `qemu+ssh://user@host[:port]/system`; DriverError otherwise."""
    parts = urllib.parse.urlsplit(address)
    try:
        port = parts.port or 22
    except ValueError:
        raise DriverError(f"invalid port in {address!r}") from None
    if parts.scheme != "qemu+ssh" or not parts.username or not parts.hostname or parts.path != "/system" \
            or parts.query or parts.fragment or parts.password:
        raise DriverError(f"{address!r} is not qemu+ssh://user@host[:port]/system")
    return urllib.parse.unquote(parts.username), parts.hostname, port


def _host_pattern(host: str, port: int) -> str:
    """The host as known_hosts names it."""
    return host if port == 22 else f"[{host}]:{port}"


class _Job:
    """The private files of one connection: ssh wrapper, askpass, known_hosts, password."""

    def __init__(self, workdir: str) -> None:
        self.dir = workdir
        self.known_hosts = os.path.join(workdir, "known_hosts")
        self.password_file = os.path.join(workdir, "password")
        self.askpass = self._script("askpass", f"exec cat {shlex.quote(self.password_file)}\n")

    def _script(self, name: str, body: str) -> str:
        path = os.path.join(self.dir, name)
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o700), "w") as f:
            f.write("#!/bin/sh\n" + body)
        return path

    def ssh_wrapper(self, checking: str) -> str:
        options = [*SSH_OPTIONS, "-o", f"UserKnownHostsFile={self.known_hosts}",
                   "-o", f"StrictHostKeyChecking={checking}"]
        name = f"ssh-{checking}"
        return self._script(name, f"SSH_ASKPASS={shlex.quote(self.askpass)} SSH_ASKPASS_REQUIRE=force "
                                  f"exec ssh {' '.join(shlex.quote(o) for o in options)} \"$@\"\n")

    def write_password(self, password: str) -> None:
        with open(os.open(self.password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            f.write(password + "\n")

    def forget_password(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.password_file)


def _uri(user: str, host: str, port: int, command: str) -> str:
    netloc = f"{urllib.parse.quote(user, safe='')}@{f'[{host}]' if ':' in host else host}:{port}"
    return f"qemu+ssh://{netloc}/system?{urllib.parse.urlencode({'command': command})}"


def _open_auth(uri: str) -> libvirt.virConnect:
    # ssh asks SSH_ASKPASS, not libvirt, so libvirt's own callback has nothing to answer.
    return libvirt.openAuth(uri, [[libvirt.VIR_CRED_PASSPHRASE], lambda _c, _o: -1, None], 0)


def _learn_key(job: _Job, user: str, host: str, port: int) -> str:
    """The host key the server presents, learned without sending a password."""
    with contextlib.suppress(libvirt.libvirtError):
        _open_auth(_uri(user, host, port, job.ssh_wrapper("accept-new"))).close()
    try:
        with open(job.known_hosts) as f:
            return " ".join(f.read().split()[1:3])
    except OSError:
        raise Unreachable(f"cannot reach SSH at {host}:{port} (no host key seen)") from None


def _changed(host: str, port: int, pinned: str, got: str) -> HostKeyChanged:
    return HostKeyChanged(
        f"the SSH host key of {host}:{port} changed: pinned {sshhostkey.display(pinned)}, the host now shows "
        f"{got}. If the host was reinstalled or its keys regenerated on purpose, accept the new key with "
        f"`vmyard vm-host trust-server NAME` (API: POST op=trust_server, optionally with "
        f"fingerprint={got}); otherwise something is intercepting the connection.")


def _open(target: HostTarget, password: str | None, job: _Job) -> tuple[libvirt.virConnect, str]:
    user, host, port = parse_address(target.address)
    pin = target.server_fingerprint
    if pin and sshhostkey.is_public_key(pin):
        key = pin
    else:
        key = _learn_key(job, user, host, port)
        if pin and sshhostkey.fingerprint(key) != pin:
            raise _changed(host, port, pin, sshhostkey.fingerprint(key))
    with open(job.known_hosts, "w") as f:
        f.write(f"{_host_pattern(host, port)} {key}\n")
    if password is None:
        raise WrongTrustPassword(f"{user}@{host}:{port} needs an SSH password (power_pass)")
    job.write_password(password)
    try:
        return _open_auth(_uri(user, host, port, job.ssh_wrapper("yes"))), key
    except libvirt.libvirtError as e:
        message = e.get_error_message() or str(e)
        if "IDENTIFICATION HAS CHANGED" in message or "Host key verification failed" in message:
            os.unlink(job.known_hosts)
            raise _changed(host, port, key, sshhostkey.fingerprint(_learn_key(job, user, host, port))) from None
        if "Permission denied" in message:
            raise WrongTrustPassword(f"the SSH password of {user}@{host}:{port} was refused") from None
        if "Connection refused" in message or "timed out" in message or "No route" in message \
                or "resolve" in message:
            raise Unreachable(f"cannot reach SSH at {host}:{port}: {message}") from None
        raise DriverError(f"cannot open libvirt at {host}:{port}: {message}") from None
    finally:
        job.forget_password()


@contextlib.contextmanager
def connect(target: HostTarget, password: str | None = None) -> Iterator[tuple[libvirt.virConnect, str]]:
    """(connection, pinned host key) for one job; its private files and connection are gone after."""
    workdir = tempfile.mkdtemp(prefix="vmyard-ssh-")  # 0700, ours alone
    try:
        conn, key = _open(target, password or target.ssh_password or None, _Job(workdir))
        try:
            yield conn, key
        finally:
            with contextlib.suppress(libvirt.libvirtError):
                conn.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def libvirt_error(what: str, e: libvirt.libvirtError) -> DriverError:
    return DriverError(f"{what}: {e.get_error_message() or e}")
