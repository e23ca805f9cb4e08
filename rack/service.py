"""The running rack: enrol once, then keep AMP-over-TLS connections to the region."""

from __future__ import annotations

import io
import json
import random
import socket
from pathlib import Path
from urllib.parse import urlsplit

import attrs
from twisted.application import internet, service
from twisted.internet import defer, endpoints, ssl, task
from twisted.logger import Logger
from twisted.web import client as webclient
from twisted.web.http_headers import Headers
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from common import tls
from common.background_start import cancel_if_running, start_in_background
from common.enrolment import ENROL_PATH, EnrolRequest, EnrolResponse
from common.rpc import region_commands
from common.rpc.wire import RegionEndpoint
from common.tlsopts import rack_client_options
from rack.hostops import HostOperations
from rack.rpc import RackClientFactory

log = Logger()


class EnrolmentRefused(RuntimeError):
    """The region said no (wrong secret); retrying will not help."""


@attrs.frozen
class RackSettings:
    data_dir: Path
    region_url: str  # http(s)://host:port/MAAS/
    secret: str | None = attrs.field(default=None, repr=False)
    connections: int = 2
    hostname: str = attrs.field(factory=socket.gethostname)
    # The region a rack runs inside knows its RPC endpoint better than the
    # identity saved at enrolment (its port may have changed since).
    rpc_endpoint: tuple[str, int] | None = None
    regions_poll_interval: float = 30.0  # seconds between asking for regions started since we connected


@attrs.frozen
class RackIdentity:
    """What enrolment gave us, kept in the data dir."""

    system_id: str
    rpc_host: str
    rpc_port: int
    ca_pem: str
    pair: tls.KeyPair

    @classmethod
    def load(cls, data_dir: Path) -> "RackIdentity | None":
        try:
            state = json.loads((data_dir / "rack.json").read_text())
            pair = tls.KeyPair((data_dir / "rack.key").read_text(), (data_dir / "rack.crt").read_text())
            ca = (data_dir / "ca.crt").read_text()
        except FileNotFoundError:
            return None
        return cls(state["system_id"], state["rpc_host"], state["rpc_port"], ca, pair)

    def save(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        tls.write_private(data_dir / "rack.key", self.pair.key_pem)
        tls.write_private(data_dir / "rack.crt", self.pair.cert_pem)
        tls.write_private(data_dir / "ca.crt", self.ca_pem)
        state = {"system_id": self.system_id, "rpc_host": self.rpc_host, "rpc_port": self.rpc_port}
        tls.write_private(data_dir / "rack.json", json.dumps(state, indent=2))


async def enrol(reactor, settings: RackSettings) -> RackIdentity:
    """One enrolment attempt.  Raises EnrolmentRefused on a wrong secret."""
    if not settings.secret:
        raise EnrolmentRefused("no enrollment secret given (--secret-file)")
    key_pem, csr_pem = tls.make_csr(settings.hostname)
    request = EnrolRequest.make(settings.secret, settings.hostname, csr_pem)
    url = settings.region_url.rstrip("/").removesuffix("/MAAS") + ENROL_PATH
    agent = webclient.Agent(reactor, contextFactory=_EnrolmentTLSPolicy(), connectTimeout=10)
    body = json.dumps(attrs.asdict(request)).encode()
    response = await agent.request(
        b"POST", url.encode(), Headers({b"Content-Type": [b"application/json"]}),
        webclient.FileBodyProducer(io.BytesIO(body)),
    )
    payload = await webclient.readBody(response)
    if response.code == 403:
        raise EnrolmentRefused(payload.decode(errors="replace"))
    if response.code != 200:
        raise RuntimeError(f"enrolment failed: HTTP {response.code}: {payload.decode(errors='replace')}")
    reply = EnrolResponse(**json.loads(payload))
    if not reply.proves(settings.secret, request):
        raise EnrolmentRefused("the region's answer is not signed with our enrollment secret: "
                               "wrong region URL, or something in between tampered with it")
    tls.check_pair(reply.certificate, key_pem)
    host = urlsplit(settings.region_url).hostname or "127.0.0.1"
    return RackIdentity(reply.system_id, host, reply.rpc_port, reply.ca, tls.KeyPair(key_pem, reply.certificate))


@implementer(IPolicyForHTTPS)
class _EnrolmentTLSPolicy:
    """Enrolment over https:// does not rely on the web PKI: the HMAC proofs
    authenticate both sides (common/enrolment.py)."""

    def creatorForNetloc(self, hostname, port):
        return ssl.CertificateOptions(verify=False)


@attrs.define(eq=False)
class RackService(service.MultiService):
    """A rack process.

    `connected` fires the first time a connection to the region has
    registered; `fatal` fails when the region disowns this rack (it was
    deleted), after which retrying is pointless.  After that, each `ClientService` child keeps one connection
    up, reconnecting with jittered backoff whenever it drops (for example while
    the region restarts).  `connections` of them per region: the first region's answer
    lists every live region, and the rack connects to the ones it does not know yet (and
    asks again every `regions_poll_interval` seconds).

    :ivar identity: set once enrolled.
    """

    settings: RackSettings
    reactor: object
    identity: RackIdentity | None = None
    connected: defer.Deferred = attrs.field(factory=defer.Deferred)
    fatal: defer.Deferred = attrs.field(factory=defer.Deferred)
    protocols: list = attrs.field(factory=list)
    hostops: HostOperations = attrs.field(default=None)
    _starting: defer.Deferred | None = None
    _endpoints: set[tuple[str, int]] = attrs.field(factory=set)  # regions' RPC listeners we connect to
    _regions: set[str] = attrs.field(factory=set)  # region processes we have registered with

    def __attrs_post_init__(self) -> None:
        service.MultiService.__init__(self)
        if self.hostops is None:
            self.hostops = HostOperations(self.reactor)

    def startService(self) -> None:
        service.MultiService.startService(self)
        self._starting = start_in_background(self._start(), self._start_failed)

    def _start_failed(self, failure) -> None:
        log.failure("the rack failed to start", failure)
        if not self.connected.called:
            self.connected.errback(failure)

    async def _start(self) -> None:
        self.identity = RackIdentity.load(self.settings.data_dir)
        delay = 0.5
        while self.identity is None and self.running:
            try:
                identity = await enrol(self.reactor, self.settings)
            except EnrolmentRefused:
                raise
            except Exception as e:
                log.warn("enrolment with {url} failed ({error}); retrying in {delay:.1f}s",
                         url=self.settings.region_url, error=str(e) or type(e).__name__, delay=delay)
                await task.deferLater(self.reactor, delay, lambda: None)
                delay = min(delay * 2, 30.0)
                continue
            identity.save(self.settings.data_dir)
            self.identity = identity
            log.info("enrolled with the region as {system_id}", system_id=identity.system_id)
        if not self.running:
            return
        if self.settings.rpc_endpoint is not None:
            host, port = self.settings.rpc_endpoint
            self.identity = attrs.evolve(self.identity, rpc_host=host, rpc_port=port)
        self._connect_to(self.identity.rpc_host, self.identity.rpc_port)
        poll = internet.TimerService(self.settings.regions_poll_interval,
                                     lambda: defer.ensureDeferred(self._poll_regions()))
        poll.clock = self.reactor
        poll.setServiceParent(self)

    def _connect_to(self, host: str, port: int) -> None:
        """Keep `connections` connections to the region listening at host:port."""
        self._endpoints.add((host, port))
        options = rack_client_options(self.identity.ca_pem, self.identity.pair)
        tcp = endpoints.HostnameEndpoint(self.reactor, host, port, timeout=10)
        endpoint = endpoints.wrapClientTLS(options, tcp)
        for index in range(self.settings.connections):
            factory = RackClientFactory(self, index)
            client = internet.ClientService(
                endpoint, factory, retryPolicy=internet.backoffPolicy(initialDelay=0.5, factor=1.5, maxDelay=10.0),
                clock=self.reactor,
            )
            client.setServiceParent(self)

    def registered(self, protocol) -> None:
        self.protocols.append(protocol)
        self._regions.add(protocol.region.region_id)
        self._learn(protocol.region.regions)
        if not self.connected.called:
            self.connected.callback(self)

    def _learn(self, regions: list[RegionEndpoint]) -> None:
        """Connect to every region too, so losing one region leaves the others served."""
        for region in regions:
            if region.region_id not in self._regions and (region.host, region.port) not in self._endpoints:
                log.info("connecting to region {region} at {host}:{port} too", region=region.region_id,
                         host=region.host, port=region.port)
                self._connect_to(region.host, region.port)

    async def _poll_regions(self) -> None:
        """Ask one region for the live ones, to find regions started after we connected."""
        if not self.protocols:
            return
        try:
            answer = await random.choice(self.protocols).callRemote(region_commands.ListRegions)
        except Exception as e:
            log.debug("asking for the live regions failed: {error}", error=str(e) or type(e).__name__)
            return
        self._learn(answer["regions"])

    def disowned(self, reason: str) -> None:
        if not self.fatal.called:
            self.fatal.errback(EnrolmentRefused(reason))

    def lost(self, protocol) -> None:
        if protocol in self.protocols:
            self.protocols.remove(protocol)

    def stopService(self) -> defer.Deferred:
        cancel_if_running(self._starting)
        d = service.MultiService.stopService(self)
        d.addBoth(lambda result: (self.hostops.stop(), result)[1])
        return d
