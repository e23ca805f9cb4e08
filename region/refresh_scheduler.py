"""Periodic VM-host refresh that keeps up: due hosts are leased in batches and dispatched
continuously, at most `per_rack` at a time for each connected rack.

- Free slots are refilled as soon as a quarter of them are free (no ticks that wait for
  the slowest host, and one lease query for many hosts); otherwise, and with nothing due,
  the scheduler looks again every `poll` seconds.
- Hosts that answered last time go first.  Hosts whose last refresh failed (they back
  off exponentially, see `hosts.release_failed_refresh_thd`) get at most half the slots,
  so a crowd of hung hosts never delays the others.
- Nothing is leased while no rack is connected: that is not the hosts' fault.
- Stopping cancels the refreshes in flight instead of waiting for them, and drops their
  leases so another region (or the next start) takes the hosts at once.
"""

from __future__ import annotations

from twisted.application import service
from twisted.internet import defer
from twisted.logger import Logger

from common import hosterrors
from region.db import hosts
from region.db.pool import DATABASE_DOWN
from region.rpc import NoRackConnected
from region.vmhosts import LEASE_SECONDS, HostManager

log = Logger()

PER_RACK = 32  # periodic refreshes in flight per connected rack (the rack's background pool is as wide)
POLL = 1.0  # seconds between looks for due hosts when none was due
STOP_RELEASE_TIMEOUT = 1.0  # seconds stopping may spend handing leases back


class RefreshScheduler(service.Service):
    """Runs `manager.refresh_leased` for every due host, bounded per connected rack."""

    def __init__(self, manager: HostManager, clock, per_rack: int = PER_RACK, poll: float = POLL) -> None:
        self.manager = manager
        self.db = manager.background_db
        self.clock = clock
        self.per_rack = per_rack
        self.poll = poll
        self._in_flight: dict[int, defer.Deferred] = {}
        self._failing_in_flight = 0
        self._loop: defer.Deferred | None = None
        self._wake: defer.Deferred | None = None

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def capacity(self) -> int:
        return self.per_rack * len(self.manager.racks.connected_racks())

    def startService(self) -> None:
        super().startService()
        self._loop = defer.Deferred.fromCoroutine(self._run())
        self._loop.addErrback(self._loop_failed)

    def _loop_failed(self, failure) -> None:
        if not failure.check(defer.CancelledError):
            log.failure("the periodic VM host refresh stopped", failure)

    async def _run(self) -> None:
        while self.running:
            if self.capacity() > self.in_flight:
                try:
                    await self.dispatch()
                except DATABASE_DOWN as e:
                    log.warn("cannot lease VM hosts to refresh: {error}", error=type(e).__name__)
            await self._sleep()

    async def dispatch(self) -> int:
        """Leases due hosts for every free slot and starts their refreshes; how many started."""
        capacity = self.capacity()
        room = capacity - self.in_flight
        if room <= 0:
            return 0
        owner = self.manager.owner
        leased = await self.db.run(hosts.lease_due_thd, owner, room, False, LEASE_SECONDS)
        failing_room = min(room - len(leased), max(1, capacity // 2) - self._failing_in_flight)
        if failing_room > 0:
            leased += await self.db.run(hosts.lease_due_thd, owner, failing_room, True, LEASE_SECONDS)
        for due in leased:
            self._start(due)
        return len(leased)

    def _start(self, due: hosts.LeasedRefresh) -> None:
        self._failing_in_flight += due.failing
        d = defer.Deferred.fromCoroutine(self.manager.refresh_leased(due))
        self._in_flight[due.host_id] = d
        d.addErrback(self._refresh_failed, due.host_id)
        d.addBoth(self._finished, due)

    def _refresh_failed(self, failure, host_id: int) -> None:
        # A host that cannot be reached is recorded on the host (state and event); only
        # the unexpected is worth a traceback here.
        if not failure.check(hosterrors.DriverError, NoRackConnected, defer.CancelledError):
            log.failure("periodic refresh of VM host {host} failed", failure, host=host_id)

    def _finished(self, _, due: hosts.LeasedRefresh) -> None:
        self._in_flight.pop(due.host_id, None)
        self._failing_in_flight -= due.failing
        capacity = self.capacity()
        if capacity - self.in_flight >= max(1, capacity // 4):
            self._wake_up()

    async def _sleep(self) -> None:
        """Until a refresh finishes or `poll` seconds pass."""
        self._wake = defer.Deferred()
        timer = self.clock.callLater(self.poll, self._wake_up)
        try:
            await self._wake
        finally:
            if timer.active():
                timer.cancel()

    def _wake_up(self) -> None:
        wake, self._wake = self._wake, None
        if wake is not None and not wake.called:
            wake.callback(None)

    def stopService(self) -> defer.Deferred:
        super().stopService()
        if self._loop is not None:
            self._loop.cancel()
        running = list(self._in_flight.values())
        for d in running:
            d.cancel()
        if running:
            log.info("cancelled {count} periodic VM host refreshes on stop", count=len(running))
        return defer.Deferred.fromCoroutine(self._hand_back_leases())

    async def _hand_back_leases(self) -> None:
        d = self.db.run_deferred(hosts.release_owned_refreshes_thd, self.manager.owner)
        d.addTimeout(STOP_RELEASE_TIMEOUT, self.clock)
        try:
            await d
        except Exception as e:  # the leases expire by themselves
            log.warn("could not hand back refresh leases on stop: {error}", error=type(e).__name__)
        if self.db is not self.manager.db:  # the pool only periodic refreshes use
            self.db.close()
