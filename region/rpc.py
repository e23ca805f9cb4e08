"""The region side of AMP: rack connections and calls to racks.

Racks dial the region over mutual TLS.  The handshake proves the rack holds a
certificate from our CA that was not revoked (a deleted rack's fingerprint is in
`revoked_racks`, mirrored in memory so the TLS verify step can check it);
`RegisterRack` then maps the fingerprint to an enrolled rack in the database.
Connections are capped and must register in time (`rpc_limits`).
"""

from __future__ import annotations

import os
import random
import socket
from typing import Callable
from urllib.parse import urlsplit

from twisted.internet import defer, interfaces, protocol, ssl
from twisted.logger import Logger
from twisted.protocols import amp, tls
from zope.interface import implementer

from common.logsafe import loggable
from common.rpc import rack_commands, region_commands
from common.rpc.wire import RackHello, RegionHello
from common.tlsopts import peer_fingerprint
from common.version import VERSION
from region.db import events, racks
from region.rpc_limits import ConnectionCap, RegistrationDeadline, RpcLimits

log = Logger()


class NoRackConnected(Exception):
    """No rack is connected to this region (HTTP 503 with Retry-After)."""


@implementer(interfaces.IHandshakeListener)
class RegionServerProtocol(amp.AMP):
    """One connection from a rack.

    :ivar rack: the enrolled rack once `RegisterRack` succeeded, else None.
    """

    def __init__(self, registry: "RackRegistry") -> None:
        super().__init__()
        self.registry = registry
        self.rack: racks.Rack | None = None
        self._deadline: RegistrationDeadline | None = None

    def connectionMade(self) -> None:
        super().connectionMade()
        self._deadline = RegistrationDeadline(self.registry.reactor, self.registry.limits.handshake_timeout,
                                              self.transport)

    def handshakeCompleted(self) -> None:
        self._deadline.handshake_done()

    @region_commands.RegisterRack.responder
    async def register_rack(self, hello: RackHello) -> dict:
        fingerprint = peer_fingerprint(self.transport)
        rack = await self.registry.db.run(racks.get_by_fingerprint_thd, fingerprint or "")
        if rack is None:
            log.warn("refused a connection from an unenrolled certificate {fp}", fp=fingerprint)
            # Hang up once the error below has been sent.
            self.registry.reactor.callLater(0.5, self.transport.loseConnection)
            raise region_commands.UnknownRack("this rack's certificate is not enrolled (was the rack deleted?)")
        if self.rack is None:
            self._deadline.cancel()
            self.rack = rack
            await self.registry.connected(self, hello)
        return {
            "region": RegionHello(
                region_id=self.registry.region_id,
                hostname=socket.gethostname(),
                version=VERSION,
                rack_system_id=rack.system_id,
                regions=await self.registry.db.run(racks.live_region_endpoints_thd),
            )
        }

    @region_commands.ListRegions.responder
    async def list_regions(self) -> dict:
        return {"regions": await self.registry.db.run(racks.live_region_endpoints_thd)}

    @region_commands.DeployProgress.responder
    def deploy_progress(self, progress_id: str, stage: str, percent: int) -> dict:
        if self.rack is not None and self.registry.on_deploy_progress is not None:
            self.registry.on_deploy_progress(progress_id, stage, percent)
        return {}

    @region_commands.Ping.responder
    def ping(self, payload: bytes) -> dict:
        return {"payload": payload}

    def connectionLost(self, reason) -> None:
        super().connectionLost(reason)
        if self._deadline is not None:
            self._deadline.cancel()
        if self.rack is not None:
            self.registry.disconnected(self)


class RegionServerFactory(protocol.Factory):
    def __init__(self, registry: "RackRegistry") -> None:
        self.registry = registry

    def buildProtocol(self, addr) -> RegionServerProtocol:
        p = RegionServerProtocol(self.registry)
        p.factory = self
        return p


class RackRegistry:
    """Live rack connections held by this region process.

    Connection counts are mirrored into `rack_connections` so that every
    region (and the API) can tell which racks are connected.
    """

    def __init__(self, db, region_id: str, reactor, limits: RpcLimits = RpcLimits()) -> None:
        self.db = db
        self.reactor = reactor
        self.region_id = region_id
        self.limits = limits
        self._by_rack: dict[str, list[RegionServerProtocol]] = {}
        self._pending: set[defer.Deferred] = set()
        self._revoked: set[str] = set()  # fingerprints of deleted racks' certificates
        # (progress_id, stage, percent) -> None: where DeployProgress reports go (services/deploy.py)
        self.on_deploy_progress: Callable[[str, str, int], None] | None = None
        self._last_revocation = 0

    def factory(self, tls_options: ssl.CertificateOptions) -> protocol.Factory:
        """For a plain TCP listener: the caps, then TLS, then AMP."""
        return ConnectionCap(tls.TLSMemoryBIOFactory(tls_options, False, RegionServerFactory(self)), self.limits)

    def is_revoked(self, fingerprint: str) -> bool:
        return fingerprint in self._revoked

    def revoke(self, system_id: str, fingerprint: str) -> None:
        """A rack was deleted: refuse its certificate from now on, tell it and hang up on it."""
        self._revoked.add(fingerprint)
        conns = self._by_rack.pop(system_id, [])
        if conns:
            log.info("dropping the {count} connections of deleted rack {rack}", count=len(conns), rack=system_id)
        for conn in conns:
            # Sent before hanging up; the answer cannot arrive and is not needed.
            conn.callRemote(rack_commands.RackDeleted).addErrback(lambda _: None)
            conn.transport.loseConnection()

    async def sync_revocations(self) -> None:
        """Learn of racks deleted through any region since the last call."""
        revoked = await self.db.run(racks.revoked_since_thd, self._last_revocation)
        for revocation in revoked:
            self.revoke(revocation.system_id, revocation.cert_fingerprint)
            self._last_revocation = max(self._last_revocation, revocation.id)

    async def connected(self, conn: RegionServerProtocol, hello: RackHello) -> None:
        rack = conn.rack
        self._by_rack.setdefault(rack.system_id, []).append(conn)
        first = await self.db.run(self._connected_thd, rack, hello)
        if first:
            log.info("rack {rack} ({hostname}) connected", rack=rack.system_id, hostname=loggable(hello.hostname))

    def _connected_thd(self, cur, rack: racks.Rack, hello: RackHello) -> bool:
        first = racks.rack_connected_thd(cur, self.region_id, rack.id, hello.hostname, hello.version)
        if first:
            events.record_thd(cur, "RACK_CONNECTED", f"rack {hello.hostname} connected",
                              object_type="rack", object_id=rack.system_id)
        return first

    def disconnected(self, conn: RegionServerProtocol) -> None:
        rack = conn.rack
        conns = self._by_rack.get(rack.system_id, [])
        if conn in conns:
            conns.remove(conn)
        if not conns:
            self._by_rack.pop(rack.system_id, None)
        d = self.db.run_deferred(self._disconnected_thd, rack)
        self._pending.add(d)
        d.addErrback(lambda f: log.failure("recording a rack disconnection failed", f))
        d.addBoth(lambda _: self._pending.discard(d))

    def _disconnected_thd(self, cur, rack: racks.Rack) -> None:
        if racks.rack_disconnected_thd(cur, self.region_id, rack.id):
            log.info("rack {rack} disconnected", rack=rack.system_id)
            events.record_thd(cur, "RACK_DISCONNECTED", f"rack {rack.hostname} disconnected",
                              object_type="rack", object_id=rack.system_id)

    def connected_racks(self) -> list[str]:
        return sorted(self._by_rack)

    def client_for(self, system_id: str | None = None) -> RegionServerProtocol:
        """A connection to the named rack, or to any rack when None."""
        if system_id is None:
            candidates = [c for conns in self._by_rack.values() for c in conns]
        else:
            candidates = list(self._by_rack.get(system_id, []))
        if not candidates:
            raise NoRackConnected(system_id or "any rack")
        return random.choice(candidates)

    def one_connection_per_rack(self) -> list[RegionServerProtocol]:
        """A random live connection of each connected rack."""
        return [random.choice(conns) for conns in self._by_rack.values() if conns]

    def drop_rack(self, system_id: str) -> None:
        for conn in list(self._by_rack.get(system_id, [])):
            conn.transport.loseConnection()

    async def ping_all(self, timeout: float) -> None:
        """Echo every connection; drop those that do not answer in time."""
        alive: list[int] = []

        async def ping(conn: RegionServerProtocol) -> None:
            d = conn.callRemote(rack_commands.Echo, payload=b"")
            d.addTimeout(timeout, self.reactor)
            try:
                await d
                alive.append(conn.rack.id)
            except Exception as e:
                log.warn("rack {rack} did not answer a ping ({error}); dropping it",
                         rack=conn.rack.system_id, error=type(e).__name__)
                conn.transport.abortConnection()

        conns = [c for cs in self._by_rack.values() for c in cs]
        await defer.DeferredList([defer.Deferred.fromCoroutine(ping(c)) for c in conns])
        await self.db.run(racks.touch_racks_thd, sorted(set(alive)))

    async def flush(self) -> None:
        """Wait for pending disconnection records (used at shutdown)."""
        if self._pending:
            await defer.DeferredList(list(self._pending))


def advertised_rpc_host(listen_host: str, maas_url: str | None) -> str:
    """The host racks should dial for this region's RPC listener."""
    if listen_host not in ("0.0.0.0", "::", ""):
        return listen_host
    return (urlsplit(maas_url).hostname if maas_url else None) or socket.getfqdn()


def new_region_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}"
