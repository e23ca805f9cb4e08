"""Periodic work as a Twisted service whose stop cancels a tick in progress instead of waiting."""

from __future__ import annotations

from typing import Awaitable, Callable

from twisted.application import internet, service
from twisted.internet import defer, task
from twisted.logger import Logger

log = Logger()


class PeriodicService(internet.TimerService):
    """Calls `work` every `step` seconds, the first time one step after start.

    Stopping cancels a tick in progress, after `grace` seconds if given (by default at once:
    a region asked to stop should be gone within a couple of seconds; work cut short is
    taken up again by the next tick after a start).
    `work` reports its own errors; anything it lets through is logged as `what` failed.
    """

    def __init__(self, step: float, work: Callable[[], Awaitable[None]], what: str, clock,
                 grace: float = 0.0) -> None:
        super().__init__(step, self._tick)
        self.clock = clock
        self._work = work
        self._what = what
        self._grace = grace
        self._current: defer.Deferred | None = None

    def startService(self) -> None:
        # As TimerService.startService, but the first tick waits a step: the region has
        # just started and its racks have not connected yet.
        service.Service.startService(self)
        self._loop = task.LoopingCall(self._tick)
        self._loop.clock = self.clock
        self._loopFinished = self._loop.start(self.step, now=False)
        self._loopFinished.addErrback(self._failed)

    def _tick(self) -> defer.Deferred:
        self._current = defer.ensureDeferred(self._work())
        self._current.addErrback(self._tick_failed)
        return self._current

    def _tick_failed(self, failure) -> None:
        if not failure.check(defer.CancelledError):
            log.failure("{what} failed", failure, what=self._what)

    def stopService(self) -> defer.Deferred:
        current = self._current
        if current is not None and not current.called and self._grace <= 0:
            current.cancel()
        elif current is not None and not current.called:
            timeout = self.clock.callLater(self._grace, self._cancel_hung, current)
            current.addBoth(lambda result: (timeout.active() and timeout.cancel(), result)[1])
        return super().stopService()

    def _cancel_hung(self, current: defer.Deferred) -> None:
        log.warn("{what} still running {grace}s after stop was asked; cancelling it",
                 what=self._what, grace=self._grace)
        current.cancel()
