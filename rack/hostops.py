"""Runs VM-host driver calls for the region, off the reactor, in bounded pools: one for
user work (compose, delete, power, deploy, on-demand refresh) and one for periodic
discovery, so a crowd of hung hosts being refreshed never queues a user's call."""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet import threads
from twisted.logger import Logger

from common.hosterrors import DriverError, UnknownHostType
from common.threadpools import DaemonThreadPool
from common.logsafe import loggable
from common.models import CloudInitData, ComposeRequest, DiscoveredHost, DiscoveredVM, HostTarget, ImageRef
from rack import faults
from rack.drivers.base import CopyProgress, VMHostDriver

log = Logger()


def default_drivers() -> dict[str, VMHostDriver]:
    from rack.drivers.lxd import LXDDriver
    from rack.drivers.lxd_tls import sweep_stale_cert_dirs

    from rack.drivers.virsh import VirshDriver

    for path in sweep_stale_cert_dirs():
        log.info("removed client certificate files left by a rack that died: {path}", path=path)
    return {"lxd": LXDDriver(), "virsh": VirshDriver()}


class HostOperations:
    """Driver calls with at most `max_threads` user calls and `background_threads` periodic
    discoveries running at once on this rack.

    Driver errors are re-raised as they are (they are AMP errors); anything
    else is logged with its traceback and reported as a plain DriverError so
    the region never sees a bare "unhandled error".
    """

    def __init__(self, reactor, drivers: dict[str, VMHostDriver] | None = None,
                 max_threads: int = 8, background_threads: int = 32) -> None:
        self.reactor = reactor
        self.drivers = drivers if drivers is not None else default_drivers()
        self.pool = DaemonThreadPool(minthreads=0, maxthreads=max_threads, name="vmyard-hostops")
        # Periodic discoveries mostly wait on the network (a hung host holds a thread for
        # the whole connect timeout), so this pool is wider; the region bounds what it sends.
        self.background_pool = DaemonThreadPool(minthreads=0, maxthreads=background_threads,
                                                name="vmyard-hostops-background")

    def _driver(self, host_type: str) -> VMHostDriver:
        try:
            return self.drivers[host_type]
        except KeyError:
            raise UnknownHostType(f"this rack has no driver for VM hosts of type {host_type!r}") from None

    async def _run(self, what: str, target: HostTarget, fn: Callable[..., Any], *args,
                   background: bool = False) -> Any:
        """`fn(target, *args)` in the user pool, or the background one."""
        pool = self.background_pool if background else self.pool
        if not pool.started:
            pool.start()
        address = loggable(target.address)  # a user's power_address, and so is the error quoting it
        log.debug("{what} {address}", what=what, address=address)
        try:
            return await threads.deferToThreadPool(self.reactor, pool, fn, target, *args)
        except DriverError as e:
            log.warn("{what} {address} failed: {error}", what=what, address=address, error=loggable(str(e), limit=2000))
            raise
        except Exception as e:
            log.failure("{what} {address} failed unexpectedly", what=what, address=address)
            raise DriverError(f"{what} failed on the rack: {type(e).__name__}: {e}") from None

    async def discover(self, target: HostTarget, password: str | None, background: bool = False) -> DiscoveredHost:
        driver = self._driver(target.type)
        return await self._run("discovering VM host", target, driver.discover, password or None,
                               background=background)

    async def delete_vm(self, target: HostTarget, instance_name: str, root_disk_only: bool = False) -> list[str]:
        driver = self._driver(target.type)
        return await self._run(f"deleting VM {instance_name} on", target, driver.delete_vm, instance_name,
                               root_disk_only)

    async def compose_vm(self, target: HostTarget, request: ComposeRequest) -> DiscoveredVM:
        driver = self._driver(target.type)
        vm = await self._run(f"composing VM {request.instance_name} on", target, driver.compose_vm, request)
        faults.step(faults.COMPOSE_AFTER_CREATE)
        return vm

    async def power(self, target: HostTarget, instance_name: str, action: str) -> str:
        """`action` is "on", "off" or "query"; returns the power state afterwards."""
        driver = self._driver(target.type)
        methods = {"on": driver.power_on, "off": driver.power_off, "query": driver.power_state}
        if action not in methods:
            raise DriverError(f"unknown power action {action!r} (on, off or query)")
        return await self._run(f"power {action} of VM {instance_name} on", target, methods[action],
                               instance_name)

    async def deploy(self, target: HostTarget, instance_name: str, image: ImageRef, cloud_init: CloudInitData,
                     profiles: list[str], progress: CopyProgress | None = None) -> str:
        driver = self._driver(target.type)
        return await self._run(f"deploying {instance_name} on", target, driver.deploy_machine, instance_name, image,
                               cloud_init, profiles, progress)

    async def erase(self, target: HostTarget, instance_name: str, profiles: list[str]) -> None:
        driver = self._driver(target.type)
        await self._run(f"erasing {instance_name} on", target, driver.erase_machine, instance_name, profiles)

    async def cloud_init_status(self, target: HostTarget, instance_name: str) -> tuple[str, str]:
        driver = self._driver(target.type)
        return await self._run(f"cloud-init status of {instance_name} on", target, driver.cloud_init_status,
                               instance_name)

    def stop(self) -> None:
        """Stops both pools without waiting for calls still blocked on a host."""
        for pool in (self.pool, self.background_pool):
            if pool.started:
                pool.stop()
