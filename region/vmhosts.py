"""VM-host work that needs a rack: discovery (on create, refresh and periodically),
composing, powering and deleting VMs, with rack failover (a compose too: its
reservation key makes a repeat harmless) and one refresh per host at a time.

The host's whole HostTarget (address, project, client key and certificate, pinned
server fingerprint) goes with every call, so any connected rack can do the work.  A
trust password or token is passed through once and never written anywhere.
"""

from __future__ import annotations

import collections
import random
from typing import Any, Awaitable, TypeVar

from twisted.internet import defer, error as neterror, task
from twisted.logger import Logger
from twisted.protocols import amp

from common import hosterrors
from common.logsafe import loggable
from common.models import CloudInitData, ComposeRequest, DiscoveredHost, DiscoveredVM, HostTarget, ImageRef
from common.rpc import rack_commands
from region.db import events, host_inventory, host_targets, hosts, machine_sync, machines
from region.db.host_targets import HostReach
from region.metrics import RegionMetrics
from region.rpc import NoRackConnected

log = Logger()
T = TypeVar("T")

RPC_TIMEOUT = 120.0  # seconds for one rack to answer one host operation
DEPLOY_RPC_TIMEOUT = 1800.0  # a deploy may first carry an image to the host and import it
RACK_WAIT = 5.0  # seconds to wait for a rack to (re)connect before answering 503
LEASE_SECONDS = 300.0  # a refresh lease outlives any single discovery
MAX_BACKOFF = 900.0  # seconds: a host failing again and again is still tried this often (or each interval)
CERTIFICATE_PATH = "vmhost-certificate/"

# Errors that say "this rack could not do it"; another rack may.  The lost-call
# kinds leave it unknown whether the host acted, so only idempotent commands
# move on to another rack after them.
_RACK_CANNOT = (hosterrors.Unreachable, hosterrors.UnknownHostType)
_CALL_LOST = (defer.TimeoutError, neterror.ConnectionDone, neterror.ConnectionLost, amp.ProtocolSwitched)


class CallLost(hosterrors.Unreachable):
    """The rack connection was lost or timed out mid-call: the outcome is unknown."""


def untrusted_message(region_url: str, name: str) -> str:
    url = f"{region_url}{CERTIFICATE_PATH}{name}"
    return (
        "The LXD host does not trust this VM host's certificate yet. On the LXD host run\n"
        f"  curl -s {url} | lxc config trust add -\n"
        "or, on LXD 5.0 (which reads no certificate from stdin),\n"
        f"  curl -s {url} -o /tmp/vmyard.crt && lxc config trust add /tmp/vmyard.crt\n"
        f"then `vmyard vm-host refresh {name}` (or wait for the next automatic refresh). "
        "Alternatively update the host with a trust password or token."
    )


def state_for(error: Exception) -> str:
    return "awaiting-trust" if isinstance(error, hosterrors.Untrusted) else "error"


class HostManager:
    """Discovery, compose, power and VM deletion through racks, plus the refresh bookkeeping."""

    def __init__(self, db, box, racks, reactor, owner: str, region_url: str,
                 refresh_interval: float = 60.0, *, background_db=None, metrics: RegionMetrics | None = None) -> None:
        self.db = db
        # Periodic refreshes use their own few connections, so user requests never queue behind them.
        self.background_db = background_db if background_db is not None else db
        self.box = box
        self.racks = racks
        self.reactor = reactor
        self.owner = owner
        self.region_url = region_url
        self.refresh_interval = refresh_interval
        self.metrics = metrics if metrics is not None else RegionMetrics()
        self._refreshing: dict[int, defer.Deferred] = {}
        self._background_calls: collections.Counter[str] = collections.Counter()  # per rack

    # -- talking to racks ---------------------------------------------------------------------

    async def _call(self, command, idempotent: bool = True, timeout: float = RPC_TIMEOUT,
                    background: bool = False, **kwargs) -> dict:
        """Call one rack after another until one that can reach the host answers: user work in
        random order, periodic work to the rack with the fewest periodic calls first."""
        conns = self.racks.one_connection_per_rack()
        for _ in range(int(RACK_WAIT / 0.25)):  # e.g. just after a restart, racks reconnect
            if conns:
                break
            await task.deferLater(self.reactor, 0.25, lambda: None)
            conns = self.racks.one_connection_per_rack()
        if not conns:
            raise NoRackConnected("any rack")
        random.shuffle(conns)
        if background:
            conns.sort(key=lambda conn: self._background_calls[conn.rack.system_id])
        failures: list[str] = []
        lost = False
        for conn in conns:
            try:
                return await self._call_rack(conn, command, timeout, background, kwargs)
            except _CALL_LOST as e:
                if not idempotent:
                    raise CallLost(f"lost rack {conn.rack.hostname} during the call "
                                   f"({type(e).__name__}); the outcome is unknown") from None
                lost = True
                reason = type(e).__name__
                log.warn("rack {rack} call failed: {reason}; trying another rack", rack=conn.rack.system_id,
                         reason=reason)
                failures.append(f"rack {conn.rack.hostname}: {reason}")
            except _RACK_CANNOT as e:
                reason = str(e) or type(e).__name__
                log.warn("rack {rack} could not reach the VM host: {reason}", rack=conn.rack.system_id,
                         reason=loggable(reason, limit=2000))  # may quote a user's power_address
                failures.append(f"rack {conn.rack.hostname}: {reason}")
        # After a lost call the host may have acted: the caller must not take it as a clean failure.
        error = CallLost if lost else hosterrors.Unreachable
        if len(failures) == 1:
            raise error(failures[0].split(": ", 1)[1])
        raise error("no rack could reach the VM host. " + "; ".join(failures))

    async def _call_rack(self, conn, command, timeout: float, background: bool, kwargs: dict) -> dict:
        """One call to one rack, counted in flight and timed (per command, rack and outcome)."""
        rack = conn.rack.system_id
        in_flight = self.metrics.rack_calls.labels(rack, "background" if background else "user")
        in_flight.inc()
        self._background_calls[rack] += background
        try:
            d = conn.callRemote(command, background=True, **kwargs) if background \
                else conn.callRemote(command, **kwargs)
            d.addTimeout(timeout, self.reactor)
            return await self._timed(d, self.metrics.rpc_latency, command.__name__, rack)
        finally:
            in_flight.dec()
            self._background_calls[rack] -= background
            if not self._background_calls[rack]:
                del self._background_calls[rack]

    async def _timed(self, call: Awaitable[T], histogram, *labels: str) -> T:
        """`call`'s duration in `histogram`, under `labels` and how it ended."""
        started = self.reactor.seconds()
        outcome = "error"
        try:
            result = await call
            outcome = "ok"
            return result
        except BaseException as e:
            outcome = _outcome(e)
            raise
        finally:
            histogram.labels(*labels, outcome).observe(self.reactor.seconds() - started)

    async def discover(self, target: HostTarget, password: str | None = None, background: bool = False
                       ) -> DiscoveredHost:
        args: dict[str, Any] = {"password": password} if password else {}
        call = self._call(rack_commands.DiscoverHost, background=background, target=target, **args)
        return (await self._timed(call, self.metrics.host_operations, "refresh"))["host"]

    async def delete_vm(self, target: HostTarget, instance_name: str, root_disk_only: bool = False) -> list[str]:
        call = self._call(rack_commands.DeleteVM, target=target, instance_name=instance_name,
                          root_disk_only=root_disk_only)
        return list((await self._timed(call, self.metrics.host_operations, "delete"))["warnings"])

    async def compose_vm(self, target: HostTarget, request: ComposeRequest) -> DiscoveredVM:
        """Idempotent thanks to the request's reservation key: a rack lost mid-call is
        followed by another, which answers the VM the first made, if it did."""
        call = self._call(rack_commands.ComposeVM, target=target, request=request)
        return (await self._timed(call, self.metrics.host_operations, "compose"))["vm"]

    async def power(self, target: HostTarget, instance_name: str, action: str) -> str:
        call = self._call(rack_commands.PowerVM, idempotent=action == "query", target=target,
                          instance_name=instance_name, action=action)
        return (await self._timed(call, self.metrics.host_operations, "power"))["state"]

    async def deploy(self, target: HostTarget, instance_name: str, image: ImageRef, cloud_init: CloudInitData,
                     profiles: list[str], progress_id: str | None = None) -> str:
        """Rebuild the instance from the image and start it; the power state afterwards.  Not
        repeated through another rack after a lost call (the first may still be at work).  The
        rack reports the image copy as DeployProgress(progress_id)."""
        call = self._call(rack_commands.DeployMachine, idempotent=False, timeout=DEPLOY_RPC_TIMEOUT,
                          target=target, instance_name=instance_name, image=image,
                          cloud_init=cloud_init, profiles=profiles, progress_id=progress_id)
        return (await self._timed(call, self.metrics.host_operations, "deploy"))["state"]

    async def erase(self, target: HostTarget, instance_name: str, profiles: list[str]) -> None:
        await self._call(rack_commands.EraseMachine, idempotent=False, target=target, instance_name=instance_name,
                         profiles=profiles)

    async def cloud_init_status(self, target: HostTarget, instance_name: str) -> tuple[str, str]:
        result = await self._call(rack_commands.CloudInitStatus, target=target, instance_name=instance_name)
        return result["status"], result["detail"]

    async def target(self, host_id: int, db=None) -> tuple[hosts.VMHost, HostTarget]:
        def load_thd(cur):
            host = hosts.get_thd(cur, host_id)
            return host, self.target_thd(cur, host)

        return await (db or self.db).run(load_thd)

    def target_thd(self, cur, host: hosts.VMHost) -> HostTarget:
        """How to reach `host`, its secret decrypted (inside the caller's transaction): the
        client key of an LXD host, the SSH password of a virsh host."""
        return self._target(host, hosts.key_thd(cur, self.box, host.id))

    def target_of(self, host: hosts.VMHost, encrypted_secret: str | None) -> HostTarget:
        """`target_thd` with the host's secret already read (still encrypted)."""
        return self._target(host, None if encrypted_secret is None else self.box.decrypt(encrypted_secret))

    def _target(self, host: hosts.VMHost, secret: str | None) -> HostTarget:
        return host_target(HostReach(host.type, host.power_address, host.project, host.certificate,
                                     host.server_fingerprint, secret))

    async def machine_target(self, system_id: str) -> tuple[machines.Machine, HostTarget]:
        """The machine with its disks (not its NICs) and how to reach its host, in one
        statement; NotFound when there is no such machine."""
        machine, reach = await self.db.statement(host_targets.machine_and_reach_statement(self.box, system_id))
        return machine, host_target(reach)

    # -- refresh ------------------------------------------------------------------------------

    def next_refresh_in(self) -> float:
        # Jitter spreads hosts (and regions) out instead of refreshing in lock step.
        return self.refresh_interval * random.uniform(0.8, 1.2) if self.refresh_interval > 0 else 10 * 365 * 86400

    async def refresh(self, host_id: int, password: str | None = None, username: str | None = None) -> hosts.VMHost:
        """Discover and sync one host; raises the discovery error after recording it.

        A refresh already running (here or in another region) is waited for and
        its outcome read back, unless a password must be used: then this one
        runs after it.
        """
        running = self._refreshing.get(host_id)
        if running is not None and password is None:
            await _shared(running)
            return await self.db.run(hosts.get_thd, host_id)
        while not await self.db.run(hosts.claim_refresh_thd, host_id, self.owner, LEASE_SECONDS):
            await self._wait_for_other_refresh(host_id)
            if password is None:
                return await self.db.run(hosts.get_thd, host_id)
        return await self._refresh_claimed(host_id, password, username)

    async def _refresh_claimed(self, host_id: int, password: str | None, username: str | None,
                               background: bool = False) -> hosts.VMHost:
        done: defer.Deferred = defer.Deferred()
        self._refreshing[host_id] = done
        try:
            return await self._refresh_holding_lease(host_id, password, username, background)
        finally:
            del self._refreshing[host_id]
            done.callback(None)

    async def refresh_leased(self, leased: hosts.LeasedRefresh) -> None:
        """A periodic refresh of a host the scheduler has leased for this region."""
        self.metrics.refresh_lag.observe(leased.lag)
        await self._refresh_claimed(leased.host_id, None, None, background=True)

    async def _wait_for_other_refresh(self, host_id: int) -> None:
        waited = 0.0
        while await self.db.run(hosts.refreshing_thd, host_id):
            if waited > RPC_TIMEOUT + 30:
                raise hosterrors.DriverError("another refresh of this VM host is still running; try again later")
            await task.deferLater(self.reactor, 0.5, lambda: None)
            waited += 0.5

    async def _refresh_holding_lease(self, host_id: int, password: str | None, username: str | None,
                                     background: bool) -> hosts.VMHost:
        db = self.background_db if background else self.db
        try:
            host, target = await self.target(host_id, db)
        except BaseException as e:
            await self._release_after(db, host_id, e, background)
            raise
        try:
            found = await self.discover(target, password, background)
        except (hosterrors.DriverError, NoRackConnected) as e:
            message = untrusted_message(self.region_url, host.name) if isinstance(e, hosterrors.Untrusted) \
                else _describe(e)
            await db.run(self._failed_thd, host_id, state_for(e), message)
            raise
        except BaseException as e:
            await self._release_after(db, host_id, e, background)
            raise
        host, abandoned = await db.run(self._synced_thd, host_id, found, username)
        for instance_name in abandoned:
            await self._clean_abandoned(target, instance_name)
        return host

    async def _release_after(self, db, host_id: int, error: BaseException, background: bool) -> None:
        """Hands the lease back after an unexpected end.  Not for a cancelled periodic refresh:
        the stopping scheduler hands all of those back at once, and its pool is closing."""
        if not (background and isinstance(error, defer.CancelledError)):
            await db.run(hosts.release_refresh_thd, host_id, self.owner, self.next_refresh_in())

    async def _clean_abandoned(self, target: HostTarget, instance_name: str) -> None:
        """A compose whose region died before the VM existed may have left volumes behind."""
        try:
            await self.delete_vm(target, instance_name)
        except Exception as e:
            log.warn("could not clean up after the abandoned compose of {name}: {error}", name=instance_name,
                     error=loggable(str(e) or type(e).__name__, limit=2000))

    def _failed_thd(self, cur, host_id: int, state: str, message: str) -> None:
        hosts.release_failed_refresh_thd(cur, host_id, self.owner, self.next_refresh_in(),
                                         max(MAX_BACKOFF, self.refresh_interval))
        host = hosts.get_thd(cur, host_id)
        if (host.state, host.state_message) != (state, message):
            hosts.record_failure_thd(cur, host_id, state, message)
            events.record_thd(cur, "VM_HOST_REFRESH_FAILED", f"VM host {host.name}: {message}", level="WARNING",
                              object_type="vm-host", object_id=host_id)

    def _synced_thd(self, cur, host_id: int, found: DiscoveredHost,
                    username: str | None) -> tuple[hosts.VMHost, list[str]]:
        hosts.release_refresh_thd(cur, host_id, self.owner, self.next_refresh_in())
        before = hosts.get_thd(cur, host_id)
        synced = apply_discovery_thd(cur, before, found, username)
        return hosts.get_thd(cur, host_id), synced.abandoned


def apply_discovery_thd(cur, host: hosts.VMHost, found: DiscoveredHost,
                        username: str | None) -> machine_sync.SyncResult:
    """Write a successful discovery of `host` (state ready, inventory, machines)."""
    hosts.record_discovery_thd(cur, host.id, found)
    pools = host_inventory.apply_discovery_thd(cur, host.id, found)
    synced = machine_sync.sync_discovered_thd(cur, hosts.get_thd(cur, host.id), found.vms)
    if host.state != "ready":
        events.record_thd(cur, "VM_HOST_READY", f"VM host {host.name} is ready", username=username,
                          object_type="vm-host", object_id=host.id)
    for what, names in (("storage pool added", pools.added), ("storage pool removed", pools.removed),
                        ("VM imported", synced.added), ("VM gone from the host", synced.removed)):
        for name in names:
            events.record_thd(cur, "VM_HOST_INVENTORY", f"VM host {host.name}: {what}: {name}",
                              object_type="vm-host", object_id=host.id)
    return synced


def host_target(reach: HostReach) -> HostTarget:
    """The HostTarget a rack needs: the secret is an LXD host's client key, a virsh host's SSH password."""
    secret = reach.secret or ""
    virsh = reach.type == "virsh"
    return HostTarget(type=reach.type, address=reach.power_address, project=reach.project,
                      cert_pem=reach.certificate or "", key_pem="" if virsh else secret,
                      server_fingerprint=reach.server_fingerprint, ssh_password=secret if virsh else "")


def _outcome(error: BaseException) -> str:
    """A metrics label for how a rack call or host operation ended."""
    if isinstance(error, (CallLost, *_CALL_LOST)):
        return "lost"
    if isinstance(error, defer.CancelledError):
        return "cancelled"
    if isinstance(error, NoRackConnected):
        return "no-rack"
    if isinstance(error, hosterrors.Unreachable):
        return "unreachable"
    return "error"


def _describe(error: Exception) -> str:
    if isinstance(error, NoRackConnected):
        return "No rack controller is connected, so the VM host cannot be reached."
    return str(error)


async def _shared(d: defer.Deferred) -> None:
    """Wait for a Deferred another caller owns, without consuming its result."""
    waiter: defer.Deferred = defer.Deferred()
    d.addBoth(lambda r: (waiter.callback(None), r)[1])
    await waiter
