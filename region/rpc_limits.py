"""Bounds on the RPC port, so connections that never authenticate cannot use up the
region's file descriptors (and with them the HTTP API).

`ConnectionCap` sits below TLS and closes a connection at accept time when the total, or
its peer address's share, is full.  `RegistrationDeadline` closes a connection that has
not finished its TLS handshake, and then registered as a rack, within the timeout.
"""

from __future__ import annotations

import resource

import attrs
from twisted.logger import Logger
from twisted.protocols import policies

log = Logger()


@attrs.frozen
class RpcLimits:
    max_connections: int = 1000
    max_per_peer: int = 100
    handshake_timeout: float = 10.0  # to finish TLS, and again to register as a rack


class ConnectionCap(policies.WrappingFactory):
    """Wraps the TLS factory: beyond the caps, `buildProtocol` answers None, which makes
    the listening port close the accepted socket at once."""

    def __init__(self, wrapped, limits: RpcLimits) -> None:
        super().__init__(wrapped)
        self.limits = limits
        self.per_peer: dict[str, int] = {}
        self._refusing = False

    def buildProtocol(self, addr):
        peer = getattr(addr, "host", str(addr))
        total = sum(self.per_peer.values())
        if total >= self.limits.max_connections or self.per_peer.get(peer, 0) >= self.limits.max_per_peer:
            if not self._refusing:  # once per flood, not once per connection
                log.warn("refused RPC connections over the limit ({total} open, {peer_count} from {peer})",
                         total=total, peer_count=self.per_peer.get(peer, 0), peer=peer)
                self._refusing = True
            return None
        self._refusing = False
        self.per_peer[peer] = self.per_peer.get(peer, 0) + 1
        return super().buildProtocol(addr)

    def unregisterProtocol(self, p) -> None:
        super().unregisterProtocol(p)
        peer = getattr(p.transport.getPeer(), "host", "")
        left = self.per_peer.get(peer, 0) - 1
        if left > 0:
            self.per_peer[peer] = left
        else:
            self.per_peer.pop(peer, None)


class RegistrationDeadline:
    """One connection's deadline: the TLS handshake, then `RegisterRack`, each within
    `timeout` seconds, or the connection is aborted."""

    def __init__(self, reactor, timeout: float, transport) -> None:
        self._timeout = timeout
        self._transport = transport
        self._stage = "finish its TLS handshake"
        self._call = reactor.callLater(timeout, self._expired)

    def handshake_done(self) -> None:
        if self._call.active():
            self._stage = "register as a rack"
            self._call.reset(self._timeout)

    def cancel(self) -> None:
        if self._call.active():
            self._call.cancel()

    def _expired(self) -> None:
        log.info("closed an RPC connection that did not {stage} within {timeout}s (peer {peer})",
                 stage=self._stage, timeout=self._timeout, peer=str(self._transport.getPeer()))
        self._transport.abortConnection()


def raise_open_files_limit() -> None:
    """Soft RLIMIT_NOFILE up to the hard limit: every connection costs a descriptor."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # An unlimited hard limit is not a valid soft one for open files (the kernel caps it).
    if soft < hard != resource.RLIM_INFINITY:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        log.info("raised the open files limit from {soft} to {hard}", soft=soft, hard=hard)
