"""The region's one way into PostgreSQL.

Everything that touches the database is a plain function taking a DB-API
cursor; its name ends in `_thd` because it runs in the DB thread pool, never on
the reactor thread.  `Database.run` calls such a function inside one
transaction and retries it, with jittered backoff, when PostgreSQL reports a
serialization failure or a deadlock.  The same functions run synchronously in
the admin CLI through `run_sync`.

Connections (the pool's and `run_sync`'s) are in autocommit mode and a transaction is opened by hand: its
BEGIN travels in the same query string as its first statement, so a transaction costs
one round trip less than psycopg2's own BEGIN (sent alone) would, and one that runs no
statement costs none.  A statement whose outcome nobody reads (an audit event) can be
sent with `cur.execute_later`: it travels with the next statement, or with the COMMIT.
"""

from __future__ import annotations

import contextlib
import contextvars
import random
import time
from typing import Any, AsyncIterator, Callable, Generic, TypeVar

import attrs
import psycopg2
import psycopg2.errors
import psycopg2.extensions
from twisted.enterprise import adbapi
from twisted.internet import defer, task
from twisted.logger import Logger

from region.db import prepared
from region.db.async_pg import AsyncStatements, ReactorTransaction
from region.db.prepared import Prepared

log = Logger()
T = TypeVar("T")

RETRYABLE = (psycopg2.errors.SerializationFailure, psycopg2.errors.DeadlockDetected)
MAX_ATTEMPTS = 10
# What a call raises while PostgreSQL is down or restarting; the API answers 503 + Retry-After
# and the pool reconnects by itself (cp_reconnect) once the server is back.
DATABASE_DOWN = (psycopg2.OperationalError, psycopg2.InterfaceError, adbapi.ConnectionLost)


# A unit of work (an HTTP request) that wants its SQL statements counted sets a one-item
# list here; `Database.run` adds what each transaction ran (the metrics read it).
query_counter: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar("vmyard_query_counter",
                                                                                  default=None)


# Snapshot isolation: a transaction sees one consistent state, and a concurrent writer to the
# same rows makes one of them retry instead of silently interleaving (the compose race
# depends on this).
BEGIN = b"BEGIN ISOLATION LEVEL REPEATABLE READ"


class _TransactionCursor:
    """A cursor on an autocommit connection that opens the transaction with its first
    statement (in the same query string) and counts the statements run through it."""

    def __init__(self, cursor) -> None:
        self._cursor = cursor
        self.count = 0
        self.begun = False
        self._later: list[bytes] = []

    def _pending(self) -> list[bytes]:
        """What the next query string starts with: BEGIN if not yet sent, the statements run later."""
        pending = self._later if self.begun else [BEGIN, *self._later]
        self.begun, self._later = True, []
        return pending

    def execute(self, query, vars=None) -> Any:
        self.count += 1
        texts = prepared.query_texts(self._cursor, query, vars)
        result = self._cursor.execute(b"; ".join([*self._pending(), *texts]))
        prepared.succeeded(self._cursor.connection)
        return result

    def execute_later(self, query, vars=None) -> None:
        """Run a statement whose outcome the caller does not read, in the same round trip as
        the next statement or the COMMIT; if it fails, the transaction fails there."""
        self.count += 1
        self._later.extend(prepared.query_texts(self._cursor, query, vars))

    def executemany(self, query, vars_list) -> Any:
        self.count += 1
        pending = self._pending()
        if pending:
            self._cursor.execute(b"; ".join(pending))
        return self._cursor.executemany(query, vars_list)

    def commit(self) -> None:
        if self.begun or self._later:
            self._cursor.execute(b"; ".join([*self._pending(), b"COMMIT"]))
            prepared.succeeded(self._cursor.connection)

    def __iter__(self):
        return iter(self._cursor)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)


def _in_transaction(conn, fn_thd: Callable[..., T], *args: Any, **kwargs: Any) -> tuple[T, int]:
    """fn_thd(cursor, *args) in one transaction on `conn` (autocommit); (its result, statements run)."""
    with conn.cursor() as raw:
        cur = _TransactionCursor(raw)
        try:
            result = fn_thd(cur, *args, **kwargs)
            cur.commit()
        except BaseException:
            if not conn.closed:
                _rollback_quietly(raw, cur.begun)
            raise
    return result, cur.count


def _rollback_quietly(cur, begun: bool) -> None:
    """ROLLBACK an open transaction, and drop the connection's prepared statements when a
    PREPARE may or may not have run (even one queued and never sent is then forgotten)."""
    statements = [b"ROLLBACK"] if begun else []
    statements += prepared.forget_after_failure(cur.connection)
    if not statements:
        return
    # The error that got here matters, not a second one from a broken connection (adbapi
    # then finds the connection dead and reconnects).
    try:
        cur.execute(b"; ".join(statements))
    except psycopg2.Error:
        pass


@attrs.frozen
class PoolStats:
    busy: int
    idle: int
    waiting: int  # transactions queued for a connection
    max: int


def retry_delays(base: float = 0.01, rate: float = 2.5, maximum: float = 2.0):
    """Full-jitter exponential backoff delays, one per retry."""
    delay = base
    while True:
        yield random.uniform(0, delay)
        delay = min(delay * rate, maximum)


@attrs.frozen
class Statement(Generic[T]):
    """One SQL statement and what its rows mean: `Database.statement` sends it on the reactor
    (one round trip, its own transaction); `statement_thd` runs it inside a caller's transaction."""

    sql: str | Prepared
    args: tuple | dict | None
    parse: Callable[[list[tuple] | None], T] = lambda rows: None  # the rows (None: it returns none) -> the result


class Transaction:
    """`Database.transaction`'s handle: `Statement`s in, their parsed results out."""

    def __init__(self, tx: ReactorTransaction) -> None:
        self._tx = tx

    async def statements(self, *statements: Statement[Any]) -> Any:
        """Statements in one round trip; the last one's result."""
        rows, _ = await self._tx.execute([(s.sql, s.args) for s in statements])
        return statements[-1].parse(rows)

    async def commit(self, *writes: Statement[Any], then: Statement[T] | None = None) -> T | None:
        """`writes` and COMMIT in one round trip, and `then` after it (its own transaction: it
        sees what was committed); `then`'s result."""
        rows, _ = await self._tx.commit([(s.sql, s.args) for s in writes],
                                        [(then.sql, then.args)] if then is not None else [])
        return then.parse(rows) if then is not None else None


def statement_thd(cur, statement: Statement[T]) -> T:
    cur.execute(statement.sql, statement.args)
    return statement.parse(cur.fetchall() if cur.description is not None else None)


def _configure_connection(conn) -> None:
    # Transactions are opened by `_in_transaction`, at BEGIN's isolation level.
    conn.autocommit = True


class Database:
    """A bounded pool of PostgreSQL connections used from Twisted.

    :ivar dsn: libpq connection string.
    """

    def __init__(self, dsn: str, reactor, *, min_connections: int = 1, max_connections: int = 8,
                 statement_connections: int = 4, prepared_statements: bool = True) -> None:
        self.dsn = dsn
        self._reactor = reactor
        # Without PreparingConnection a `Prepared` statement is sent as plain text.
        factory = prepared.PreparingConnection if prepared_statements else psycopg2.extensions.connection
        # Opened on first use: a pool that never sends a single statement opens none.
        self._statements = AsyncStatements(dsn, reactor, max_connections=statement_connections,
                                           connection_factory=factory)
        # Apart from the statements' connections: a transaction may wait for a lock, and a
        # request's token check must not queue behind that.
        self._transactions = AsyncStatements(dsn, reactor, max_connections=max_connections,
                                             connection_factory=factory)
        self._pool = adbapi.ConnectionPool(
            "psycopg2",
            dsn,
            cp_min=min_connections,
            cp_max=max_connections,
            cp_reconnect=True,
            cp_openfun=_configure_connection,
            cp_reactor=reactor,
            cp_noisy=False,
            connection_factory=factory,
        )

    def start(self) -> None:
        self._pool.start()

    def close(self) -> None:
        self._statements.close()
        self._transactions.close()
        self._pool.close()

    async def run(self, fn_thd: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run fn_thd(cursor, *args) in one transaction, retrying on conflicts."""
        delays = retry_delays()
        counter = query_counter.get()
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                result, count = await self._pool.runWithConnection(_in_transaction, fn_thd, *args, **kwargs)
                if counter is not None:
                    counter[0] += count
                return result
            except RETRYABLE as e:
                if attempt == MAX_ATTEMPTS:
                    raise
                log.debug(
                    "retrying {fn} after {error} (attempt {attempt})",
                    fn=fn_thd.__name__, error=type(e).__name__, attempt=attempt,
                )
                await task.deferLater(self._reactor, next(delays), lambda: None)
        raise AssertionError("unreachable")

    async def statement(self, statement: Statement[T]) -> T:
        """Run one statement on its own without a thread: see region/db/async_pg.py."""
        return await self.statements(statement)

    async def statements(self, *statements: Statement[Any]) -> Any:
        """Run statements in one round trip and one transaction (PostgreSQL runs the statements
        of one query string as one), without a thread; the last one's result."""
        delays = retry_delays()
        counter = query_counter.get()
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                rows, _ = await self._statements.execute([(s.sql, s.args) for s in statements])
                if counter is not None:
                    counter[0] += len(statements)
                return statements[-1].parse(rows)
            except RETRYABLE:
                if attempt == MAX_ATTEMPTS:
                    raise
                await task.deferLater(self._reactor, next(delays), lambda: None)
        raise AssertionError("unreachable")

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """A transaction whose statements are sent from the reactor, a query string at a time,
        with Python between them and no thread (region/db/async_pg.py): for a few statements
        whose results are a few rows.  Not retried here: the caller starts again on RETRYABLE
        (a compose's placement does)."""
        counter = query_counter.get()
        async with self._transactions.transaction(BEGIN) as tx:
            try:
                yield Transaction(tx)
            finally:
                if counter is not None:
                    counter[0] += tx.count

    def pool_stats(self) -> PoolStats:
        threads = self._pool.threadpool
        return PoolStats(busy=len(threads.working), idle=len(threads.waiters), waiting=threads.q.qsize(),
                         max=self._pool.max)

    def run_deferred(self, fn_thd: Callable[..., T], *args: Any, **kwargs: Any) -> defer.Deferred:
        return defer.Deferred.fromCoroutine(self.run(fn_thd, *args, **kwargs))


def run_sync(dsn: str, fn_thd: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run fn_thd in one transaction on a private connection (CLI use)."""
    conn = psycopg2.connect(dsn)  # short-lived: preparing statements would not pay
    _configure_connection(conn)
    try:
        delays = retry_delays()
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                return _in_transaction(conn, fn_thd, *args, **kwargs)[0]
            except RETRYABLE:
                if attempt == MAX_ATTEMPTS:
                    raise
                time.sleep(next(delays))
        raise AssertionError("unreachable")
    finally:
        conn.close()
