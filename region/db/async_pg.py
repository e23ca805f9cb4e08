"""Statements sent on the reactor over asynchronous PostgreSQL connections.

`Database.run` hands a transaction to a thread: the reactor wakes a pool thread, the thread
talks to PostgreSQL and wakes the reactor again.  On a small machine each of those wake-ups
costs about as much as a round trip to PostgreSQL, so work that is one query string
(checking an API token, reading what a delete needs, deleting a record with its audit event)
goes through here instead: psycopg2's asynchronous mode, with the connection's socket watched
by the reactor, so it costs one round trip and no thread.  An asynchronous connection is in
autocommit mode: PostgreSQL runs the statements of one query string as one transaction.
Nothing waits on the reactor: the statements run in PostgreSQL while the reactor serves
other work, and their result (one or a few rows, by construction of what is sent here) is
decoded in C.

`AsyncStatements` keeps up to `max_connections` such connections, opens them on demand in a
thread (libpq may resolve a host name, and may move to another socket while it connects),
queues work when all are busy, and drops a connection that failed; the next use opens a new one.
A caller cancelled while its statements run drops the connection too (closing it ends them).

`AsyncStatements.transaction` keeps one connection for a transaction of a few query strings
with Python between them (a compose's placement: lock and read, place, insert, commit): BEGIN
travels with the first string and COMMIT with the last, so a transaction costs its round trips
and no thread.
"""

from __future__ import annotations

import contextlib
import os
import select
import time
from collections import deque
from typing import Any, AsyncIterator

import psycopg2
import psycopg2.extensions as ext
from twisted.internet import defer, threads
from twisted.internet.interfaces import IReadWriteDescriptor
from twisted.python.failure import Failure
from zope.interface import implementer

from region.db import prepared
from region.db.prepared import PreparingConnection


CONNECT_TIMEOUT = 30.0  # seconds a new connection may take


@implementer(IReadWriteDescriptor)
class _Connection:
    """One asynchronous psycopg2 connection; `poll()` is driven by the socket's readiness."""

    def __init__(self, reactor, conn) -> None:
        self._reactor = reactor
        self.conn = conn
        # The reactor watches a duplicate of the socket: libpq closes its own descriptor when the
        # server goes away, and the reactor must be able to stop watching one that still exists.
        self._fd = os.dup(conn.fileno())
        self._waiting: defer.Deferred | None = None
        self._reading = self._writing = False
        self.broken = False

    # -- what the pool calls ---------------------------------------------------------------

    def until_ready(self) -> defer.Deferred:
        """Fires when the query string just sent is done."""
        d = self._waiting = defer.Deferred(self._cancelled)
        self._poll()  # may fire `d` at once
        return d

    def _cancelled(self, d: defer.Deferred) -> None:
        # The string is still running, or its result unread: nothing more can be sent on this
        # connection, so it is closed when given back (PostgreSQL then ends what it runs).
        self.broken = True
        self._stop_watching()
        self._waiting = None

    def execute(self, statements: list[tuple[Any, Any]]) -> defer.Deferred:
        """(rows or None, rowcount) of the last of `statements` ((sql or Prepared, args) each),
        sent now in one query string (one implicit transaction)."""
        cursor = self.conn.cursor()
        try:
            texts = [text for query, args in statements for text in prepared.query_texts(cursor, query, args)]
            cursor.execute(b"; ".join(texts))
        except BaseException:
            # Not sent (bad arguments, or the connection is gone): a PREPARE may have been
            # counted as sent, so this connection is not used again.
            self.broken = True
            cursor.close()
            return defer.fail()
        d = self.until_ready()

        def fetched(_):
            prepared.succeeded(self.conn)
            rows = cursor.fetchall() if cursor.description is not None else None
            count = cursor.rowcount
            cursor.close()
            return rows, count

        def failed(failure):
            cursor.close()
            # A PREPARE that may or may not have run: the connection is dropped rather than
            # repaired (failures are rare here).
            if getattr(self.conn, "unsure", False):
                self.broken = True
            return failure

        return d.addCallbacks(fetched, failed)

    def close(self) -> None:
        self._stop_watching()
        if not self.conn.closed:
            self.conn.close()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    # -- IReadWriteDescriptor --------------------------------------------------------------

    def fileno(self) -> int:
        return self._fd

    def doRead(self) -> None:
        self._poll()

    def doWrite(self) -> None:
        self._poll()

    def connectionLost(self, reason: Failure) -> None:
        self.broken = True
        self._reading = self._writing = False
        self._fire(reason)

    def logPrefix(self) -> str:
        return "vmyard-pg-async"

    # -- the poll loop ---------------------------------------------------------------------

    def _poll(self) -> None:
        try:
            state = self.conn.poll()
        except psycopg2.Error as e:
            # A statement's error (a constraint, a cancelled query) leaves the connection
            # usable; a lost server does not.
            self.broken = self.conn.closed != 0 or isinstance(e, (psycopg2.OperationalError,
                                                                    psycopg2.InterfaceError))
            self._stop_watching()
            self._fire(Failure())
            return
        if state == ext.POLL_OK:
            self._stop_watching()
            self._fire(None)
        elif state == ext.POLL_READ:
            self._watch(read=True, write=False)
        elif state == ext.POLL_WRITE:
            self._watch(read=False, write=True)
        else:  # pragma: no cover - psycopg2 documents no other state
            self.broken = True
            self._stop_watching()
            self._fire(Failure(psycopg2.OperationalError(f"unexpected poll state {state}")))

    def _watch(self, read: bool, write: bool) -> None:
        if read and not self._reading:
            self._reactor.addReader(self)
        elif not read and self._reading:
            self._reactor.removeReader(self)
        if write and not self._writing:
            self._reactor.addWriter(self)
        elif not write and self._writing:
            self._reactor.removeWriter(self)
        self._reading, self._writing = read, write

    def _stop_watching(self) -> None:
        self._watch(read=False, write=False)

    def _fire(self, result: Any) -> None:
        d, self._waiting = self._waiting, None
        if d is not None:
            if isinstance(result, Failure):
                d.errback(result)
            else:
                d.callback(result)


def _connected(dsn: str, factory: type, timeout: float = CONNECT_TIMEOUT):
    """A new asynchronous connection, established (in a thread: libpq may resolve names, and
    may move to another socket while it connects)."""
    conn = psycopg2.connect(dsn, async_=1, connection_factory=factory)
    deadline = time.monotonic() + timeout
    try:
        while (state := conn.poll()) != ext.POLL_OK:
            left = deadline - time.monotonic()
            if left <= 0:
                raise psycopg2.OperationalError(f"could not connect to PostgreSQL within {timeout:g} s")
            fd = conn.fileno()
            select.select([fd] if state == ext.POLL_READ else [], [fd] if state == ext.POLL_WRITE else [], [], left)
    except BaseException:
        conn.close()
        raise
    return conn


class ReactorTransaction:
    """One transaction on one asynchronous connection (`AsyncStatements.transaction`)."""

    def __init__(self, conn: _Connection, begin: bytes) -> None:
        self._conn = conn
        self._begin = begin
        self.begun = False
        self.finished = False
        self.count = 0  # statements sent

    async def execute(self, statements: list[tuple[Any, Any]]) -> tuple[list[tuple] | None, int]:
        """(rows, rowcount) of the last of `statements`, sent in one query string."""
        return await self._send(statements, len(statements))

    async def commit(self, statements: list[tuple[Any, Any]] = (), then: list[tuple[Any, Any]] = ()
                     ) -> tuple[list[tuple] | None, int]:
        """`statements` and COMMIT in one query string, followed by `then` (each its own
        transaction afterwards); (rows, rowcount) of the last statement sent (None: COMMIT's)."""
        result = await self._send([*statements, (b"COMMIT", None), *then], len(statements) + len(then))
        self.finished = True
        return result

    async def _send(self, statements: list[tuple[Any, Any]], counted: int) -> tuple[list[tuple] | None, int]:
        if self.finished or self._conn.broken:
            raise psycopg2.InterfaceError("the transaction is over")
        lead = [] if self.begun else [(self._begin, None)]
        self.begun = True
        self.count += counted
        try:
            return await self._conn.execute([*lead, *statements])
        except BaseException:
            # Failed inside the transaction, or lost: whatever it left is not repaired here
            # (failures are rare); the connection is closed, and PostgreSQL rolls back.
            self._conn.broken = True
            raise

    async def _abandon(self) -> None:
        """ROLLBACK what is still open (a refusal decided between two strings)."""
        if self.begun and not self.finished and not self._conn.broken:
            self.finished = True
            try:
                await self._conn.execute([(b"ROLLBACK", None)])
            except BaseException:
                self._conn.broken = True


class AsyncStatements:
    """Up to `max_connections` asynchronous connections; `execute` sends one query string,
    `transaction` keeps a connection for several."""

    def __init__(self, dsn: str, reactor, max_connections: int = 4,
                 connection_factory: type = PreparingConnection) -> None:
        self.dsn = dsn
        self._factory = connection_factory
        self._reactor = reactor
        self.max_connections = max_connections
        self._idle: list[_Connection] = []
        self._open = 0  # connections that exist or are being opened
        self._queue: deque[defer.Deferred] = deque()
        self._closed = False

    async def execute(self, statements: list[tuple[Any, Any]]) -> tuple[list[tuple] | None, int]:
        """(rows, rowcount) of the last statement, all sent as one query string: PostgreSQL runs
        them as one transaction; psycopg2's errors as they are."""
        conn = await self._take()
        try:
            result = await conn.execute(statements)
        except BaseException:
            self._give_back(conn)
            raise
        self._give_back(conn)
        return result

    @contextlib.asynccontextmanager
    async def transaction(self, begin: bytes) -> AsyncIterator[ReactorTransaction]:
        """A transaction opened by `begin` with its first string; what is neither committed nor
        failed when the block ends is rolled back."""
        conn = await self._take()
        tx = ReactorTransaction(conn, begin)
        try:
            yield tx
        finally:
            try:
                await tx._abandon()
            finally:
                self._give_back(conn)

    def close(self) -> None:
        self._closed = True
        for conn in self._idle:
            conn.close()
        self._idle.clear()
        while self._queue:
            self._queue.popleft().errback(Failure(psycopg2.InterfaceError("the database pool is closed")))

    @property
    def busy(self) -> int:
        return self._open - len(self._idle)

    async def _take(self) -> _Connection:
        if self._closed:
            raise psycopg2.InterfaceError("the database pool is closed")
        if self._idle:
            return self._idle.pop()
        if self._open < self.max_connections:
            self._open += 1
            try:
                return await self._connect()
            except BaseException:
                self._open -= 1
                raise
        waiter: defer.Deferred = defer.Deferred()
        self._queue.append(waiter)
        return await waiter

    async def _connect(self) -> _Connection:
        return _Connection(self._reactor, await threads.deferToThread(_connected, self.dsn, self._factory))

    def _give_back(self, conn: _Connection) -> None:
        if conn.broken or self._closed:
            conn.close()
            self._open -= 1
            waiter = None if self._closed else self._next_waiter()
            if waiter is not None:  # it gets a new connection in place of the broken one
                self._open += 1
                defer.Deferred.fromCoroutine(self._connect()).addErrback(self._not_opened).chainDeferred(waiter)
            return
        waiter = self._next_waiter()
        if waiter is not None:
            waiter.callback(conn)
        else:
            self._idle.append(conn)

    def _next_waiter(self) -> defer.Deferred | None:
        """The longest-waiting caller still waiting (one that was cancelled is not)."""
        while self._queue:
            waiter = self._queue.popleft()
            if not waiter.called:
                return waiter
        return None

    def _not_opened(self, failure: Failure) -> Failure:
        self._open -= 1
        return failure
