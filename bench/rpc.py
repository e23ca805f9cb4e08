"""Region -> rack AMP round-trip benchmark: vmyard mutual TLS against a raw AMP baseline.

Run from the repository root:  python -m bench.rpc [--seconds 3 | --calls N] [--payload 100]

What is measured, in one process and one reactor, over 127.0.0.1 only:

* vmyard (mTLS): a throw-away CA from ``common.tls`` signs a region server
  certificate and a rack client certificate; the region listens with
  ``common.tlsopts.region_server_options`` (SSL4ServerEndpoint, port 0) and the
  rack dials with ``rack_client_options`` (wrapClientTLS).  As in
  ``RackRegistry.ping_all``, the *region* is the caller: the accepted
  ``region.rpc.RegionServerProtocol`` sends ``rack_commands.Echo`` and
  ``rack.rpc.RackClientProtocol``'s real responder answers it.  The rack's
  RegisterRack step is skipped (it needs the database); the handshake is
  completed by warm-up calls and mutual TLS is checked before measuring.
* baseline (TCP): the same Echo command over plain TCP between two bare
  ``amp.AMP`` instances, caller and responder the same way round.

For concurrency 1 (sequential) and 15 (that many callers sharing the one
connection), each call's latency is timed with ``time.perf_counter_ns``;
p50/p99 and completed calls/s are printed per variant, with vmyard/baseline
ratios and PASS/FAIL against the targets (p50 <= 1 ms at concurrency 1,
>= 3,000 calls/s at concurrency 15).  Exit status is 1 when a target fails.
"""

from __future__ import annotations

import argparse
import sys
import time

from twisted.internet import defer, endpoints, protocol, task
from twisted.protocols import amp

from common import tls
from common.rpc.rack_commands import Echo
from common.tlsopts import peer_fingerprint, rack_client_options, region_server_options
from rack.rpc import RackClientProtocol
from region.rpc import RegionServerProtocol

HOST = "127.0.0.1"
CONCURRENCY = (1, 15)
WARMUP_CALLS = 200
TARGET_P50_NS = 1_000_000
TARGET_RPS = 3_000


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


class BenchRack(RackClientProtocol):
    def __init__(self):
        super().__init__(rack=None, index=0)

    # Skip RegisterRack (it needs the region's database) and the rack service hooks.
    connectionMade, connectionLost = amp.AMP.connectionMade, amp.AMP.connectionLost


class BaseServer(_Announce, amp.AMP):
    """Baseline caller: a bare amp.AMP."""


class BaseClient(amp.AMP):
    @Echo.responder
    def echo(self, payload):
        return {"payload": payload}


class _ServerFactory(protocol.Factory):
    def __init__(self, proto_class):
        self.protocol = proto_class
        self.ready, self.closed = defer.Deferred(), defer.Deferred()


async def connect(reactor, server_ep, make_client_ep, server_class, client_class):
    """Listen, dial, and return (caller proto on the server side, client proto, port, factory)."""
    factory = _ServerFactory(server_class)
    port = await server_ep.listen(factory)
    client = await make_client_ep(port.getHost().port).connect(protocol.Factory.forProtocol(client_class))
    caller = await factory.ready
    return caller, client, port, factory


async def vmyard_pair(reactor):
    ca = tls.make_ca()

    def pair(name, server):
        key = tls.new_private_key()
        cert = tls.issue_certificate(ca, name, key.public_key(), dns_names=(name,), server=server)
        return tls.KeyPair(tls.key_to_pem(key), cert)

    region, rack = pair(tls.REGION_SERVICE_NAME, True), pair("rackid", False)
    server_ep = endpoints.SSL4ServerEndpoint(
        reactor, 0, region_server_options(ca.cert_pem, region), interface=HOST)
    opts = rack_client_options(ca.cert_pem, rack)

    def client_ep(port):
        return endpoints.wrapClientTLS(opts, endpoints.TCP4ClientEndpoint(reactor, HOST, port))

    conn = await connect(reactor, server_ep, client_ep, BenchRegion, BenchRack)
    return conn, rack.fingerprint


async def baseline_pair(reactor):
    server_ep = endpoints.TCP4ServerEndpoint(reactor, 0, interface=HOST)
    return await connect(reactor, server_ep, lambda port: endpoints.TCP4ClientEndpoint(reactor, HOST, port),
                         BaseServer, BaseClient)


async def measure(caller, payload, concurrency, seconds, calls):
    """Round trips with `concurrency` callers; returns (sorted latencies ns, elapsed ns)."""
    lat: list[int] = []
    now = time.perf_counter_ns
    deadline = now() + int(seconds * 1e9) if calls is None else None
    per_worker = None if calls is None else max(1, calls // concurrency)

    async def worker():
        done = 0
        while (now() < deadline) if per_worker is None else (done < per_worker):
            t = now()
            answer = await caller.callRemote(Echo, payload=payload)
            lat.append(now() - t)
            done += 1
            if len(answer["payload"]) != len(payload):
                raise RuntimeError("echo returned a different payload")

    t0 = now()
    await defer.gatherResults([defer.Deferred.fromCoroutine(worker()) for _ in range(concurrency)],
                              consumeErrors=True)
    elapsed = now() - t0
    lat.sort()
    return lat, elapsed


def pct(sorted_ns, q):
    return sorted_ns[min(len(sorted_ns) - 1, int(q * len(sorted_ns)))]


def fmt_t(ns):
    return f"{ns / 1e3:,.0f} µs" if ns < 1_000_000 else f"{ns / 1e6:,.2f} ms"


async def run(reactor, args):
    payload = b"x" * args.payload
    (vm_caller, vm_client, vm_port, vm_factory), rack_fp = await vmyard_pair(reactor)
    base_caller, base_client, base_port, base_factory = await baseline_pair(reactor)
    variants = {"baseline TCP": base_caller, "vmyard mTLS": vm_caller}
    try:
        for caller in variants.values():  # completes the TLS handshake; warms both paths
            await measure(caller, payload, 1, None, WARMUP_CALLS)
        if peer_fingerprint(vm_caller.transport) != rack_fp:
            raise RuntimeError("the region does not see the rack's client certificate: not mutual TLS")
        results = {}
        for conc in CONCURRENCY:  # alternate variants so drift hits both alike
            for name, caller in variants.items():
                lat, elapsed = await measure(caller, payload, conc, args.seconds, args.calls)
                results[name, conc] = dict(calls=len(lat), rps=len(lat) * 1e9 / elapsed,
                                           p50=pct(lat, 0.50), p99=pct(lat, 0.99))
    finally:
        for client in (vm_client, base_client):
            client.transport.loseConnection()
        await defer.DeferredList([vm_factory.closed, base_factory.closed])
        await defer.DeferredList([vm_port.stopListening(), base_port.stopListening()])

    span = f"{args.calls:,} calls" if args.calls else f"{args.seconds:g} s"
    print(f"region -> rack AMP Echo round trips, payload {args.payload} B, {span} per measurement, {HOST}")
    print(f"{'variant':<20}{'conc':>5}{'calls':>10}{'calls/s':>11}{'p50':>12}{'p99':>12}")
    for conc in CONCURRENCY:
        for name in variants:
            r = results[name, conc]
            print(f"{name:<20}{conc:>5}{r['calls']:>10,}{r['rps']:>11,.0f}"
                  f"{fmt_t(r['p50']):>12}{fmt_t(r['p99']):>12}")
        v, b = results["vmyard mTLS", conc], results["baseline TCP", conc]
        print(f"{'ratio vmyard/base':<20}{conc:>5}{'':>10}{v['rps'] / b['rps']:>10.2f}x"
              f"{v['p50'] / b['p50']:>11.2f}x{v['p99'] / b['p99']:>11.2f}x")
    p50 = results["vmyard mTLS", 1]["p50"]
    rps = results["vmyard mTLS", 15]["rps"]
    checks = [(p50 <= TARGET_P50_NS, f"vmyard p50 at concurrency 1: {fmt_t(p50)} (target <= 1 ms)"),
              (rps >= TARGET_RPS, f"vmyard calls/s at concurrency 15: {rps:,.0f} (target >= {TARGET_RPS:,})")]
    for ok, text in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {text}")
    return all(ok for ok, _ in checks)


async def main(reactor, argv):
    parser = argparse.ArgumentParser(prog="python -m bench.rpc", description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--seconds", type=float, default=3.0, help="duration of each measurement (default 3)")
    group.add_argument("--calls", type=int, help="fixed number of calls per measurement instead")
    parser.add_argument("--payload", type=int, default=100, help="Echo payload size in bytes (default 100)")
    args = parser.parse_args(argv)
    budget = 4 * args.seconds + 60 if args.calls is None else 300  # hard stop if anything hangs
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
