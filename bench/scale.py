"""Reads at scale: the region's answers with 100 and 1,000 VM hosts (2,000 and 20,000 machines).

    python3 -m bench.scale                 # print the table
    python3 -m bench.scale --write-docs    # and write it to its section of docs/performance.md

One throw-away PostgreSQL cluster, seeded through the real schema (`region.db.seed`), and a
region started on it with refresh off and no rack; hosts' addresses are loopback addresses on
a port where nothing listens.  Per request it prints the SQL statements it ran (the region's
own count, read from /MAAS/metrics), the first request's time (once the region has warmed its
machine JSON cache) and p50/p95 over the 21 after it, the reply size,
and `GET version/` latency while a full `machines/` listing runs (how long the reactor is
held), idle latency as the baseline; then the region's RSS.  The first scale's figures are
the baseline of the ratios.  Everything is stopped by PID at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import http.client
import json
import multiprocessing
import os
import platform
import re
import shutil
import statistics
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Callable, Iterator

import attrs

from bench.stack import _admin_key
from devstack.daemons import RegionProcess, free_port
from devstack.oauth import plaintext_header
from devstack.postgres import PostgresCluster
from region.db import seed
from region.db.pool import run_sync

SCALES = ((100, 20), (1000, 20))  # (hosts, machines per host)
REPEATS = 21
DOCS = Path(__file__).resolve().parent.parent / "docs" / "performance.md"


@attrs.define
class Client:
    """One keep-alive HTTP connection to the region, OAuth-signed requests."""

    base: str
    apikey: str
    conn: http.client.HTTPConnection | None = None

    def get(self, path: str, *, signed: bool = True) -> tuple[int, bytes, float]:
        """(status, body, seconds); `path` is relative to the API, or absolute."""
        url = urllib.parse.urljoin(self.base, path)
        parts = urllib.parse.urlsplit(url)
        if self.conn is None:
            self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=600)
        headers = {"Authorization": plaintext_header(self.apikey, url, "GET")} if signed else {}
        started = time.perf_counter()
        self.conn.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""), headers=headers)
        reply = self.conn.getresponse()
        body = reply.read()
        return reply.status, body, time.perf_counter() - started


@attrs.frozen
class Measured:
    queries: int  # the first request's
    queries_then: int  # each of the timed ones' (fewer once the machine JSON cache holds the listing)
    first: float  # seconds of the first request of its kind since the region started (once the region warmed its cache)
    p50: float
    p95: float
    size: int


@attrs.frozen
class Scale:
    hosts: int
    machines: int
    requests: dict[str, Measured]
    version_idle: tuple[float, float]  # p50, max (s)
    version_during_listing: tuple[float, float]
    rss_mib: float
    peak_rss_mib: float
    warmed_in: float  # seconds from READY until the region's listing cache held every machine


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


_QUERY_SUMS = re.compile(r'^vmyard_http_request_sql_queries_sum\{(.*)\} (\S+)$', re.MULTILINE)


def _queries_so_far(api: Client) -> dict[str, float]:
    """SQL statements run by HTTP requests so far, by route and method (the region's metrics)."""
    status, body, _ = api.get("/MAAS/metrics", signed=False)
    if status != 200:
        raise RuntimeError(f"GET /MAAS/metrics: HTTP {status}")
    return {labels: float(total) for labels, total in _QUERY_SUMS.findall(body.decode())}


def _queries_between(before: dict[str, float], after: dict[str, float]) -> float:
    return sum(total - before.get(labels, 0) for labels, total in after.items())


def _measure(api: Client, path: str, repeats: int = REPEATS) -> Measured:
    before = _queries_so_far(api)
    status, body, first = api.get(path)
    after = _queries_so_far(api)
    if status != 200:
        raise RuntimeError(f"GET {path}: HTTP {status}: {body[:300]!r}")
    times = [api.get(path)[2] for _ in range(repeats)]
    then = _queries_so_far(api)
    return Measured(round(_queries_between(before, after)), round(_queries_between(after, then) / repeats), first,
                    statistics.median(times), _percentile(times, 0.95), len(body))


def _version_latencies(api: Client, done: Callable[[list[float]], bool]) -> list[float]:
    """`GET version/` over and over, until `done(the latencies so far)`."""
    times: list[float] = []
    while not done(times):
        times.append(api.get("version/", signed=False)[2])
        time.sleep(0.002)
    return times


def _list_machines(base: str, apikey: str, count: int) -> None:
    lister = Client(base, apikey)
    for _ in range(count):
        lister.get("machines/")


def _reactor_hold(base: str, apikey: str) -> tuple[float, float]:
    """p50 and max of `version/` while full `machines/` listings run (three in a row), read by
    another process: a thread of this one joining a 130 MB body would stall the poller, not
    the region."""
    lister = multiprocessing.get_context("fork").Process(target=_list_machines, args=(base, apikey, 3))
    lister.start()
    try:
        during = _version_latencies(Client(base, apikey), lambda times: not lister.is_alive())
    finally:
        lister.join()
    if lister.exitcode != 0:
        raise RuntimeError(f"the machines/ lister exited with {lister.exitcode}")
    return statistics.median(during), max(during)


def _rss_mib(pid: int) -> tuple[float, float]:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def _requests(sample: dict, only: tuple[str, ...] = ()) -> dict[str, str]:
    """The measured requests by label; `only`: just those whose label is in it."""
    every = {
        "vm-hosts/": "vm-hosts/",
        "pods/": "pods/",
        "machines/": "machines/",
        "machines/?id=X": f"machines/?id={sample['system_id']}",
        "machines/?hostname=X": f"machines/?hostname={sample['hostname']}",
        "machines/?zone=X": f"machines/?zone={seed.SEED_ZONE}",
        "machines/X/": f"machines/{sample['system_id']}/",
        "vm-hosts/X/": f"vm-hosts/{sample['host_id']}/",
    }
    return {label: path for label, path in every.items() if not only or label in only}


@contextlib.contextmanager
def _region(base: Path, dsn: str) -> Iterator[RegionProcess]:
    # One data dir for every run: the region key it holds encrypts the database's secrets.
    region = RegionProcess.make(base / "region", dsn=dsn, extra=["--vm-host-refresh-interval", "0"])
    try:
        region.start().wait_ready()
        yield region
    finally:
        region.stop()  # SIGTERM to the PID it started, then SIGKILL


def _measure_scale(base: Path, dsn: str, hosts: int, machines: int, apikey: list[str],
                   only: tuple[str, ...] = (), repeats: int = REPEATS) -> Scale:
    """`apikey`: the admin's key, made by the first run (a one-item list); `only`: the labels
    of the requests to measure (empty: all)."""
    with _region(base, dsn) as region:
        if not apikey:
            apikey.append(_admin_key(dsn, region.data_dir))
        api = Client(region.api, apikey[0])
        warmed_in = _wait_warm(api, machines)
        _, body, _ = api.get(f"machines/?hostname=seed-h{(hosts + 1) // 2}-vm1")
        [machine] = json.loads(body)
        sample = {"system_id": machine["system_id"], "hostname": machine["hostname"], "host_id": machine["pod"]["id"]}
        results = {label: _measure(api, path, repeats) for label, path in _requests(sample, only).items()}
        idle = _version_latencies(Client(region.api, apikey[0]), lambda times: len(times) >= 50)
        during = _reactor_hold(region.api, apikey[0])
        rss, peak = _rss_mib(region.proc.pid)
        return Scale(hosts, machines, results, (statistics.median(idle), max(idle)), during, rss, peak, warmed_in)


_CACHE_ENTRIES = re.compile(r"^vmyard_machine_json_cache_entries (\S+)$", re.MULTILINE)


def _wait_warm(api: Client, machines: int, limit: float = 300) -> float:
    """Seconds until the region (READY when this is called) has warmed its listing cache with
    every machine (its metrics say), so that the first listing measured is the first a client
    makes after a restart that left the region time to warm."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        status, body, _ = api.get("/MAAS/metrics", signed=False)
        found = _CACHE_ENTRIES.search(body.decode()) if status == 200 else None
        if found and float(found.group(1)) >= machines:
            return time.monotonic() - started
        time.sleep(0.05)
    raise RuntimeError(f"the region's listing cache did not hold {machines:,} machines within {limit:g} s")


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms" if seconds < 10 else f"{seconds:,.1f} s"


def _size(n: int) -> str:
    return f"{n / 1024:,.1f} KB" if n < 1024 * 1024 else f"{n / 1024 / 1024:,.1f} MB"


def _queries(m: Measured) -> str:
    return str(m.queries) if m.queries == m.queries_then else f"{m.queries} → {m.queries_then}"


def table(scales: list[Scale]) -> str:
    first, last = scales[0], scales[-1]
    head = (f"| request | queries ({first.hosts} / {last.hosts} hosts) | first {first.hosts} | p50 {first.hosts}"
            f" | p95 {first.hosts} | first {last.hosts} | p50 {last.hosts} | p95 {last.hosts} | p50 ratio"
            f" | reply {first.hosts} | reply {last.hosts} |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for label in first.requests:
        a, b = first.requests[label], last.requests[label]
        lines.append(f"| `GET {label}` | {_queries(a)} / {_queries(b)} | {_ms(a.first)} | {_ms(a.p50)} | {_ms(a.p95)}"
                     f" | {_ms(b.first)} | {_ms(b.p50)} | {_ms(b.p95)} | {b.p50 / a.p50:.2f}× | {_size(a.size)}"
                     f" | {_size(b.size)} |")
    lines.append("")
    lines.append("| | " + " | ".join(f"{s.hosts} hosts, {s.machines:,} machines" for s in scales) + " |")
    lines.append("|---|" + "---|" * len(scales))
    lines.append("| `GET version/` idle, p50 / max | "
                 + " | ".join(f"{_ms(s.version_idle[0])} / {_ms(s.version_idle[1])}" for s in scales) + " |")
    lines.append("| `GET version/` during `machines/`, p50 / max | "
                 + " | ".join(f"{_ms(s.version_during_listing[0])} / {_ms(s.version_during_listing[1])}"
                              for s in scales) + " |")
    lines.append("| region RSS after the runs / peak | "
                 + " | ".join(f"{s.rss_mib:,.0f} / {s.peak_rss_mib:,.0f} MiB" for s in scales) + " |")
    lines.append("| listing cache warm after READY | " + " | ".join(_ms(s.warmed_in) for s in scales) + " |")
    return "\n".join(lines)


SECTION = "## Reads at scale: listings at 100 and 1,000 VM hosts"


def write_docs(text: str) -> None:
    """Replace this benchmark's section of docs/performance.md (other benchmarks' stay)."""
    section = (
        f"{SECTION}\n\n"
        "Measured by `python3 -m bench.scale --write-docs`, which rewrites this section only\n"
        "(bench/README.md says what it does). Queries are the SQL statements the region ran for one\n"
        "request (its own count, from /MAAS/metrics), the OAuth nonce and token checks included\n"
        "(a → b: the first request, then each next one); \"first\" is the first request of its kind\n"
        "since the region started and warmed its machine JSON cache (its metrics count the machines\n"
        "kept; the time that took is in the last table), p50/p95 over the 21 requests after it on one keep-alive\n"
        "connection (the cache warm); ratios are against the smaller site in the same run.\n\n"
        f"Measured {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC on {platform.machine()},"
        f" {os.cpu_count()} cores (load average {os.getloadavg()[0]:.1f}), Python {platform.python_version()}.\n\n"
        + text + "\n")
    current = DOCS.read_text() if DOCS.exists() else "# Performance\n"
    start = current.find(SECTION)
    if start < 0:
        DOCS.write_text(current.rstrip("\n") + "\n\n" + section)
        return
    end = current.find("\n## ", start + len(SECTION))
    DOCS.write_text(current[:start] + section + (current[end:] if end >= 0 else ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write-docs", action="store_true", help=f"also write the table to its section of {DOCS}")
    parser.add_argument("--hosts", type=int, nargs="+", choices=[h for h, _ in SCALES], default=[h for h, _ in SCALES],
                        help="measure only these sites (the seed still grows through the smaller ones)")
    parser.add_argument("--only", nargs="+", default=[], metavar="LABEL",
                        help="measure only these requests, e.g. 'machines/' 'machines/?zone=X'")
    parser.add_argument("--repeats", type=int, default=REPEATS, help="requests timed per line")
    args = parser.parse_args(argv)
    if args.write_docs and (args.only or len(args.hosts) < len(SCALES) or args.repeats != REPEATS):
        parser.error("--write-docs needs every request at every site, timed the usual number of times")
    pg = PostgresCluster.start()
    base = Path(tempfile.mkdtemp(prefix="vmyard-bench-scale-", dir="/tmp"))
    try:
        dsn = pg.new_database()
        port = free_port()  # nothing listens there: refresh is off, and no host is reached
        scales, seeded_hosts, apikey = [], 0, []
        for hosts, per_host in SCALES:
            started = time.monotonic()
            seeded = run_sync(dsn, seed.seed_thd, hosts=hosts - seeded_hosts, machines_per_host=per_host, port=port)
            seeded_hosts = seeded.hosts
            print(f"seeded {seeded.hosts:,} hosts, {seeded.machines:,} machines in {time.monotonic() - started:.1f} s",
                  file=sys.stderr)
            if hosts in args.hosts:
                scales.append(_measure_scale(base, dsn, seeded.hosts, seeded.machines, apikey, tuple(args.only),
                                             args.repeats))
        text = table(scales)
        print(text)
        if args.write_docs:
            write_docs(text)
        return 0
    finally:
        pg.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
