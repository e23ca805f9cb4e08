"""Idle LXD clients kept for reuse, so consecutive operations on one host skip the
TLS handshakes, the fingerprint probe and the GET /1.0 round trips.

A pooled client is only handed out for the same address, the same client
certificate and key, and the same expected server fingerprint; its session
still checks the server's fingerprint on every new TLS connection.  Each
client is used by one thread at a time (taken, then given back).  Idle
clients expire after `idle_seconds` (by default twice the region's default refresh
interval, so a periodic discovery finds the one its host's last left), and at most
`max_clients` wait in all: beyond that a client given back is closed and those waiting
stay.  Periodic refreshes visit every host in turn, so evicting the least recently used
would close exactly the client needed soonest and no host would ever find its own; kept
first-come, `max_clients` hosts a rack reuse theirs and the rest open fresh ones.
A pooled client holds the host's client key in its TLS context only (in memory): its
certificate files were removed as soon as it was built (rack/drivers/lxd.py).
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import threading
import time
from typing import Any

import attrs


@attrs.define
class PooledClient:
    client: Any  # pylxd.Client
    session: Any  # requests.Session
    fingerprint: str
    idle_since: float = 0.0

    def close(self) -> None:
        self.session.close()


def pool_key(url: str, cert_pem: str, key_pem: str, expected: str | None) -> tuple[str, bytes, str | None]:
    return url, _identity(cert_pem, key_pem), expected


@functools.lru_cache(maxsize=256)
def _identity(cert_pem: str, key_pem: str) -> bytes:
    return hashlib.sha256(cert_pem.encode() + b"\0" + key_pem.encode()).digest()


IDLE_SECONDS = 120.0  # 2 x the default refresh interval (region/config.py)
MAX_CLIENTS = 1024  # ~120 KB each as measured (TLS connection, session, pylxd client)
SWEEP_EVERY = 1.0  # seconds between looks for expired clients (a look visits every idle one)


class ClientPool:
    def __init__(self, idle_seconds: float = IDLE_SECONDS, per_key: int = 8, max_clients: int = MAX_CLIENTS,
                 clock=time.monotonic) -> None:
        self.idle_seconds = idle_seconds
        self.per_key = per_key
        self.max_clients = max_clients
        self._clock = clock
        self._idle: dict[tuple, list[PooledClient]] = {}
        self._count = 0
        self._next_sweep = 0.0
        self._lock = threading.Lock()
        atexit.register(self.close_all)

    def take(self, key: tuple) -> PooledClient | None:
        expired, found = self._expire(), None
        with self._lock:
            idle = self._idle.get(key)
            if idle:
                found = idle.pop()
                self._count -= 1
                if not idle:
                    del self._idle[key]
        for pooled in expired:
            pooled.close()
        return found

    def give(self, key: tuple, pooled: PooledClient) -> None:
        pooled.idle_since = self._clock()
        with self._lock:
            idle = self._idle.setdefault(key, [])
            admitted = len(idle) < self.per_key and self._count < self.max_clients
            if admitted:
                idle.append(pooled)
                self._count += 1
            elif not idle:
                del self._idle[key]
        if not admitted:
            pooled.close()

    def _expire(self) -> list[PooledClient]:
        now = self._clock()
        expired = []
        with self._lock:
            if now < self._next_sweep:
                return expired
            self._next_sweep = now + SWEEP_EVERY
            cutoff = now - self.idle_seconds
            for key, idle in list(self._idle.items()):
                expired += [p for p in idle if p.idle_since < cutoff]
                idle[:] = [p for p in idle if p.idle_since >= cutoff]
                if not idle:
                    del self._idle[key]
            self._count -= len(expired)
        return expired

    def close_all(self) -> None:
        with self._lock:
            everything = [p for idle in self._idle.values() for p in idle]
            self._idle.clear()
            self._count = 0
        for pooled in everything:
            pooled.close()
