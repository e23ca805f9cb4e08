"""Compose/decompose latency through vmyard against direct pylxd, and a capacity race.

Run from the repository root:  python -m bench.compose [--iterations 30] [--concurrency 100] [--room 50]
                                  [--region-tree PATH]

One run starts its own throw-away PostgreSQL cluster, a private LXD daemon (own
LXD_DIR, HTTPS on 127.0.0.1, a `dir` pool, no networks) and a region with its
local rack (`--vm-host-refresh-interval 0`); it registers the LXD as a VM host
with its trust password and stops everything it started, by PID, at the end.

* baseline: pylxd with a trusted client certificate, in the project vmyard
  created, sends the exact definition vmyard's driver would
  (`rack.drivers.lxd_compose.instance_definition` for cores=1, memory=1024 MiB,
  storage root:1): `instances.create(definition, wait=True)`, then
  `instance.delete(wait=True)`.
* vmyard: the same VM through the REST API, timed end to end from the client:
  `POST vm-hosts/{id}/ op=compose`, then `DELETE machines/{system_id}/`, on one keep-alive
  HTTP connection (as MAAS clients keep theirs, and as the baseline's pylxd session does).
  Iterations alternate the two (after warm-ups) so drift hits both alike; p50,
  p95 and vmyard/baseline ratios are printed with PASS/FAIL against <= 1.25x.
* race: the host's recorded capacity is set (in the database) to room for
  exactly --room one-core VMs; --concurrency composes are fired at once; the
  successes, 409 refusals, other errors, wall time and throughput are printed,
  LXD is checked to hold exactly as many VMs as succeeded, then all are
  decomposed at once through the API.

--region-tree runs the region and its rack from another checkout (a `git worktree` of an
earlier commit): the same bench, LXD and client code against that commit's region.

It is a report: the exit status is 0 even when a target fails (1 on error).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg2
import pylxd
import requests
import urllib3
from prometheus_client.parser import text_string_to_metric_families

from bench.stack import Client, KeepAliveClient, Stack, running_stack
from common import tls
from common.models import ComposeRequest, RequestedDisk
from rack.drivers.lxd_compose import instance_definition, kernel_architecture

MIB, GB = 2**20, 1000**3
SHAPE = {"cores": "1", "memory": "1024", "storage": "root:1"}
RACE_SHAPE = {"cores": "1", "memory": "1024", "storage": "root:0.1"}
WARMUPS = 2
TARGET = 1.25  # issue 16: compose + decompose through the API within 1.25x of direct pylxd


# -- baseline: direct pylxd --------------------------------------------------------------------

@contextlib.contextmanager
def pylxd_client(stack: Stack):
    """A pylxd client with a freshly trusted certificate, sessions as the driver makes them."""
    pair = tls.make_self_signed("vmyard-bench-baseline")
    stack.lxd.trust_add(pair.cert_pem, "vmyard-bench-baseline")
    with tempfile.TemporaryDirectory(prefix="vmyard-bench-cert-") as tmp:
        cert = (str(Path(tmp, "client.crt")), str(Path(tmp, "client.key")))
        Path(cert[0]).write_text(pair.cert_pem)
        Path(cert[1]).write_text(pair.key_pem)
        session = requests.Session()
        session.trust_env, session.verify, session.cert = False, False, cert
        try:
            yield pylxd.Client(endpoint=stack.lxd.url, cert=cert, verify=False, session=session,
                               project=stack.host["project"], timeout=(10, 300))
        finally:
            session.close()


def baseline_definition(host: dict, name: str) -> dict:
    """What vmyard sends for SHAPE on this host (its first architecture, its default pool)."""
    arch = host["architectures"][0]
    pool = next(p["name"] for p in host["storage_pools"] if p["default"])
    request = ComposeRequest(instance_name=name, architecture=arch, cores=1,
                             memory=1024 * MIB, disks=[RequestedDisk("root", 1 * GB, pool)])
    return instance_definition(request, kernel_architecture(arch))


def timed(fn):
    t = time.perf_counter()
    result = fn()
    return time.perf_counter() - t, result


def baseline_cycle(client: pylxd.Client, host: dict) -> tuple[float, float]:
    definition = baseline_definition(host, f"base-{uuid.uuid4().hex[:8]}")
    t_create, instance = timed(lambda: client.instances.create(definition, wait=True))
    t_delete, _ = timed(lambda: instance.delete(wait=True))
    return t_create, t_delete


# -- vmyard: REST ----------------------------------------------------------------------------

def compose(api: Client, host_id: int, shape: dict) -> tuple[int, object]:
    return api.call("POST", f"vm-hosts/{host_id}/", {"op": "compose", **shape})


def vmyard_cycle(api: Client, host_id: int) -> tuple[float, float]:
    t_create, (status, body) = timed(lambda: compose(api, host_id, SHAPE))
    if status != 200:
        raise RuntimeError(f"compose failed: HTTP {status}: {body}")
    t_delete, (status, body2) = timed(lambda: api.call("DELETE", f"machines/{body['system_id']}/"))
    if status != 204:
        raise RuntimeError(f"decompose failed: HTTP {status}: {body2}")
    return t_create, t_delete


def check_same_shape(stack: Stack) -> str:
    """Compose one VM through vmyard and compare what LXD holds with the baseline definition."""
    status, body = compose(stack.api, stack.host["id"], SHAPE)
    if status != 200:
        raise RuntimeError(f"compose failed: HTTP {status}: {body}")
    name = stack.api.call("GET", f"machines/{body['system_id']}/")[1]["hostname"]
    got = lxd_query(stack, f"/1.0/instances/{name}?project={stack.host['project']}")
    want = baseline_definition(stack.host, name)
    stack.api.call("DELETE", f"machines/{body['system_id']}/")
    same = (got["devices"] == want["devices"] and got["profiles"] == want["profiles"]
            and all(got["config"].get(k) == v for k, v in want["config"].items()))
    if not same:
        raise RuntimeError(f"vmyard's VM differs from the baseline definition:\n{got}\nvs\n{want}")
    return "identical config limits, devices and profiles"


def latencies(stack: Stack, client: pylxd.Client, iterations: int) -> dict[str, list[tuple[float, float]]]:
    api = KeepAliveClient(stack.api.base, stack.api.apikey)
    runs = {"baseline": lambda: baseline_cycle(client, stack.host),
            "vmyard": lambda: vmyard_cycle(api, stack.host["id"])}
    out: dict[str, list] = {name: [] for name in runs}
    for i in range(WARMUPS + iterations):
        for name in (("baseline", "vmyard") if i % 2 == 0 else ("vmyard", "baseline")):
            sample = runs[name]()
            if i >= WARMUPS:
                out[name].append(sample)
    api.close()
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report_latency(samples: dict[str, list[tuple[float, float]]]) -> None:
    ops = {"compose": lambda s: s[0], "decompose": lambda s: s[1], "both": lambda s: s[0] + s[1]}
    print(f"{'':<11}{'baseline p50':>13}{'p95':>9}{'vmyard p50':>12}{'p95':>9}"
          f"{'ratio p50':>11}{'p95':>8}   target <= {TARGET:.2f}x")
    for op, pick in ops.items():
        base = [pick(s) for s in samples["baseline"]]
        vm = [pick(s) for s in samples["vmyard"]]
        b50, b95, v50, v95 = pct(base, .5), pct(base, .95), pct(vm, .5), pct(vm, .95)
        r50, r95 = v50 / b50, v95 / b95
        verdict = "PASS" if r50 <= TARGET and r95 <= TARGET else "FAIL"
        print(f"{op:<11}{ms(b50):>13}{ms(b95):>9}{ms(v50):>12}{ms(v95):>9}"
              f"{r50:>10.2f}x{r95:>7.2f}x   {verdict}")


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.0f} ms"


# -- race --------------------------------------------------------------------------------------

def set_room(dsn: str, host_id: int, room: int, concurrency: int) -> str:
    """Room for exactly `room` 1-core VMs; memory (and storage, tiny disks) never the limit."""
    cores, ratio = (room // 10, 10.0) if room % 10 == 0 else (room, 1.0)
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("UPDATE vm_hosts SET cores = %s, cpu_over_commit_ratio = %s,"
                        " memory = GREATEST(memory, %s) WHERE id = %s",
                        (cores, ratio, 2 * concurrency * 1024 * MIB, host_id))
    finally:
        conn.close()
    return f"vm_hosts.cores={cores} x cpu_over_commit_ratio {ratio:g}"


def region_share(stack: Stack) -> None:
    """Where the vmyard side's time went, from the region's own /MAAS/metrics (warm-ups included):
    per request its SQL statements, its duration, and the rack operation inside it."""
    with requests.get(stack.region.url + "metrics", timeout=30) as r:
        families = {f.name: f for f in text_string_to_metric_families(r.text)}

    def mean(family: str, **labels) -> tuple[float, float]:
        found = {s.name.rsplit("_", 1)[-1]: s.value for s in families[family].samples
                 if s.name.endswith(("_sum", "_count")) and labels.items() <= s.labels.items()}
        return found.get("sum", 0.0), found.get("count", 0.0)

    print("region share (means): request = region + rack operation")
    for what, endpoint, method, operation in (("compose", "/MAAS/api/2.0/vm-hosts/{id}/", "POST", "compose"),
                                              ("decompose", "/MAAS/api/2.0/machines/{system_id}/", "DELETE", "delete")):
        took, count = mean("vmyard_http_request_duration_seconds", endpoint=endpoint, method=method)
        queries, _ = mean("vmyard_http_request_sql_queries", endpoint=endpoint, method=method)
        rack, rack_count = mean("vmyard_vm_host_operation_duration_seconds", operation=operation, outcome="ok")
        if not count or not rack_count:
            seen = sorted({s.labels.get("endpoint") for s in families["vmyard_http_request_duration_seconds"].samples
                           if s.labels.get("method") == method})
            print(f"  {what}: no figures for {method} {endpoint} (seen: {seen})")
            continue
        print(f"  {what:9} {count:.0f} requests: {queries / count:.1f} SQL statements, request {ms(took / count)}, "
              f"rack {ms(rack / rack_count)}, region {ms(took / count - rack / rack_count)}")


def fire_at_once(calls: list) -> tuple[list, float]:
    """Run every call in its own thread, released together; (results, wall seconds)."""
    barrier = threading.Barrier(len(calls))

    def run(call):
        barrier.wait()
        start = time.perf_counter()
        try:
            result = call()
        except Exception as e:  # a dropped connection counts as an error, not a crash
            result = (None, f"{type(e).__name__}: {e}")
        return start, time.perf_counter(), result

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        done = list(pool.map(run, calls))
    wall = max(end for _, end, _ in done) - min(start for start, _, _ in done)
    return [result for _, _, result in done], wall


def lxd_query(stack: Stack, path: str):
    return json.loads(stack.lxd.lxc("query", path))


def lxd_vm_count(stack: Stack) -> int:
    return len(lxd_query(stack, f"/1.0/instances?project={stack.host['project']}"))


def ok(flag: bool) -> str:
    return "OK" if flag else "MISMATCH"


def race(stack: Stack, room: int, concurrency: int) -> None:
    api, hid = stack.api, stack.host["id"]
    limit = set_room(stack.dsn, hid, room, concurrency)
    shape = " ".join(f"{k}={v}" for k, v in RACE_SHAPE.items())
    print(f"\nrace: room for {room} VMs ({limit}), {concurrency} composes at once ({shape})")
    results, wall = fire_at_once([lambda: compose(api, hid, RACE_SHAPE)] * concurrency)
    made = [body["system_id"] for status, body in results if status == 200]
    refused = [body for status, body in results if status == 409]
    errors = [(status, body) for status, body in results if status not in (200, 409)]
    print(f"  successes {len(made)}, refused (409) {len(refused)}, other errors {len(errors)}; "
          f"wall {wall:.2f} s, {len(made) / wall:.1f} composes/s ({concurrency / wall:.1f} requests/s)")
    if refused:
        print(f"  a refusal: {str(refused[0])[:160]}")
    for status, body in errors[:3]:
        print(f"  an error: HTTP {status}: {str(body)[:160]}")
    in_lxd = lxd_vm_count(stack)
    machines = len(api.call("GET", "machines/")[1])
    print(f"  check: LXD project {stack.host['project']} holds {in_lxd} VMs, region lists {machines} "
          f"machines, successes {len(made)}, room {room}: "
          f"{ok(in_lxd == machines == len(made) == min(room, concurrency))}")
    if not made:
        return
    results, wall = fire_at_once([lambda sid=sid: api.call("DELETE", f"machines/{sid}/") for sid in made])
    deleted = sum(1 for status, _ in results if status == 204)
    left = lxd_vm_count(stack)
    print(f"  decompose: {len(made)} DELETEs at once, {deleted} x 204; wall {wall:.2f} s, "
          f"{deleted / wall:.1f} decomposes/s; LXD now holds {left} VMs: {ok(left == 0 and deleted == len(made))}")


# -- main --------------------------------------------------------------------------------------

def run(args) -> None:
    urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)  # LXD's self-signed cert
    t0 = time.monotonic()
    with running_stack(region_tree=args.region_tree) as stack:
        host = stack.host
        print(f"vmyard compose benchmark: 127.0.0.1, private LXD {host['version']} (dir pool), "
              f"VM host {host['name']}, project {host['project']}; stack up in {time.monotonic() - t0:.0f} s")
        print(f"region and rack from {args.region_tree or 'this checkout'}")
        with pylxd_client(stack) as client:
            print(f"VM: cores=1 memory=1024 MiB storage=root:1 (1 GB), empty, never started; "
                  f"vmyard vs baseline definition: {check_same_shape(stack)}")
            print(f"baseline: pylxd instances.create(wait=True) + instance.delete(wait=True)\n"
                  f"vmyard:   POST vm-hosts/{host['id']}/ op=compose + DELETE machines/{{id}}/ (HTTP keep-alive, "
                  f"OAuth)\n"
                  f"{args.iterations} iterations each, alternating, after {WARMUPS} warm-ups each")
            samples = latencies(stack, client, args.iterations)
        report_latency(samples)
        spread = statistics.pstdev(s[0] for s in samples["baseline"])
        print(f"(baseline compose stdev {ms(spread)})")
        region_share(stack)
        race(stack, args.room, args.concurrency)
    print(f"\nall stopped; {time.monotonic() - t0:.0f} s in all")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.compose", description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=30, help="measured compose+decompose cycles (default 30)")
    parser.add_argument("--concurrency", type=int, default=100, help="composes fired at once in the race (default 100)")
    parser.add_argument("--room", type=int, default=50, help="VMs the host has room for in the race (default 50)")
    parser.add_argument("--region-tree", type=Path, help="run the region and rack from this checkout instead")
    args = parser.parse_args(argv)
    if args.iterations < 1 or args.concurrency < 1 or args.room < 1:
        parser.error("--iterations, --concurrency and --room must be at least 1")
    run(args)


if __name__ == "__main__":
    main()
