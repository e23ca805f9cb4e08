"""How the LXD driver reaches a server safely: the endpoint, the server
certificate's fingerprint from a bare handshake, an HTTPS adapter that pins it
on every connection (check_pin: a mismatch raises ServerCertificateChanged
itself), and private temp files for the client certificate."""

from __future__ import annotations

import hashlib
import ipaddress
import os
import shutil
import socket
import ssl
import tempfile
import threading
from collections import OrderedDict
from contextlib import contextmanager
from typing import Iterator
from urllib.parse import urlsplit

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPSConnection
from urllib3.connectionpool import HTTPSConnectionPool

from common import tls
from common.models import HostTarget
from common.procs import process_exists
from rack.drivers.base import DriverError, NotLXD, ServerCertificateChanged, Unreachable

DEFAULT_PORT = 8443


def endpoint_for(address: str) -> tuple[str, str, int]:
    """`h` → https://h:8443; `h:1234` → https://h:1234; returns (url, host, port)."""
    address = address.strip()
    if "://" not in address:
        address = "https://" + address
    parts = urlsplit(address)
    if parts.scheme != "https":
        raise DriverError(f"LXD is reached over https, not {parts.scheme}: {address}")
    try:
        host, port = parts.hostname, parts.port or DEFAULT_PORT
    except ValueError as e:
        raise DriverError(f"invalid LXD address {address!r}: {e}") from None
    if not host:
        raise DriverError(f"invalid LXD address {address!r}: no host")
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return f"https://{netloc}", host, port


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def probe_fingerprint(host: str, port: int, timeout: float) -> str:
    """SHA-256 (hex) of the certificate the server presents, from a bare handshake."""
    where = f"{host}:{port}"
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except socket.timeout:
        raise Unreachable(f"cannot reach the LXD host at {where}: connection timed out "
                          f"after {timeout:g} s") from None
    except OSError as e:
        raise Unreachable(f"cannot reach the LXD host at {where}: {e.strerror or e}") from None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with ctx.wrap_socket(sock, server_hostname=None if is_ip(host) else host) as tsock:
            der = tsock.getpeercert(binary_form=True)
    except socket.timeout:
        raise Unreachable(f"the host at {where} accepted the connection but did not complete "
                          f"a TLS handshake within {timeout:g} s") from None
    except (ssl.SSLError, ConnectionError) as e:
        raise NotLXD(f"the host at {where} does not speak TLS, so it is not an LXD API "
                     f"endpoint ({e.__class__.__name__}: {e})") from None
    except OSError as e:
        raise Unreachable(f"cannot reach the LXD host at {where}: {e.strerror or e}") from None
    finally:
        sock.close()
    if not der:
        raise NotLXD(f"the host at {where} presented no TLS certificate")
    return hashlib.sha256(der).hexdigest()


class PinnedConnection(HTTPSConnection):
    """An HTTPS connection that checks the server certificate's SHA-256 right after
    every handshake, before any request is sent (independent of CA checks, so it
    works with verify=False).  A subclass per adapter sets `fingerprint`."""

    fingerprint = ""

    def connect(self) -> None:
        super().connect()
        try:
            check_pin(self.sock, self.fingerprint)
        except ServerCertificateChanged:
            self.close()
            raise
        self.is_verified = True  # by the pin, so urllib3 does not warn about an unverified request


def check_pin(sock: ssl.SSLSocket, fingerprint: str) -> None:
    """The certificate the server presented on this fresh TLS socket has SHA-256 `fingerprint`,
    else ServerCertificateChanged, raised as is (not an OSError), so urllib3, requests and pylxd
    let it through.  The caller closes the socket."""
    der = sock.getpeercert(binary_form=True) or b""
    if hashlib.sha256(der).hexdigest() != fingerprint:
        raise ServerCertificateChanged.between(fingerprint, "(a different certificate)")


class PinnedAdapter(HTTPAdapter):
    """HTTPS adapter whose every connection is a PinnedConnection for `fingerprint`.

    With `client_cert` (paths of the PEM certificate and key) the client
    certificate is loaded into the adapter's TLS context once, so the files are
    needed only while the adapter is built and can be removed right after.
    `ssl_context` and `fingerprint` are what LXDSession's kept connections
    (lxd_http) are built with.
    """

    def __init__(self, fingerprint: str, client_cert: tuple[str, str] | None = None):
        self.fingerprint = fingerprint
        self._client_cert = client_cert
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args, **kwargs):
        # A bare context: no CA store to load (the fingerprint is the check), which
        # would otherwise cost ~20 ms per connection.  LXDSession's kept connections use it too.
        self.ssl_context = bare_client_context()
        if self._client_cert is not None:
            self.ssl_context.load_cert_chain(*self._client_cert)
        kwargs["ssl_context"] = self.ssl_context
        super().init_poolmanager(*args, **kwargs)
        connection = type("PinnedConnection", (PinnedConnection,), {"fingerprint": self.fingerprint})
        pool = type("PinnedPool", (HTTPSConnectionPool,), {"ConnectionCls": connection})
        self.poolmanager.pool_classes_by_scheme = {**self.poolmanager.pool_classes_by_scheme,
                                                   "https": pool}


def bare_client_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


# Checking that a key matches its certificate means parsing the key, which for
# RSA includes a costly consistency check (~0.2 s); remember pairs already checked.
_CHECKED_PAIRS: OrderedDict[bytes, None] = OrderedDict()
_CHECKED_LOCK = threading.Lock()
_CHECKED_MAX = 256


def check_pair_cached(cert_pem: str, key_pem: str) -> None:
    digest = hashlib.sha256(cert_pem.encode() + b"\0" + key_pem.encode()).digest()
    with _CHECKED_LOCK:
        if digest in _CHECKED_PAIRS:
            _CHECKED_PAIRS.move_to_end(digest)
            return
    tls.check_pair(cert_pem, key_pem)
    with _CHECKED_LOCK:
        _CHECKED_PAIRS[digest] = None
        while len(_CHECKED_PAIRS) > _CHECKED_MAX:
            _CHECKED_PAIRS.popitem(last=False)


@contextmanager
def cert_files(target: HostTarget) -> Iterator[tuple[str, str]]:
    """The target's client certificate and key as 0600 files in a private (0700) temp dir,
    removed on exit."""
    try:
        check_pair_cached(target.cert_pem, target.key_pem)
    except tls.CertificateError as e:
        raise DriverError(f"the client certificate for this VM host is unusable: {e}") from None
    tmp = tempfile.mkdtemp(prefix=f"{CERT_DIR_PREFIX}{os.getpid()}-")  # 0700
    try:
        paths = []
        for name, data in (("client.crt", target.cert_pem), ("client.key", target.key_pem)):
            path = os.path.join(tmp, name)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(data)
            paths.append(path)
        yield paths[0], paths[1]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


CERT_DIR_PREFIX = "vmyard-lxd-cert-"


def sweep_stale_cert_dirs(root: str | None = None) -> list[str]:
    """Remove certificate directories left by rack processes that died mid-operation
    (the PID in the name no longer exists).  Returns what was removed."""
    root = root or tempfile.gettempdir()
    removed = []
    for name in os.listdir(root):
        if not name.startswith(CERT_DIR_PREFIX):
            continue
        pid = name[len(CERT_DIR_PREFIX):].split("-", 1)[0]
        if not pid.isdigit() or process_exists(int(pid)):
            continue
        path = os.path.join(root, name)
        if os.path.isdir(path) and os.stat(path).st_uid == os.getuid():
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed
