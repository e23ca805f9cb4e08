"""The running region: database, HTTP API, RPC listener, heartbeat, local rack."""

from __future__ import annotations

import json
import os
import socket

import attrs
from twisted.application import service
from twisted.internet import defer, endpoints, ssl, task, threads
from twisted.logger import Logger
from twisted.web import resource, server

from common import sdnotify, tls
from common.procs import process_exists
from common.tlsopts import region_server_options
from region.api import (
    account_handlers,
    core_handlers,
    describe,
    machine_handlers,
    network_handlers,
    subnet_handlers,
    tag_handlers,
    vmhost_handlers,
    zone_handlers,
)
from region.api.site import API_PREFIX, RouterResource
from region.config import RegionConfig
from region.db import migrate, racks, secrets, users
from region.db.pool import Database
from region.embedded_pg import EmbeddedPostgres
from region.enrol import EnrolHandler, new_enrolment_secret
from region.rpc import RackRegistry, new_region_id
from region.secretbox import SecretBox
from region.vmhosts import HostManager

log = Logger()

API_HANDLERS = [
    describe.DescribeHandler,
    core_handlers.VersionHandler,
    core_handlers.UsersHandler,
    core_handlers.UserHandler,
    account_handlers.AccountHandler,
    tag_handlers.TagsHandler,
    tag_handlers.TagHandler,
    core_handlers.RackControllersHandler,
    core_handlers.RackControllerHandler,
    zone_handlers.ZonesHandler,
    zone_handlers.ZoneHandler,
    zone_handlers.ResourcePoolsHandler,
    zone_handlers.ResourcePoolHandler,
    zone_handlers.ResourcePoolsAliasHandler,
    zone_handlers.ResourcePoolAliasHandler,
    network_handlers.FabricsHandler,
    network_handlers.FabricHandler,
    network_handlers.FabricVlansHandler,
    network_handlers.FabricVlanHandler,
    network_handlers.VlanHandler,
    network_handlers.SpacesHandler,
    network_handlers.SpaceHandler,
    subnet_handlers.SubnetsHandler,
    subnet_handlers.SubnetHandler,
    subnet_handlers.IPRangesHandler,
    subnet_handlers.IPRangeHandler,
    subnet_handlers.VmHostInterfacesHandler,
    subnet_handlers.VmHostInterfaceHandler,
    vmhost_handlers.VmHostsHandler,
    vmhost_handlers.VmHostHandler,
    vmhost_handlers.PodsHandler,
    vmhost_handlers.PodHandler,
    machine_handlers.MachinesHandler,
    machine_handlers.MachineHandler,
]
CERTIFICATE_PREFIX = "/MAAS/vmhost-certificate/"


def _pid_alive(pid: int) -> bool:
    # A previous incarnation that had our PID is not us.
    return pid != os.getpid() and process_exists(pid)


def database_dsn(config: RegionConfig) -> tuple[str, EmbeddedPostgres | None]:
    """The DSN to use and, for the embedded default, the cluster behind it."""
    if config.database_dsn:
        return config.database_dsn, None
    pg = EmbeddedPostgres(config.data_dir)
    return pg.dsn, pg


def load_or_create_ca_thd(cur, box: SecretBox) -> tls.KeyPair:
    def make() -> str:
        ca = tls.make_ca()
        return json.dumps({"key": ca.key_pem, "cert": ca.cert_pem})

    stored = json.loads(secrets.get_or_create_thd(cur, box, secrets.REGION_CA, make))
    return tls.KeyPair(stored["key"], stored["cert"])


class _Root(resource.Resource):
    """Routes by path prefix: the API, rack enrolment, VM-host certificates."""

    def __init__(self, routes: dict[str, resource.Resource]) -> None:
        super().__init__()
        self.routes = [(prefix.encode(), res) for prefix, res in routes.items()]

    def getChild(self, path: bytes, request: server.Request) -> resource.Resource:
        for prefix, res in self.routes:
            if request.path.startswith(prefix):
                return res
        return resource.NoResource("No such page: try /MAAS/api/2.0/version/")


@attrs.define(eq=False)
class RegionService(service.Service):
    """One region process.

    Start-up order: database (embedded cluster first if configured) →
    migrations → secrets (region key, CA, enrolment secret) → RPC listener →
    HTTP listener → local rack → READY.  `ready` fires once all are up.

    :ivar rpc_port: the bound RPC port (differs from config when it was 0).
    :ivar http_port: the bound HTTP port.
    """

    config: RegionConfig
    reactor: object
    db: Database | None = None
    box: SecretBox | None = None
    ca: tls.KeyPair | None = None
    rpc: RackRegistry | None = None
    region_id: str = attrs.field(factory=new_region_id)
    rpc_port: int = 0
    http_port: int = 0
    https_port: int = 0
    embedded: EmbeddedPostgres | None = None
    local_rack: object = None
    ready: defer.Deferred = attrs.field(factory=defer.Deferred)
    _listeners: list = attrs.field(factory=list)
    _heartbeat: task.LoopingCall | None = None
    hosts: HostManager | None = None
    _refresher: task.LoopingCall | None = None
    _loops_done: list = attrs.field(factory=list)

    def startService(self) -> None:
        super().startService()
        d = defer.Deferred.fromCoroutine(self._start())
        d.addErrback(self._start_failed)

    def _start_failed(self, failure) -> None:
        log.failure("the region failed to start", failure)
        self.ready.errback(failure)

    async def _start(self) -> None:
        cfg = self.config
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(cfg.data_dir, 0o711)
        dsn, self.embedded = database_dsn(cfg)
        if self.embedded is not None:
            await threads.deferToThread(self.embedded.start)
        applied = await threads.deferToThread(migrate.migrate, dsn)
        if applied:
            log.info("applied database migrations {versions}", versions=applied)
        self.box = SecretBox.load_or_create(cfg.key_file)
        self.db = Database(dsn, self.reactor, max_connections=cfg.db_pool_size)
        self.db.start()
        self.ca = await self.db.run(load_or_create_ca_thd, self.box)
        await self.db.run(secrets.get_or_create_thd, self.box, secrets.ENROLLMENT_SECRET, new_enrolment_secret)
        dead = await self.db.run(racks.forget_dead_local_regions_thd, socket.gethostname(), _pid_alive)
        if dead:
            log.info("forgot region processes that died on this machine: {ids}", ids=dead)
        await self.db.run(racks.register_region_thd, self.region_id, socket.gethostname(), os.getpid())
        self.rpc = RackRegistry(self.db, self.region_id, self.reactor)
        await self._listen_rpc()
        await self._listen_http()
        self.hosts = HostManager(self.db, self.box, self.rpc, self.reactor, self.region_id, self._url(),
                                 cfg.vm_host_refresh_interval)
        self._heartbeat = task.LoopingCall(self._beat)
        self._heartbeat.clock = self.reactor
        self._loops_done.append(self._heartbeat.start(cfg.heartbeat_interval, now=False))
        if cfg.vm_host_refresh_interval > 0:
            self._refresher = task.LoopingCall(self._refresh_hosts)
            self._refresher.clock = self.reactor
            self._loops_done.append(self._refresher.start(min(5.0, cfg.vm_host_refresh_interval / 4), now=False))
        if cfg.local_rack:
            await self._start_local_rack()
        sdnotify.notify("READY=1\nSTATUS=region ready")
        log.info("region ready: API at {url}api/2.0/, RPC on port {rpc}", url=self._url(), rpc=self.rpc_port)
        if not any(u.is_superuser for u in await self.db.run(users.list_users_thd)):
            log.info("no administrator yet: create one with `vmyard-region createadmin --username admin "
                     "--password PASSWORD --email admin@example.com`, then `vmyard-region apikey "
                     "--username admin` for `vmyard login`")
        self.ready.callback(self)

    def _url(self) -> str:
        if self.config.maas_url:
            return self.config.url
        return attrs.evolve(self.config, http_port=self.http_port).url

    async def _listen_rpc(self) -> None:
        cfg = self.config
        server_pair_key = tls.new_private_key()
        cert = tls.issue_certificate(self.ca, tls.REGION_SERVICE_NAME, server_pair_key.public_key(),
                                     server=True, days=365)
        options = region_server_options(self.ca.cert_pem, tls.KeyPair(tls.key_to_pem(server_pair_key), cert))
        ep = endpoints.SSL4ServerEndpoint(self.reactor, cfg.rpc_port, options, interface=cfg.rpc_host)
        port = await ep.listen(self.rpc.factory())
        self._listeners.append(port)
        self.rpc_port = port.getHost().port

    async def _listen_http(self) -> None:
        cfg = self.config
        site = server.Site(_Root({
            API_PREFIX: RouterResource(self, API_HANDLERS, API_PREFIX),
            "/MAAS/rpc/": RouterResource(self, [EnrolHandler], "/MAAS/rpc/"),
            CERTIFICATE_PREFIX: RouterResource(self, [vmhost_handlers.CertificateHandler], CERTIFICATE_PREFIX),
            account_handlers.ACCOUNTS_PREFIX: RouterResource(self, [account_handlers.AuthenticateHandler],
                                                             account_handlers.ACCOUNTS_PREFIX),
        }))
        site.displayTracebacks = False
        site.noisy = False
        ep = endpoints.TCP4ServerEndpoint(self.reactor, cfg.http_port, interface=cfg.http_host) \
            if ":" not in cfg.http_host else endpoints.TCP6ServerEndpoint(self.reactor, cfg.http_port,
                                                                          interface=cfg.http_host)
        port = await ep.listen(site)
        self._listeners.append(port)
        self.http_port = port.getHost().port
        if cfg.https_host is not None:
            ep = endpoints.SSL4ServerEndpoint(self.reactor, cfg.https_port, self._https_options(),
                                              interface=cfg.https_host)
            port = await ep.listen(site)
            self._listeners.append(port)
            self.https_port = port.getHost().port

    def _https_options(self) -> ssl.CertificateOptions:
        cfg = self.config
        if cfg.tls_cert_file:
            pair = tls.KeyPair(cfg.tls_key_file.read_text(), cfg.tls_cert_file.read_text())
            tls.check_pair(pair.cert_pem, pair.key_pem)
        else:
            key = tls.new_private_key()
            names = tuple(dict.fromkeys([socket.getfqdn(), socket.gethostname(), "localhost"]))
            cert = tls.issue_certificate(self.ca, names[0], key.public_key(), dns_names=names, server=True,
                                         days=365)
            pair = tls.KeyPair(tls.key_to_pem(key), cert)
        priv = ssl.PrivateCertificate.loadPEM(pair.key_pem + "\n" + pair.cert_pem)
        return ssl.CertificateOptions(privateKey=priv.privateKey.original, certificate=priv.original,
                                      raiseMinimumTo=ssl.TLSVersion.TLSv1_2)

    async def _start_local_rack(self) -> None:
        from rack.service import RackService, RackSettings

        secret = await self.db.run(secrets.get_thd, self.box, secrets.ENROLLMENT_SECRET)
        host = self.config.http_host if self.config.http_host not in ("0.0.0.0", "::") else "127.0.0.1"
        settings = RackSettings(
            data_dir=self.config.data_dir / "rack",
            region_url=f"http://{host}:{self.http_port}/MAAS/",
            secret=secret,
            rpc_endpoint=(self.config.rpc_host if self.config.rpc_host not in ("0.0.0.0", "::") else "127.0.0.1",
                          self.rpc_port),
        )
        self.local_rack = RackService(settings, self.reactor)
        self.local_rack.startService()

    async def _beat(self) -> None:
        try:
            await self.db.run(racks.heartbeat_thd, self.region_id)
            await self.rpc.ping_all(timeout=10.0)
        except Exception:
            log.failure("heartbeat failed")

    async def _refresh_hosts(self) -> None:
        try:
            await self.hosts.refresh_due()
        except Exception:
            log.failure("periodic VM host refresh failed")

    def stopService(self) -> defer.Deferred:
        super().stopService()
        return defer.Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        if self.local_rack is not None:
            await self.local_rack.stopService()
        for loop in (self._heartbeat, self._refresher):
            if loop is not None and loop.running:
                loop.stop()
        await defer.DeferredList(self._loops_done)  # a tick in progress finishes first
        for port in self._listeners:
            await port.stopListening()
        if self.rpc is not None:
            for system_id in self.rpc.connected_racks():
                self.rpc.drop_rack(system_id)
            await task.deferLater(self.reactor, 0.05, lambda: None)
            await self.rpc.flush()
        if self.db is not None:
            try:
                await self.db.run(racks.unregister_region_thd, self.region_id)
            except Exception:
                log.failure("could not unregister this region")
            self.db.close()
        if self.embedded is not None:  # the cluster in our data dir is ours to stop
            await threads.deferToThread(self.embedded.stop)
        log.info("region stopped")
