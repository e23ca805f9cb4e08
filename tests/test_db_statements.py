"""Statements sent on the reactor (region/db/async_pg.py) and prepared statements
(region/db/prepared.py), against a real PostgreSQL."""

from __future__ import annotations

import argparse
import contextlib

import psycopg2
import psycopg2.errors
import pytest
import pytest_twisted
from twisted.internet import defer, reactor

from region import config
from region.db.pool import Database, Statement, query_counter, run_sync
from region.db.prepared import Prepared

ZONE_NAMES = Statement("SELECT name FROM zones ORDER BY name", None, lambda rows: [r[0] for r in rows])
BACKEND = Statement("SELECT pg_backend_pid()", None, lambda rows: rows[0][0])
PREPARED_HERE = Statement("SELECT name FROM pg_prepared_statements ORDER BY name", None,
                          lambda rows: [r[0] for r in rows])
ADD_ZONE = Prepared("test_add_zone", "INSERT INTO zones (name, description) VALUES (%s, %s) RETURNING id")
ZONE_LIKE = Prepared("test_zone_like", "SELECT count(*) FROM zones WHERE name LIKE %s || '%%'")


def add_zone(name: str) -> Statement[int]:
    return Statement(ADD_ZONE, (name, "made by a test"), lambda rows: rows[0][0])


@contextlib.contextmanager
def counted():
    """The statements counted for this unit of work (as an HTTP request's are)."""
    counter = [0]
    token = query_counter.set(counter)
    try:
        yield counter
    finally:
        query_counter.reset(token)


@pytest.fixture
def db(dsn):
    database = Database(dsn, reactor, max_connections=2, statement_connections=1)
    database.start()
    yield database
    database.close()


@pytest_twisted.ensureDeferred
async def test_a_statement_answers_and_counts_once(db):
    with counted() as counter:
        assert await db.statement(ZONE_NAMES) == ["default"]
    assert counter == [1]


@pytest_twisted.ensureDeferred
async def test_a_prepared_statement_is_prepared_once_per_connection(db):
    first = await db.statement(add_zone("a1"))
    assert await db.statement(PREPARED_HERE) == ["test_add_zone"]
    second = await db.statement(add_zone("a2"))
    assert second > first
    assert await db.statement(PREPARED_HERE) == ["test_add_zone"]  # not prepared again
    # `%%` is a literal percent sign in the statement, as with psycopg2's own placeholders
    assert await db.statement(Statement(ZONE_LIKE, ("a",), lambda rows: rows[0][0])) == 2

    def in_a_transaction_thd(cur):
        cur.execute(ADD_ZONE, ("t1", "x"))
        cur.execute(ADD_ZONE, ("t2", "x"))
        cur.execute("SELECT name FROM pg_prepared_statements")
        return [r[0] for r in cur.fetchall()]

    assert await db.run(in_a_transaction_thd) == ["test_add_zone"]
    assert sorted(await db.statement(ZONE_NAMES)) == ["a1", "a2", "default", "t1", "t2"]


@pytest_twisted.ensureDeferred
async def test_a_failure_on_first_use_leaves_connections_usable(db, dsn):
    """The string that carried the PREPARE failed: the statement may or may not exist, so the
    connection's prepared statements are dropped (pool) or the connection is (reactor)."""
    run_sync(dsn, lambda cur: cur.execute("INSERT INTO zones (name) VALUES ('taken')"))
    with pytest.raises(psycopg2.errors.UniqueViolation):
        await db.statement(add_zone("taken"))
    assert await db.statement(add_zone("free")) > 0

    def add_thd(cur, name):
        cur.execute(ADD_ZONE, (name, "x"))
        return cur.fetchone()[0]

    with pytest.raises(psycopg2.errors.UniqueViolation):
        await db.run(add_thd, "taken")
    assert await db.run(add_thd, "free2") > 0
    assert sorted(await db.statement(ZONE_NAMES)) == ["default", "free", "free2", "taken"]


@pytest_twisted.ensureDeferred
async def test_a_transaction_failing_before_its_queued_prepare_was_sent(db):
    """`execute_later` queued the first use of a statement (its PREPARE with it), then the
    transaction failed before anything was sent: the statement is not believed prepared."""
    class Refused(Exception):
        pass

    def queue_then_fail_thd(cur):
        cur.execute_later(ADD_ZONE, ("never", "x"))
        raise Refused()

    for _ in range(2):  # the pool's one connection, twice
        with pytest.raises(Refused):
            await db.run(queue_then_fail_thd)

        def add_thd(cur, name):
            cur.execute(ADD_ZONE, (name, "x"))
            return cur.fetchone()[0]

        assert await db.run(add_thd, f"z{_}") > 0
    assert sorted(await db.statement(ZONE_NAMES)) == ["default", "z0", "z1"]


@pytest_twisted.ensureDeferred
async def test_an_error_keeps_the_connection(db):
    before = await db.statement(BACKEND)
    with pytest.raises(psycopg2.errors.UndefinedTable):
        await db.statement(Statement("SELECT * FROM no_such_table", None))
    assert await db.statement(BACKEND) == before


@pytest_twisted.ensureDeferred
async def test_statements_are_one_transaction_and_answer_with_the_last(db):
    before = await db.statement(BACKEND)
    await db.statements(add_zone("w1"), add_zone("w2"))
    with pytest.raises(psycopg2.errors.UniqueViolation):
        await db.statements(add_zone("w3"), add_zone("w1"))  # w3 must not stay behind
    assert sorted(await db.statement(ZONE_NAMES)) == ["default", "w1", "w2"]
    assert await db.statements(add_zone("w4"), ZONE_NAMES) == ["default", "w1", "w2", "w4"]
    assert await db.statement(BACKEND) == before  # the failed transaction left the connection idle


@pytest_twisted.ensureDeferred
async def test_statements_queue_for_the_connections_there_are(dsn):
    database = Database(dsn, reactor, max_connections=1, statement_connections=2)
    try:
        sleepers = [database.statement(Statement("SELECT pg_backend_pid() FROM pg_sleep(0.2)", None,
                                                 lambda rows: rows[0][0])) for _ in range(5)]
        pids = await defer.gatherResults([defer.Deferred.fromCoroutine(s) for s in sleepers])
        assert len(pids) == 5 and len(set(pids)) == 2
    finally:
        database.close()
    with pytest.raises(psycopg2.InterfaceError):
        await database.statement(ZONE_NAMES)


@pytest_twisted.ensureDeferred
async def test_a_statement_waiting_for_a_connection_fails_when_the_pool_closes(dsn):
    database = Database(dsn, reactor, max_connections=1, statement_connections=1)
    running = defer.Deferred.fromCoroutine(database.statement(Statement("SELECT pg_sleep(0.3)", None)))
    waiting = defer.Deferred.fromCoroutine(database.statement(ZONE_NAMES))
    database.close()
    with pytest.raises(psycopg2.InterfaceError):
        await waiting
    assert await running is None  # a statement under way ends; its connection is closed after it
    assert database._statements.busy == 0


@pytest_twisted.ensureDeferred
async def test_a_cancelled_waiter_does_not_take_the_connection(dsn):
    """A caller cancelled while it waited for a connection (its HTTP client went away) is
    skipped: the connection goes to the next one waiting, and stays the pool's."""
    database = Database(dsn, reactor, max_connections=1, statement_connections=1)
    try:
        running = defer.Deferred.fromCoroutine(database.statement(Statement("SELECT pg_sleep(0.2)", None)))
        cancelled = defer.Deferred.fromCoroutine(database.statement(ZONE_NAMES))
        waiting = defer.Deferred.fromCoroutine(database.statement(ZONE_NAMES))
        cancelled.cancel()
        with pytest.raises(defer.CancelledError):
            await cancelled
        await running
        assert await waiting == ["default"]
        assert await database.statement(ZONE_NAMES) == ["default"]
        assert database._statements.busy == 0
    finally:
        database.close()


def test_prepared_statement_text():
    statement = Prepared("x_y", "SELECT %s, '%%' || %s")
    assert statement.prepare == b"PREPARE x_y AS SELECT $1, '%' || $2"
    with pytest.raises(ValueError):
        Prepared("bad name; DROP", "SELECT 1")


@pytest_twisted.ensureDeferred
async def test_with_prepared_statements_off_nothing_is_prepared(dsn):
    """`db_prepared_statements = false` (behind pgbouncer's transaction mode): a `Prepared`
    statement goes as plain text, on the reactor and in a transaction alike."""
    database = Database(dsn, reactor, max_connections=1, statement_connections=1, prepared_statements=False)
    try:
        assert await database.statement(add_zone("p1")) > 0

        def add_and_list_thd(cur):
            cur.execute(ADD_ZONE, ("p2", "x"))
            cur.execute("SELECT name FROM pg_prepared_statements")
            return cur.fetchall()

        assert await database.run(add_and_list_thd) == []
        assert await database.statement(PREPARED_HERE) == []
        assert sorted(await database.statement(ZONE_NAMES)) == ["default", "p1", "p2"]
    finally:
        database.close()


def test_the_setting_reads_from_the_regions_toml(tmp_path):
    toml = tmp_path / "regiond.toml"
    parser = argparse.ArgumentParser()
    config.add_arguments(parser)
    assert config.from_arguments(parser.parse_args([])).db_prepared_statements is True
    toml.write_text("db_prepared_statements = false\n")
    assert config.from_arguments(parser.parse_args(["--config", str(toml)])).db_prepared_statements is False


@pytest_twisted.ensureDeferred
async def test_a_statement_cancelled_while_it_runs_drops_its_connection(dsn):
    """Its string may still be running: the connection is closed, not handed to the next caller."""
    database = Database(dsn, reactor, max_connections=1, statement_connections=1)
    try:
        first = await database.statement(BACKEND)
        running = defer.Deferred.fromCoroutine(database.statement(Statement("SELECT pg_sleep(0.3)", None)))
        reactor.callLater(0.05, running.cancel)
        with pytest.raises(defer.CancelledError):
            await running
        assert await database.statement(ZONE_NAMES) == ["default"]
        assert await database.statement(BACKEND) != first
        assert database._statements.busy == 0
    finally:
        database.close()


@pytest_twisted.ensureDeferred
async def test_a_reactor_transaction_commits_and_reads_back_in_one_round_trip(db):
    with counted() as counter:
        async with db.transaction() as tx:
            assert await tx.statements(ZONE_NAMES) == ["default"]
            names = await tx.commit(add_zone("tx-made"), then=ZONE_NAMES)
    assert names == ["default", "tx-made"]
    assert counter == [3]
    assert await db.statement(ZONE_NAMES) == ["default", "tx-made"]


@pytest_twisted.ensureDeferred
async def test_a_reactor_transaction_left_by_an_exception_rolls_back_and_keeps_its_connection(db):
    async with db.transaction() as tx:
        backend = await tx.statements(BACKEND)
    with pytest.raises(LookupError):
        async with db.transaction() as tx:
            await tx.statements(add_zone("never-kept"))
            raise LookupError("refused between two strings")
    async with db.transaction() as tx:
        assert await tx.statements(BACKEND) == backend
        assert await tx.statements(ZONE_NAMES) == ["default"]


@pytest_twisted.ensureDeferred
async def test_a_failed_string_in_a_reactor_transaction_drops_its_connection(db):
    async with db.transaction() as tx:
        backend = await tx.statements(BACKEND)
    with pytest.raises(psycopg2.errors.UniqueViolation):
        async with db.transaction() as tx:
            await tx.statements(add_zone("once"))
            await tx.commit(add_zone("once"))
    async with db.transaction() as tx:
        assert await tx.statements(BACKEND) != backend
    assert await db.statement(ZONE_NAMES) == ["default"]
