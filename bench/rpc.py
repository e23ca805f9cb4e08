"""Region -> rack host-operation benchmark: vmyard's real RPC path against a bare-AMP floor.

Run from the repository root:  python -m bench.rpc [--seconds 3 | --calls N] [--payload 100]

What is measured, in one process and one reactor, over 127.0.0.1 only:

* vmyard host call (the path every VM-host job takes, minus the hypervisor): the region's
  ``region.vmhosts.HostManager.power`` with a real ``HostTarget`` (RSA client certificate
  and key, pinned fingerprint) sends ``PowerVM`` over the real mutual-TLS connection: a
  throw-away CA from ``common.tls`` signs a region server certificate and a rack client
  certificate; the region listens with ``common.tlsopts.region_server_options`` and the
  rack dials with ``rack_client_options``.  The rack's real ``rack.rpc.RackClientProtocol``
  responder hands the call to its ``rack.hostops.HostOperations`` thread pool, which runs a
  no-op driver registered for the bench-only host type ``bench-noop``; the answer goes back
  the same way.  The rack's RegisterRack step is skipped (it needs the database); mutual TLS
  is checked before measuring.
* vmyard mTLS Echo: ``rack_commands.Echo`` on the same connection (transport and TLS only).
* floor (TCP): the same Echo between two bare ``amp.AMP`` instances over plain TCP.

For concurrency 1 (sequential) and 15 (that many callers sharing the one connection), each
call's latency is timed with ``time.perf_counter_ns``; p50/p99 and completed calls/s are
printed per variant with its ratio to the floor, and PASS/FAIL against the targets for the
host call (p50 <= 1 ms at concurrency 1, >= 3,000 calls/s at concurrency 15).  Exit status
is 1 when a target fails.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Awaitable, Callable

import attrs
from twisted.internet import defer, endpoints, protocol, task
from twisted.protocols import amp

from common import tls
from common.models import ComposeRequest, DiscoveredHost, DiscoveredVM, HostTarget, Project
from common.rpc.rack_commands import Echo
from common.tlsopts import peer_fingerprint, rack_client_options, region_server_options
from rack.hostops import HostOperations
from rack.rpc import RackClientProtocol
from region.rpc import RegionServerProtocol
from region.vmhosts import HostManager

HOST = "127.0.0.1"
BENCH_HOST_TYPE = "bench-noop"
CONCURRENCY = (1, 15)
WARMUP_CALLS = 200
TARGET_P50_NS = 1_000_000
TARGET_RPS = 3_000
HOST_CALL = "vmyard host call"
TLS_ECHO = "vmyard mTLS Echo"
FLOOR = "floor: bare AMP"


class NoopDriver:
    """A VM-host driver that does nothing: what is left to time is vmyard's own path."""

    def discover(self, target: HostTarget, password: str | None = None) -> DiscoveredHost:
        raise NotImplementedError

    def discover_projects(self, target: HostTarget, password: str | None = None) -> list[Project]:
        return []

    def delete_vm(self, target: HostTarget, instance_name: str) -> list[str]:
        return []

    def compose_vm(self, target: HostTarget, request: ComposeRequest) -> DiscoveredVM:
        raise NotImplementedError

    def power_state(self, target: HostTarget, instance_name: str) -> str:
        return "off"

    def power_on(self, target: HostTarget, instance_name: str) -> str:
        return "on"

    def power_off(self, target: HostTarget, instance_name: str) -> str:
        return "off"


@attrs.frozen
class BenchRackRow:
    """What HostManager reads of a connection's rack."""

    system_id: str
    hostname: str


@attrs.frozen
class BenchConnection:
    """A region-side rack connection as the registry hands it out (its rack row attached)."""

    protocol: RegionServerProtocol
    rack: BenchRackRow = BenchRackRow("bench-rack", "bench-rack.local")

    def callRemote(self, command, **arguments):
        return self.protocol.callRemote(command, **arguments)


class OneRack:
    """The region's rack registry, reduced to the one connection under test."""

    def __init__(self, connection: RegionServerProtocol) -> None:
        self.connection = BenchConnection(connection)

    def one_connection_per_rack(self) -> list[BenchConnection]:
        return [self.connection]


class BenchRackService:
    """What RackClientProtocol's host responders need of the rack service."""

    def __init__(self, reactor) -> None:
        self.hostops = HostOperations(reactor, {BENCH_HOST_TYPE: NoopDriver()})


class _Announce:
    """Server-side mixin: fire factory.ready on connect and factory.closed on loss."""

    def connectionMade(self):
        super().connectionMade()
        self.factory.ready.callback(self)

    def connectionLost(self, reason):
        super().connectionLost(reason)
        self.factory.closed.callback(None)


class BenchRegion(_Announce, RegionServerProtocol):
    def __init__(self):
        super().__init__(registry=None)  # only calls out; never serves RegisterRack here

    def connectionMade(self):
        # No registration deadline: this connection never registers (that needs the database).
        amp.AMP.connectionMade(self)
        self.factory.ready.callback(self)

    def handshakeCompleted(self):
        pass


def bench_rack_class(rack: BenchRackService) -> type[RackClientProtocol]:
    class BenchRack(RackClientProtocol):
        def __init__(self):
            super().__init__(rack=rack, index=0)

        # Skip RegisterRack (it needs the region's database) and the rack service hooks.
        connectionMade, connectionLost = amp.AMP.connectionMade, amp.AMP.connectionLost

    return BenchRack


class FloorServer(_Announce, amp.AMP):
    """Floor caller: a bare amp.AMP."""


class FloorClient(amp.AMP):
    @Echo.responder
    def echo(self, payload):
        return {"payload": payload}


class _ServerFactory(protocol.Factory):
    def __init__(self, proto_class):
        self.protocol = proto_class
        self.ready, self.closed = defer.Deferred(), defer.Deferred()


async def connect(server_ep, make_client_ep, server_class, client_class):
    """Listen, dial, and return (caller proto on the server side, client proto, port, factory)."""
    factory = _ServerFactory(server_class)
    port = await server_ep.listen(factory)
    client = await make_client_ep(port.getHost().port).connect(protocol.Factory.forProtocol(client_class))
    caller = await factory.ready
    return caller, client, port, factory


async def vmyard_pair(reactor, rack: BenchRackService):
    ca = tls.make_ca()

    def pair(name, server):
        key = tls.new_private_key()
        cert = tls.issue_certificate(ca, name, key.public_key(), dns_names=(name,), server=server)
        return tls.KeyPair(tls.key_to_pem(key), cert)

    region, rack_identity = pair(tls.REGION_SERVICE_NAME, True), pair("rackid", False)
    server_ep = endpoints.SSL4ServerEndpoint(
        reactor, 0, region_server_options(ca.cert_pem, region), interface=HOST)
    opts = rack_client_options(ca.cert_pem, rack_identity)

    def client_ep(port):
        return endpoints.wrapClientTLS(opts, endpoints.TCP4ClientEndpoint(reactor, HOST, port))

    conn = await connect(server_ep, client_ep, BenchRegion, bench_rack_class(rack))
    return conn, rack_identity.fingerprint


async def floor_pair(reactor):
    server_ep = endpoints.TCP4ServerEndpoint(reactor, 0, interface=HOST)
    return await connect(server_ep, lambda port: endpoints.TCP4ClientEndpoint(reactor, HOST, port),
                         FloorServer, FloorClient)


def bench_target() -> HostTarget:
    """A host target as the region sends it: a real client identity and a pinned server."""
    identity = tls.make_self_signed("vmyard-bench-host", kind="rsa")
    return HostTarget(type=BENCH_HOST_TYPE, address="10.0.0.1:8443", project="default",
                      cert_pem=identity.cert_pem, key_pem=identity.key_pem,
                      server_fingerprint="ab" * 32)


async def measure(call: Callable[[], Awaitable[object]], concurrency: int, seconds: float | None,
                  calls: int | None) -> tuple[list[int], int]:
    """Round trips with `concurrency` callers; returns (sorted latencies ns, elapsed ns)."""
    lat: list[int] = []
    now = time.perf_counter_ns
    deadline = now() + int(seconds * 1e9) if calls is None else None
    per_worker = None if calls is None else max(1, calls // concurrency)

    async def worker():
        done = 0
        while (now() < deadline) if per_worker is None else (done < per_worker):
            t = now()
            await call()
            lat.append(now() - t)
            done += 1

    t0 = now()
    await defer.gatherResults([defer.Deferred.fromCoroutine(worker()) for _ in range(concurrency)],
                              consumeErrors=True)
    elapsed = now() - t0
    lat.sort()
    return lat, elapsed


def echo_call(caller: amp.AMP, payload: bytes) -> Callable[[], Awaitable[object]]:
    async def call():
        answer = await caller.callRemote(Echo, payload=payload)
        if len(answer["payload"]) != len(payload):
            raise RuntimeError("echo returned a different payload")

    return call


def host_call(manager: HostManager, target: HostTarget) -> Callable[[], Awaitable[object]]:
    async def call():
        if await manager.power(target, "vm1", "query") != "off":
            raise RuntimeError("the no-op driver's answer did not come back")

    return call


def pct(sorted_ns, q):
    return sorted_ns[min(len(sorted_ns) - 1, int(q * len(sorted_ns)))]


def fmt_t(ns):
    return f"{ns / 1e3:,.0f} µs" if ns < 1_000_000 else f"{ns / 1e6:,.2f} ms"


def report(args, results: dict) -> bool:
    span = f"{args.calls:,} calls" if args.calls else f"{args.seconds:g} s"
    print(f"region -> rack round trips, Echo payload {args.payload} B, {span} per measurement, {HOST}")
    print(f"{'variant':<20}{'conc':>5}{'calls':>10}{'calls/s':>11}{'p50':>12}{'p99':>12}"
          f"{'p50/floor':>11}{'rps/floor':>11}")
    for conc in CONCURRENCY:
        floor = results[FLOOR, conc]
        for name in (FLOOR, TLS_ECHO, HOST_CALL):
            r = results[name, conc]
            print(f"{name:<20}{conc:>5}{r['calls']:>10,}{r['rps']:>11,.0f}"
                  f"{fmt_t(r['p50']):>12}{fmt_t(r['p99']):>12}"
                  f"{r['p50'] / floor['p50']:>10.2f}x{r['rps'] / floor['rps']:>10.2f}x")
    p50 = results[HOST_CALL, 1]["p50"]
    rps = results[HOST_CALL, 15]["rps"]
    checks = [(p50 <= TARGET_P50_NS, f"host call p50 at concurrency 1: {fmt_t(p50)} (target <= 1 ms)"),
              (rps >= TARGET_RPS, f"host calls/s at concurrency 15: {rps:,.0f} (target >= {TARGET_RPS:,})")]
    for ok, text in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {text}")
    return all(ok for ok, _ in checks)


async def run(reactor, args):
    payload = b"x" * args.payload
    rack = BenchRackService(reactor)
    (tls_caller, tls_client, tls_port, tls_factory), rack_fp = await vmyard_pair(reactor, rack)
    floor_caller, floor_client, floor_port, floor_factory = await floor_pair(reactor)
    manager = HostManager(None, None, OneRack(tls_caller), reactor, owner="bench",
                          region_url=f"http://{HOST}/MAAS/")
    variants = {FLOOR: echo_call(floor_caller, payload), TLS_ECHO: echo_call(tls_caller, payload),
                HOST_CALL: host_call(manager, bench_target())}
    try:
        for call in variants.values():  # completes the TLS handshake; warms every path
            await measure(call, 1, None, WARMUP_CALLS)
        if peer_fingerprint(tls_caller.transport) != rack_fp:
            raise RuntimeError("the region does not see the rack's client certificate: not mutual TLS")
        results = {}
        for conc in CONCURRENCY:  # alternate variants so drift hits all alike
            for name, call in variants.items():
                lat, elapsed = await measure(call, conc, args.seconds, args.calls)
                results[name, conc] = dict(calls=len(lat), rps=len(lat) * 1e9 / elapsed,
                                           p50=pct(lat, 0.50), p99=pct(lat, 0.99))
    finally:
        rack.hostops.stop()
        for client in (tls_client, floor_client):
            client.transport.loseConnection()
        await defer.DeferredList([tls_factory.closed, floor_factory.closed])
        await defer.DeferredList([tls_port.stopListening(), floor_port.stopListening()])
    return report(args, results)


async def main(reactor, argv):
    parser = argparse.ArgumentParser(prog="python -m bench.rpc", description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--seconds", type=float, default=3.0, help="duration of each measurement (default 3)")
    group.add_argument("--calls", type=int, help="fixed number of calls per measurement instead")
    parser.add_argument("--payload", type=int, default=100, help="Echo payload size in bytes (default 100)")
    args = parser.parse_args(argv)
    budget = 6 * args.seconds + 60 if args.calls is None else 300  # hard stop if anything hangs
    d = defer.Deferred.fromCoroutine(run(reactor, args))
    d.addTimeout(budget, reactor)
    start = time.monotonic()
    try:
        ok = await d
    except Exception:
        if time.monotonic() - start < budget:
            raise
        raise SystemExit(f"bench.rpc: no result within {budget:g} s (a call hung?); gave up") from None
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    task.react(main, (sys.argv[1:],))
