"""Periodic refresh at scale: throughput, user work beside a crowd of hung hosts, stop time.

Run from the repository root:  python -m bench.refresh [--hosts 1000] [--hung 1000] [--samples 15]

One run starts a throw-away PostgreSQL, a private LXD and a region with its local rack and
automatic refreshes every 60 s (bench/stack.py), registers the LXD, and then:

* idle: p50/p95 of user work on the real LXD host — `op=refresh`, and compose+delete of a
  small VM — with nothing else going on (the baseline of the ratios below).
* answering: a fake LXD (bench/fake_lxd.py: one HTTPS port on loopback replaying what the
  real LXD answered to one discovery) stands for --hosts VM hosts, each with its own client
  key; they are inserted due at once and the time until every one has been refreshed is
  the throughput (target: all within the 60 s interval).
* hung: --hung hosts at a loopback listener that accepts connections and never answers
  (each discovery waits out the rack's 10 s connect timeout); while they are refreshed,
  the same user work is timed again: ratios against idle (target p95 <= 2x).
* stop: SIGTERM to the region while the hung refreshes are in flight (target <= 2 s).

It is a report: the exit status is 0 even when a target is missed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Callable, Iterator

import requests

from bench.compose import SHAPE
from bench.stack import Stack, running_stack
from common import tls
from common.models import HostTarget
from devstack.daemons import REPO, wait_for
from rack.drivers.lxd import LXDDriver
from rack.drivers.lxd_pool import MAX_CLIENTS
from region.db import hosts, named
from region.db.pool import run_sync
from region.secretbox import SecretBox

INTERVAL = 60.0
STOP_TARGET = 2.0
LATENCY_TARGET = 2.0


# -- the fake LXD ---------------------------------------------------------------------------

def record_discovery(stack: Stack) -> dict[str, tuple[int, str]]:
    """What the real LXD answers to one discovery of the registered host's project."""
    pair = tls.make_self_signed("vmyard-bench-recorder", kind="ec")
    stack.lxd.trust_add(pair.cert_pem, "vmyard-bench-recorder")
    answers: dict[str, tuple[int, str]] = {}
    send = requests.Session.send

    def recording(session, request, **kwargs):
        response = send(session, request, **kwargs)
        url = urllib.parse.urlsplit(request.url)
        answers[f"{request.method} {url.path}{'?' + url.query if url.query else ''}"] = (response.status_code,
                                                                                          response.text)
        return response

    requests.Session.send = recording
    try:
        LXDDriver().discover(HostTarget("lxd", stack.lxd.address, stack.host["project"], pair.cert_pem,
                                        pair.key_pem))
    finally:
        requests.Session.send = send
    return answers


@contextlib.contextmanager
def fake_lxd(answers: dict, workdir: Path) -> Iterator[tuple[int, str]]:
    """The fake's port and its certificate's fingerprint."""
    pair = tls.make_self_signed("fake-lxd", kind="ec")
    (workdir / "answers.json").write_text(json.dumps(answers))
    (workdir / "cert.pem").write_text(pair.cert_pem)
    (workdir / "key.pem").write_text(pair.key_pem)
    port_file = workdir / "port"
    proc = subprocess.Popen([sys.executable, "-m", "bench.fake_lxd", "--port-file", str(port_file),
                             "--answers", str(workdir / "answers.json"), "--cert", str(workdir / "cert.pem"),
                             "--key", str(workdir / "key.pem")], cwd=str(REPO))
    try:
        wait_for(lambda: port_file.exists() and port_file.read_text(), 10, "the fake LXD to listen", proc)
        yield int(port_file.read_text()), tls.cert_fingerprint(pair.cert_pem)
    finally:
        proc.terminate()  # by the PID we started
        proc.wait(10)


@contextlib.contextmanager
def silent_listener() -> Iterator[int]:
    """Accepts connections (the kernel does) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(4096)
        yield sock.getsockname()[1]


# -- hosts in the database --------------------------------------------------------------------

def add_hosts(stack: Stack, prefix: str, address: str, project: str, count: int,
              fingerprint: str | None = None) -> list[int]:
    """`count` hosts at `address`, each with its own client key, due for a refresh at once;
    with `fingerprint`, its server certificate pinned as registration pins it."""
    box = SecretBox.load(stack.region.data_dir / "region.key")
    pairs = [tls.make_self_signed(f"{prefix}{i}", kind="ec") for i in range(count)]

    def add_thd(cur):
        zone, pool = named.get_default_thd(cur, named.ZONES), named.get_default_thd(cur, named.RESOURCE_POOLS)
        ids = [hosts.create_thd(cur, box, hosts.NewHost(f"{prefix}{i}", "lxd", address, project, pair.cert_pem,
                                                         pair.key_pem, zone.id, pool.id, [], 1.0, 1.0, None)).id
               for i, pair in enumerate(pairs)]
        if fingerprint:
            cur.execute("UPDATE vm_hosts SET server_fingerprint = %s WHERE id = ANY(%s)", (fingerprint, ids))
        return ids

    return run_sync(stack.dsn, add_thd)


def remove_hosts(stack: Stack, host_ids: list[int]) -> None:
    """In small transactions: the region keeps refreshing (updating) these rows meanwhile."""
    def remove_thd(cur, batch):
        for host_id in batch:
            hosts.delete_thd(cur, host_id)

    for start in range(0, len(host_ids), 20):
        run_sync(stack.dsn, remove_thd, host_ids[start:start + 20])


def rack_memory(stack: Stack) -> str:
    """The local rack's resident memory now and at its peak (it is the region's child process)."""
    region_pid = str(stack.region.proc.pid)
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
            cmdline = (status.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if fields.get("PPid", "").strip() == region_pid and b"rack.daemon" in cmdline:
            rss, peak = (int(fields[k].split()[0]) / 1024 for k in ("VmRSS", "VmHWM"))
            return f"rack RSS {rss:.0f} MiB (peak {peak:.0f} MiB)"
    return "rack RSS unknown (no local rack process found)"


def count_where(stack: Stack, host_ids: list[int], condition: str) -> int:
    def count_thd(cur):
        cur.execute(f"SELECT count(*) FROM vm_hosts WHERE id = ANY(%s) AND {condition}", (host_ids,))
        return cur.fetchone()[0]

    return run_sync(stack.dsn, count_thd)


# -- measurements ------------------------------------------------------------------------------

def timed(fn: Callable[[], None]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def user_work(stack: Stack, samples: int) -> dict[str, list[float]]:
    host_id = stack.host["id"]

    def refresh() -> None:
        status, body = stack.api.call("POST", f"vm-hosts/{host_id}/", {"op": "refresh"})
        assert status == 200, body

    def compose_and_delete() -> None:
        status, made = stack.api.call("POST", f"vm-hosts/{host_id}/", {"op": "compose", **SHAPE})
        assert status == 200, made
        status, body = stack.api.call("DELETE", f"machines/{made['system_id']}/")
        assert status == 204, body

    return {"op=refresh": [timed(refresh) for _ in range(samples)],
            "compose+delete": [timed(compose_and_delete) for _ in range(max(3, samples // 3))]}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def answering(stack: Stack, count: int, workdir: Path) -> None:
    with fake_lxd(record_discovery(stack), workdir) as (port, fingerprint):
        ids = add_hosts(stack, "fake", f"127.0.0.1:{port}", stack.host["project"], count, fingerprint)
        started = time.monotonic()
        wait_for(lambda: count_where(stack, ids, "last_refresh IS NOT NULL") == count, 600,
                 "every answering host to be refreshed")
        took = time.monotonic() - started
        after_first = rack_memory(stack)
        again = refresh_again(stack, ids)
        failed = count_where(stack, ids, "refresh_failures > 0")
    remove_hosts(stack, ids)
    needed = count / INTERVAL
    print(f"answering: {count} hosts refreshed in {took:.1f} s = {count / took:.1f} hosts/s "
          f"(needed {needed:.1f}/s: {count / took / needed:.2f}x; {failed} failed) "
          f"{verdict(took <= INTERVAL and not failed)} (all within {INTERVAL:g} s); {after_first}")
    print(f"  again at once, the rack's idle clients reused (at most {MAX_CLIENTS} kept): {again:.1f} s "
          f"= {count / again:.1f} hosts/s; {rack_memory(stack)}")


def refresh_again(stack: Stack, host_ids: list[int]) -> float:
    """Seconds until every host, made due again at once, has been refreshed once more."""
    def due_now_thd(cur):
        for host_id in host_ids:
            hosts.schedule_refresh_thd(cur, host_id, 0)
        cur.execute("SELECT now()")
        return cur.fetchone()[0]

    marked = run_sync(stack.dsn, due_now_thd)
    started = time.monotonic()
    wait_for(lambda: count_where(stack, host_ids, f"last_refresh > '{marked.isoformat()}'") == len(host_ids), 600,
             "every answering host to be refreshed again")
    return time.monotonic() - started


def hung(stack: Stack, count: int, samples: int, idle: dict[str, list[float]]) -> None:
    with silent_listener() as port:
        ids = add_hosts(stack, "hung", f"127.0.0.1:{port}", "default", count)
        started = time.monotonic()
        wait_for(lambda: count_where(stack, ids, "refresh_owner IS NOT NULL") >= 16, 60,
                 "hung hosts to be refreshing")
        busy = user_work(stack, samples)
        attempted = count_where(stack, ids, "refresh_failures > 0")
        elapsed = time.monotonic() - started
        print(f"hung: {count} hosts that never answer; {attempted} refreshes timed out in {elapsed:.0f} s "
              f"({attempted / elapsed:.1f}/s), {count_where(stack, ids, 'refresh_owner IS NOT NULL')} in flight")
        for what, times in busy.items():
            base = idle[what]
            ratio = pct(times, 0.95) / pct(base, 0.95)
            print(f"  {what:15} idle p50 {pct(base, 0.5) * 1000:7.1f} ms p95 {pct(base, 0.95) * 1000:7.1f} ms | "
                  f"hung p50 {pct(times, 0.5) * 1000:7.1f} ms p95 {pct(times, 0.95) * 1000:7.1f} ms | "
                  f"p95 {ratio:.2f}x {verdict(ratio <= LATENCY_TARGET)} (<= {LATENCY_TARGET:g}x)")
        took = timed(lambda: stack.region.stop(timeout=60))
        in_log = "periodic VM host refreshes on stop" in stack.region.output()
        print(f"stop: SIGTERM to exit {took:.2f} s with hung refreshes in flight "
              f"(cancelled: {'yes' if in_log else 'no'}) {verdict(took <= STOP_TARGET)} (<= {STOP_TARGET:g} s)")


def run(args) -> None:
    with running_stack(refresh_interval=INTERVAL) as stack, tempfile.TemporaryDirectory(prefix="vmyard-fake-") as tmp:
        user_work(stack, 2)  # warm-up
        idle = user_work(stack, args.samples)
        for what, times in idle.items():
            print(f"idle: {what:15} p50 {pct(times, 0.5) * 1000:7.1f} ms p95 {pct(times, 0.95) * 1000:7.1f} ms")
        print(f"baseline: one real-LXD refresh p50 {statistics.median(idle['op=refresh']) * 1000:.1f} ms "
              f"= {1 / statistics.median(idle['op=refresh']):.1f} hosts/s one at a time")
        print(f"before: {rack_memory(stack)}")
        answering(stack, args.hosts, Path(tmp))
        if args.hung:
            hung(stack, args.hung, args.samples, idle)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=1000, help="answering hosts (fake LXD)")
    parser.add_argument("--hung", type=int, default=1000,
                        help="hosts that accept and never answer (0: skip that phase and the stop)")
    parser.add_argument("--samples", type=int, default=15, help="user operations timed per phase")
    args = parser.parse_args(argv)
    try:
        run(args)
    except Exception as e:
        print(f"bench failed: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
