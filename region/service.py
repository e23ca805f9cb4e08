"""The running region: a tree of Twisted services (database, listeners, timers, local rack)."""

from __future__ import annotations

import json
import os
import socket

import attrs
from twisted.application import service
from twisted.internet import defer, task, threads
from twisted.logger import Logger

from common import sdnotify, tls
from common.background_start import cancel_if_running, start_in_background
from common.procs import process_exists
from region import listeners
from region.api import listing_cache, make_site
from region.config import RegionConfig
from region.db import migrate, racks, secrets, users
from region.db.pool import Database
from region.embedded_pg import ClusterStart, EmbeddedPostgres, database_dsn
from region.embedded_pg_service import EmbeddedPostgresService
from region.local_rack import LocalRackProcess, LocalRackSettings
from region.metrics import RegionMetrics
from region.periodic import PeriodicService
from region.refresh_scheduler import RefreshScheduler
from region.rpc import RackRegistry, advertised_rpc_host, new_region_id
from region.rpc_limits import RpcLimits, raise_open_files_limit
from region.secretbox import SecretBox
from region.services import deploy, image_sync, images
from region.services.context import Context
from region.vmhosts import HostManager

log = Logger()

DEPLOY_CHECK_INTERVAL = 15.0  # seconds between looks at running deploys (timeouts, cloud-init via LXD)
IMAGE_SYNC_CHECK_INTERVAL = 60.0  # seconds between looks at whether an image sync is due
REVOCATION_SYNC_INTERVAL = 1.0  # seconds for a rack deleted through another region to be locked out here
BACKGROUND_DB_CONNECTIONS = 3  # periodic refreshes' own pool, apart from the one requests use


def _pid_alive(pid: int) -> bool:
    # A previous incarnation that had our PID is not us.
    return pid != os.getpid() and process_exists(pid)


def _loopback_if_wildcard(host: str) -> str:
    return host if host not in ("0.0.0.0", "::") else "127.0.0.1"


def load_or_create_ca_thd(cur, box: SecretBox) -> tls.KeyPair:
    def make() -> str:
        ca = tls.make_ca()
        return json.dumps({"key": ca.key_pem, "cert": ca.cert_pem})

    stored = json.loads(secrets.get_or_create_thd(cur, box, secrets.REGION_CA, make))
    return tls.KeyPair(stored["key"], stored["cert"])


@attrs.define(eq=False)
class _RegionPresence(service.Service):
    """This region's row in `region_processes` and the pool behind it.  On stop (after the
    listeners): the region's rack connections are dropped and recorded, the row removed,
    the pool closed."""

    db: Database
    rpc: RackRegistry
    region_id: str
    reactor: object

    def stopService(self) -> defer.Deferred:
        service.Service.stopService(self)
        return defer.Deferred.fromCoroutine(self._leave())

    async def _leave(self) -> None:
        for system_id in self.rpc.connected_racks():
            self.rpc.drop_rack(system_id)
        await task.deferLater(self.reactor, 0.05, lambda: None)
        await self.rpc.flush()
        try:
            await self.db.run(racks.unregister_region_thd, self.region_id)
        except Exception:
            log.failure("could not unregister this region")
        self.db.close()


@attrs.define(eq=False)
class RegionService(service.MultiService):
    """One region process.

    Start-up: database (embedded cluster first if configured) → migrations → secrets
    (region key, CA, enrolment secret) → then the child services: RPC listener, HTTP
    (and HTTPS) listener, heartbeat and refresh timers, local rack process → READY.
    `ready` fires once all are up.  Children stop one by one in reverse order.

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
    local_rack: LocalRackProcess | None = None
    ready: defer.Deferred = attrs.field(factory=defer.Deferred)
    hosts: HostManager | None = None
    prestarted: ClusterStart | None = None  # region.embedded_pg.prestart's, when the daemon began it
    metrics: RegionMetrics = attrs.field(factory=RegionMetrics)
    _starting: defer.Deferred | None = None
    _warming: defer.Deferred | None = None  # the listing cache filled in the background once ready

    def __attrs_post_init__(self) -> None:
        service.MultiService.__init__(self)

    def startService(self) -> None:
        # Children are added, and so started, once the database is ready.
        service.MultiService.startService(self)
        self._starting = start_in_background(self._start(), self._start_failed)

    def _start_failed(self, failure) -> None:
        log.failure("the region failed to start", failure)
        self.ready.errback(failure)

    async def _start(self) -> None:
        secret = await self._prepare()
        log.debug("region key, CA and enrolment secret loaded")
        await self._listen()
        if self.embedded is not None:
            # Not sooner: its I/O slowed the transactions before by ~0.1 s.  READY waits for it.
            self.embedded.flush_in_background()
        cfg = self.config
        databases = {"main": self.db}
        if cfg.vm_host_refresh_interval > 0:
            databases["background"] = Database(self.db.dsn, self.reactor, max_connections=BACKGROUND_DB_CONNECTIONS,
                                               prepared_statements=cfg.db_prepared_statements)
            databases["background"].start()
        self.hosts = HostManager(self.db, self.box, self.rpc, self.reactor, self.region_id, self._url(),
                                 cfg.vm_host_refresh_interval, background_db=databases.get("background"),
                                 metrics=self.metrics)
        scheduler = RefreshScheduler(self.hosts, self.reactor)
        self.metrics.bind(rpc=self.rpc, databases=databases, scheduler=scheduler,
                          machine_json_cache=lambda: listing_cache.cache_of(self.db))
        PeriodicService(cfg.heartbeat_interval, self._beat, "heartbeat", self.reactor).setServiceParent(self)
        PeriodicService(REVOCATION_SYNC_INTERVAL, self.rpc.sync_revocations, "rack revocation sync",
                        self.reactor).setServiceParent(self)
        deploy_check = min(DEPLOY_CHECK_INTERVAL, cfg.deploy_timeout / 4)
        PeriodicService(deploy_check, lambda: deploy.check_deploys(Context(self)), "deploy check",
                        self.reactor).setServiceParent(self)
        PeriodicService(images.SWEEP_INTERVAL, lambda: images.sweep_files(Context(self)), "image file sweep",
                        self.reactor).setServiceParent(self)
        if cfg.boot_source_url:
            PeriodicService(min(IMAGE_SYNC_CHECK_INTERVAL, cfg.boot_source_interval),
                            lambda: image_sync.sync_if_due(Context(self)), "image sync", self.reactor,
                            ).setServiceParent(self)
        if cfg.local_rack:
            self.local_rack = LocalRackProcess(self._local_rack_settings(secret), self.reactor)
            self.local_rack.setServiceParent(self)
        if cfg.vm_host_refresh_interval > 0:
            # After the local rack, so it stops first: its refreshes are cancelled, not cut off
            # by the rack going away (which would count as failures of the hosts).
            scheduler.setServiceParent(self)  # it closes the background pool when it stops
        if self.embedded is not None:
            await threads.deferToThread(self.embedded.wait_flushed)  # a new cluster is on disk before READY
        sdnotify.notify("READY=1\nSTATUS=region ready")
        log.info("region ready: API at {url}api/2.0/, web UI at {url}r/, RPC on port {rpc}", url=self._url(),
                 rpc=self.rpc_port)
        if not any(u.is_superuser for u in await self.db.run(users.list_users_thd)):
            log.info("no administrator yet: create one with `vmyard-region createadmin --username admin "
                     "--email admin@example.com` (it asks for the password), then `vmyard-region apikey "
                     "--username admin` for `vmyard login`")
        self.ready.callback(self)
        self._warming = start_in_background(self._warm_listing_cache(), self._warm_failed)

    async def _warm_listing_cache(self) -> None:
        rendered = await listing_cache.warm(self)
        log.debug("machine listing cache warmed: {count} machines rendered", count=rendered)

    def _warm_failed(self, failure) -> None:
        log.failure("warming the machine listing cache failed; listings render as they go", failure)

    async def _prepare(self) -> str:
        """Database, migrations and secrets; returns the enrolment secret."""
        cfg = self.config
        raise_open_files_limit()
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(cfg.data_dir, 0o711)
        dsn, self.embedded = database_dsn(cfg, self.prestarted)
        if self.embedded is not None:  # its start migrates too, as early as it can
            cluster = EmbeddedPostgresService(self.embedded, self.prestarted)
            cluster.setServiceParent(self)
            applied = await cluster.started
        else:
            applied = await threads.deferToThread(migrate.migrate, dsn)
        if applied:
            log.info("applied database migrations {versions}", versions=applied)
        self.box = SecretBox.load_or_create(cfg.key_file)
        self.db = Database(dsn, self.reactor, max_connections=cfg.db_pool_size,
                           prepared_statements=cfg.db_prepared_statements)
        self.db.start()
        self.rpc = RackRegistry(self.db, self.region_id, self.reactor,
                                RpcLimits(cfg.rpc_max_connections, cfg.rpc_max_connections_per_peer,
                                          cfg.rpc_handshake_timeout))
        self.rpc.on_deploy_progress = lambda *report: deploy.copy_progress(Context(self), *report)
        _RegionPresence(self.db, self.rpc, self.region_id, self.reactor).setServiceParent(self)
        await self.rpc.sync_revocations()
        self.ca = await self.db.run(load_or_create_ca_thd, self.box)
        secret = await self.db.run(secrets.get_or_create_thd, self.box, secrets.ENROLLMENT_SECRET,
                                   secrets.new_enrolment_secret)
        dead = await self.db.run(racks.forget_dead_local_regions_thd, socket.gethostname(), _pid_alive)
        if dead:
            log.info("forgot region processes that died on this machine: {ids}", ids=dead)
        await self.db.run(racks.register_region_thd, self.region_id, socket.gethostname(), os.getpid())
        return secret

    async def _listen(self) -> None:
        cfg = self.config
        rpc_factory = self.rpc.factory(listeners.rpc_tls_options(self.ca, self.rpc.is_revoked))
        rpc, rpc_bound = listeners.listener(listeners.rpc_endpoint(self.reactor, cfg), rpc_factory)
        rpc.setServiceParent(self)
        self.rpc_port = await rpc_bound
        await self.db.run(racks.set_rpc_endpoint_thd, self.region_id, advertised_rpc_host(cfg.rpc_host, cfg.maas_url),
                          self.rpc_port)
        site = make_site(self)
        http, http_bound = listeners.listener(listeners.http_endpoint(self.reactor, cfg), site)
        http.setServiceParent(self)
        self.http_port = await http_bound
        log.debug("HTTP listening on port {port}", port=self.http_port)
        if cfg.https_host is not None:
            https, https_bound = listeners.listener(listeners.https_endpoint(self.reactor, cfg, self.ca), site)
            https.setServiceParent(self)
            self.https_port = await https_bound

    def _url(self) -> str:
        if self.config.maas_url:
            return self.config.url
        return attrs.evolve(self.config, http_port=self.http_port).url

    def _local_rack_settings(self, secret: str) -> LocalRackSettings:
        cfg = self.config
        return LocalRackSettings(
            data_dir=cfg.data_dir / "rack",
            region_url=f"http://{_loopback_if_wildcard(cfg.http_host)}:{self.http_port}/MAAS/",
            rpc_endpoint=(_loopback_if_wildcard(cfg.rpc_host), self.rpc_port),
            secret=secret,
            log_level=cfg.log_level,
            log_format=cfg.log_format,
        )

    async def _beat(self) -> None:
        await self.db.run(racks.heartbeat_thd, self.region_id)
        await self.rpc.ping_all(timeout=10.0)

    def stopService(self) -> defer.Deferred:
        cancel_if_running(self._starting)
        cancel_if_running(self._warming)
        service.Service.stopService(self)
        return defer.Deferred.fromCoroutine(self._stop_children())

    async def _stop_children(self) -> None:
        # One by one, newest first: the rack and timers before the listeners, the
        # listeners before the database, the database before its embedded cluster.
        for child in reversed(list(self)):
            try:
                await defer.maybeDeferred(child.stopService)
            except Exception:
                log.failure("stopping {service} failed", service=type(child).__name__)
        log.info("region stopped")
