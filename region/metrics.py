"""The region's Prometheus metrics, served at /MAAS/metrics.

Everything is kept as it happens (histograms and in-flight gauges updated by the request,
RPC and refresh code), except the refresh backlog, which comes from one aggregate query
over `vm_hosts` run off the reactor and cached for `STATE_TTL` seconds: a scrape never
scans machines, and a burst of scrapes costs at most one query every few seconds.
Labels stay bounded: endpoints are route templates, racks are few, hosts are never a
label (refresh lag is a histogram plus the backlog's count and maximum).
"""

from __future__ import annotations

import time
from typing import Any, Iterator

from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from twisted.logger import Logger

from region.db import hosts

log = Logger()

STATE_TTL = 5.0  # seconds a refresh-backlog reading is reused
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
OPERATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 1800.0)
QUERY_BUCKETS = (0, 1, 2, 3, 5, 8, 13, 21, 34, 55, 100, 250, 1000, 5000)
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
LAG_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0)


class RegionMetrics:
    """One region's registry; `bind` gives it the live objects its state gauges read."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        self.http_latency = Histogram(
            "vmyard_http_request_duration_seconds", "HTTP requests by route template, method and status.",
            ["endpoint", "method", "status"], buckets=LATENCY_BUCKETS, registry=reg)
        self.http_queries = Histogram(
            "vmyard_http_request_sql_queries", "SQL statements one HTTP request ran, by route template.",
            ["endpoint", "method"], buckets=QUERY_BUCKETS, registry=reg)
        self.rpc_latency = Histogram(
            "vmyard_rpc_call_duration_seconds", "Calls to racks by command, rack and outcome.",
            ["command", "rack", "outcome"], buckets=LATENCY_BUCKETS, registry=reg)
        self.host_operations = Histogram(
            "vmyard_vm_host_operation_duration_seconds",
            "VM-host operations through racks (compose, deploy, delete, power, refresh) by outcome.",
            ["operation", "outcome"], buckets=OPERATION_BUCKETS, registry=reg)
        self.refresh_lag = Histogram(
            "vmyard_refresh_lag_seconds", "How long after it was due a periodic VM-host refresh started.",
            buckets=LAG_BUCKETS, registry=reg)
        self.rack_calls = Gauge(
            "vmyard_rack_calls_in_flight", "Calls to racks awaiting an answer (user work or periodic refresh).",
            ["rack", "kind"], registry=reg)
        self._sources: dict[str, Any] = {}
        self._state: hosts.RefreshBacklog | None = None
        self._state_at = float("-inf")
        reg.register(_LiveState(self))

    def bind(self, *, rpc, databases: dict[str, Any], scheduler=None, machine_json_cache=None) -> None:
        """`machine_json_cache`: returns the listing cache (region/api/listing_cache.py) or None."""
        self._sources = {"rpc": rpc, "databases": databases, "scheduler": scheduler,
                         "machine_json_cache": machine_json_cache}

    def observe_request(self, endpoint: str, method: str, status: int, seconds: float, queries: int) -> None:
        method = method if method in KNOWN_METHODS else "other"  # a client picks it: keep the labels bounded
        self.http_latency.labels(endpoint, method, str(status)).observe(seconds)
        self.http_queries.labels(endpoint, method).observe(queries)

    async def render(self) -> bytes:
        """The exposition text, after refreshing the cached backlog if it is stale."""
        databases = self._sources.get("databases") or {}
        db = databases.get("main")
        if db is not None and time.monotonic() - self._state_at > STATE_TTL:
            self._state_at = time.monotonic()  # one query at a time, even under a burst of scrapes
            try:
                self._state = await db.run(hosts.refresh_backlog_thd)
            except Exception as e:
                log.warn("could not read the refresh backlog for metrics: {error}", error=type(e).__name__)
        return generate_latest(self.registry)


class _LiveState:
    """Gauges read at scrape time from objects already in memory (plus the cached backlog)."""

    def __init__(self, metrics: RegionMetrics) -> None:
        self.metrics = metrics

    def describe(self) -> list:
        return []  # values depend on what is bound; nothing to pre-declare

    def collect(self) -> Iterator[GaugeMetricFamily]:
        sources = self.metrics._sources
        rpc = sources.get("rpc")
        if rpc is not None:
            yield GaugeMetricFamily("vmyard_racks_connected", "Racks with a connection to this region.",
                                    value=len(rpc.connected_racks()))
        pool = GaugeMetricFamily("vmyard_db_pool_connections", "Database pool threads by state.",
                                 labels=["pool", "state"])
        for name, db in (sources.get("databases") or {}).items():
            stats = db.pool_stats()
            pool.add_metric([name, "busy"], stats.busy)
            pool.add_metric([name, "idle"], stats.idle)
            pool.add_metric([name, "waiting"], stats.waiting)
            pool.add_metric([name, "max"], stats.max)
        yield pool
        cache = sources["machine_json_cache"]() if sources.get("machine_json_cache") else None
        if cache is not None:
            yield GaugeMetricFamily("vmyard_machine_json_cache_entries", "Machines whose rendered JSON this "
                                    "region keeps for listings.", value=len(cache))
            yield GaugeMetricFamily("vmyard_machine_json_cache_bytes", "Bytes those entries take (JSON and "
                                    "bookkeeping).", value=cache.size)
        scheduler = sources.get("scheduler")
        if scheduler is not None:
            yield GaugeMetricFamily("vmyard_refresh_in_flight", "Periodic refreshes this region is running.",
                                    value=scheduler.in_flight)
        state = self.metrics._state
        if state is not None:
            yield GaugeMetricFamily("vmyard_refresh_overdue_hosts", "VM hosts due for a refresh and not yet "
                                    "being refreshed (all regions).", value=state.overdue)
            yield GaugeMetricFamily("vmyard_refresh_max_lag_seconds", "How long the most overdue VM host has "
                                    "waited past its refresh time.", value=state.max_lag)
            yield GaugeMetricFamily("vmyard_refresh_failing_hosts", "VM hosts whose last refresh failed "
                                    "(backing off).", value=state.failing)
            yield GaugeMetricFamily("vmyard_vm_hosts", "VM hosts known to the region.", value=state.total)
