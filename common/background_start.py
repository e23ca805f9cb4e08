"""Services whose start is a coroutine running in the background, cancelled if they stop first."""

from __future__ import annotations

from collections.abc import Callable, Coroutine

from twisted.internet import defer
from twisted.python.failure import Failure


def start_in_background(start: Coroutine, failed: Callable[[Failure], None]) -> defer.Deferred:
    """Run `start`; call `failed` with its failure unless it was cancelled."""

    def unless_cancelled(failure: Failure) -> None:
        if not failure.check(defer.CancelledError):
            failed(failure)

    return defer.Deferred.fromCoroutine(start).addErrback(unless_cancelled)


def cancel_if_running(starting: defer.Deferred | None) -> None:
    """Cancel a start from `start_in_background` that has not finished yet."""
    if starting is not None and not starting.called:
        starting.cancel()
