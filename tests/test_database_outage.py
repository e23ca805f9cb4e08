"""PostgreSQL stopped and started under a running region (issue 11, item 14).

Requests during the outage get 503 with Retry-After (not a hang, not a 500); the region
reconnects by itself when the server is back, and nothing is half-written.
"""

from __future__ import annotations

import time

import pytest

from devstack.postgres import PostgresCluster
from tests.conftest import make_user, region_box
from tests.fixtures.http import Api


@pytest.fixture
def own_cluster():
    """A cluster of this test's own: stopping it must not disturb the session's."""
    cluster = PostgresCluster.start()
    yield cluster
    cluster.stop()


def test_region_answers_503_while_postgres_is_down_and_recovers_by_itself(own_cluster, start_region):
    dsn = own_cluster.new_database()
    region = start_region("outage", database=dsn)
    api = Api(region.api, make_user(dsn, region_box(region), "admin", admin=True))
    assert api.post("zones/", data={"name": "before"}).status == 200

    own_cluster.pg.stop()
    try:
        reply = api.post("zones/", data={"name": "during"})
        assert reply.status == 503, reply.text
        assert int(reply.headers["retry-after"]) > 0
        assert "database" in reply.text
        assert Api(region.api).get("version/").status == 200  # anonymous: needs no database
    finally:
        own_cluster.pg.start()

    deadline = time.monotonic() + 30
    while (status := api.get("zones/").status) != 200 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert status == 200
    names = sorted(z["name"] for z in api.get("zones/").json())
    assert names == ["before", "default"]  # "during" was never half-written
    assert api.post("zones/", data={"name": "after"}).status == 200
