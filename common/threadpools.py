"""Small named thread pools for blocking work that must not queue behind anything else."""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet import defer, reactor, threads
from twisted.python.threadpool import ThreadPool


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
