"""`Database.run` against the real PostgreSQL: BEGIN travels with the first statement, yet a
transaction is still one REPEATABLE READ unit that commits whole or not at all."""

from __future__ import annotations

import psycopg2
import psycopg2.errors
import pytest
import pytest_twisted
from twisted.internet import defer

from region.db.pool import query_counter, run_sync
from tests.fixtures.services import service_region  # noqa: F401  (fixture)


def _table_thd(cur) -> None:
    cur.execute("CREATE TABLE IF NOT EXISTS pool_probe (id int PRIMARY KEY, n int NOT NULL)")


def _rows(dsn: str) -> list[tuple[int, int]]:
    def read_thd(cur):
        cur.execute("SELECT id, n FROM pool_probe ORDER BY id")
        return cur.fetchall()
    return run_sync(dsn, read_thd)


def _server_state_thd(cur) -> tuple[str, int]:
    cur.execute("SHOW transaction_isolation")
    isolation = cur.fetchone()[0]
    cur.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = pg_backend_pid() AND xact_start IS NOT NULL")
    return isolation, cur.fetchone()[0]


@pytest_twisted.ensureDeferred
async def test_statements_run_in_one_repeatable_read_transaction_and_commit(service_region):
    db = service_region.db
    await db.run(_table_thd)
    assert await db.run(_server_state_thd) == ("repeatable read", 1)

    def override_thd(cur):  # the placement lock's way of choosing its own level
        cur.execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED; SHOW transaction_isolation")
        return cur.fetchone()[0]

    assert await db.run(override_thd) == "read committed"

    def insert_thd(cur):
        cur.executemany("INSERT INTO pool_probe (id, n) VALUES (%s, %s)", [(1, 10), (2, 20)])
        cur.execute(b"UPDATE pool_probe SET n = n + 1 WHERE id = %s RETURNING n", (1,))
        return cur.fetchone()[0], cur.rowcount

    counter = [0]
    token = query_counter.set(counter)
    try:
        assert await db.run(insert_thd) == (11, 1)
    finally:
        query_counter.reset(token)
    assert counter == [2]  # the fn's own statements: BEGIN and COMMIT are not counted
    assert _rows(service_region.dsn) == [(1, 11), (2, 20)]
    assert await db.run(lambda cur: "no statement") == "no statement"


@pytest_twisted.ensureDeferred
async def test_a_failure_rolls_back_everything_and_the_connection_stays_usable(service_region):
    db = service_region.db
    await db.run(_table_thd)

    def insert_then_fail_thd(cur):
        cur.execute("INSERT INTO pool_probe (id, n) VALUES (1, 1)")
        raise ValueError("refused after the write")

    def fail_first_thd(cur):
        cur.execute("INSERT INTO pool_probe (id, n) VALUES (2, NULL)")

    with pytest.raises(ValueError):
        await db.run(insert_then_fail_thd)
    with pytest.raises(psycopg2.errors.NotNullViolation):
        await db.run(fail_first_thd)
    assert _rows(service_region.dsn) == []
    # Every pooled connection is idle again, none left in an aborted transaction.
    results = await defer.gatherResults([db.run_deferred(_server_state_thd) for _ in range(8)])
    assert results == [("repeatable read", 1)] * 8


@pytest_twisted.ensureDeferred
async def test_a_serialization_failure_is_retried_in_a_new_transaction(service_region):
    db = service_region.db
    await db.run(_table_thd)
    run_sync(service_region.dsn, lambda cur: cur.execute("INSERT INTO pool_probe (id, n) VALUES (1, 0)"))
    attempts = []

    def bump_thd(cur):
        cur.execute("SELECT n FROM pool_probe WHERE id = 1")  # the snapshot is taken here
        attempts.append(cur.fetchone()[0])
        if len(attempts) == 1:  # another writer commits in between: this update must fail and retry
            conn = psycopg2.connect(service_region.dsn)
            with conn, conn.cursor() as other:
                other.execute("UPDATE pool_probe SET n = n + 100 WHERE id = 1")
            conn.close()
        cur.execute("UPDATE pool_probe SET n = n + 1 WHERE id = 1")

    await db.run(bump_thd)
    assert attempts == [0, 100]
    assert _rows(service_region.dsn) == [(1, 101)]


@pytest_twisted.ensureDeferred
async def test_a_statement_run_later_travels_with_the_next_one_or_the_commit(service_region):
    db = service_region.db
    await db.run(_table_thd)

    def later_then_read_thd(cur):
        cur.execute_later("INSERT INTO pool_probe (id, n) SELECT 1, 47 + length('50%')")  # a % not interpolated
        cur.execute("SELECT n, '100%%' FROM pool_probe WHERE id = %s", (1,))  # sees the row inserted before it
        seen = cur.fetchone()
        cur.execute_later("INSERT INTO pool_probe (id, n) VALUES (2, 60)")
        return seen

    assert await db.run(later_then_read_thd) == (50, "100%")
    assert _rows(service_region.dsn) == [(1, 50), (2, 60)]  # the last one went with the COMMIT

    def later_fails_at_commit_thd(cur):
        cur.execute("UPDATE pool_probe SET n = n + 1")
        cur.execute_later("INSERT INTO pool_probe (id, n) VALUES (3, NULL)")

    with pytest.raises(psycopg2.errors.NotNullViolation):
        await db.run(later_fails_at_commit_thd)
    assert _rows(service_region.dsn) == [(1, 50), (2, 60)]  # the update went with it
    assert await db.run(_server_state_thd) == ("repeatable read", 1)
