"""Small named thread pools for blocking work that must not queue behind anything else."""

from __future__ import annotations

import threading
from typing import Any, Callable

from twisted.internet import defer, reactor, threads
from twisted.python.threadpool import ThreadPool


class DaemonThreadPool(ThreadPool):
    """A ThreadPool whose threads never keep the process alive and whose stop never waits.

    Its work is a blocking call on another machine (a hung VM host holds a thread for a
    whole driver timeout): stopping the service must not wait for that, and the process
    exits with the threads still blocked.
    """

    @staticmethod
    def threadFactory(*args: Any, **kwargs: Any) -> threading.Thread:  # noqa: N802 (Twisted's name)
        return threading.Thread(*args, daemon=True, **kwargs)

    def stop(self) -> None:
        """Idle workers exit, busy ones after their current call; nothing is joined."""
        self.joined = True
        self.started = False
        self._team.quit()


class LazyThreadPool:
    """A named pool of at most `max_threads`, started on first use, stopped with the reactor."""

    def __init__(self, name: str, max_threads: int) -> None:
        self.name = name
        self.max_threads = max_threads
        self._pool: ThreadPool | None = None

    def run(self, fn: Callable[..., Any], *args: Any) -> defer.Deferred:
        if self._pool is None:
            self._pool = ThreadPool(minthreads=0, maxthreads=self.max_threads, name=self.name)
            self._pool.start()
            reactor.addSystemEventTrigger("during", "shutdown", self._pool.stop)
        return threads.deferToThreadPool(reactor, self._pool, fn, *args)
