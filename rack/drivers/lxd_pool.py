"""Idle LXD clients kept for reuse, so consecutive operations on one host skip the
TLS handshakes, the fingerprint probe and the GET /1.0 round trips.

A pooled client is only handed out for the same address, the same client
certificate and key, and the same expected server fingerprint; its session
still checks the server's fingerprint on every new TLS connection.  Each
client is used by one thread at a time (taken, then given back).  Idle
clients expire after `idle_seconds`.  A pooled client holds the host's client
key in its TLS context only (in memory): its certificate files were removed as
soon as it was built (rack/drivers/lxd.py).
"""

from __future__ import annotations

import atexit
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
    identity = hashlib.sha256(cert_pem.encode() + b"\0" + key_pem.encode()).digest()
    return url, identity, expected


class ClientPool:
    def __init__(self, idle_seconds: float = 30.0, per_key: int = 8, clock=time.monotonic) -> None:
        self.idle_seconds = idle_seconds
        self.per_key = per_key
        self._clock = clock
        self._idle: dict[tuple, list[PooledClient]] = {}
        self._lock = threading.Lock()
        atexit.register(self.close_all)

    def take(self, key: tuple) -> PooledClient | None:
        expired, found = self._expire(), None
        with self._lock:
            idle = self._idle.get(key)
            if idle:
                found = idle.pop()
        for pooled in expired:
            pooled.close()
        return found

    def give(self, key: tuple, pooled: PooledClient) -> None:
        pooled.idle_since = self._clock()
        with self._lock:
            idle = self._idle.setdefault(key, [])
            if len(idle) < self.per_key:
                idle.append(pooled)
                return
        pooled.close()

    def _expire(self) -> list[PooledClient]:
        cutoff = self._clock() - self.idle_seconds
        expired = []
        with self._lock:
            for key, idle in list(self._idle.items()):
                expired += [p for p in idle if p.idle_since < cutoff]
                idle[:] = [p for p in idle if p.idle_since >= cutoff]
                if not idle:
                    del self._idle[key]
        return expired

    def close_all(self) -> None:
        with self._lock:
            everything = [p for idle in self._idle.values() for p in idle]
            self._idle.clear()
        for pooled in everything:
            pooled.close()
