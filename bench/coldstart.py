"""Cold start of an embedded region: from exec to an API answer, initdb included.

Run from the repository root:  python -m bench.coldstart [--runs 7]

Each run starts `python -m region.daemon` on a fresh data dir (so it creates its own
PostgreSQL cluster), with no local rack, and times until `GET version/` answers 200; then
stops it (SIGTERM to its PID; the region stops its cluster) and removes the dir.  Beside
it, the parts: a bare `initdb` as the region runs it, and `import region.service` in a
fresh interpreter.  p50/p95 are printed with PASS/FAIL against the 3 s target.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from devstack.daemons import REPO, RegionProcess, http_get
from region.embedded_pg import EmbeddedPostgres

TARGET = 3.0


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def one_start(base: Path) -> float:
    region = RegionProcess.make(base / "region", dsn=None)
    started = time.perf_counter()
    region.start()
    try:
        while True:
            try:
                if http_get(region.api + "version/", 1)[0] == 200:
                    return time.perf_counter() - started
            except OSError:
                pass
            if not region.running:
                raise RuntimeError("the region exited:\n" + region.output()[-3000:])
            if time.perf_counter() - started > 120:
                raise RuntimeError("the region did not answer within 120 s")
            time.sleep(0.02)
    finally:
        region.stop()


def bare_initdb(base: Path) -> float:
    pg = EmbeddedPostgres(base / "initdb")
    started = time.perf_counter()
    pg.initdb()
    return time.perf_counter() - started


def import_time() -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import region.service"], cwd=str(REPO), check=True)
    return time.perf_counter() - started


def report(what: str, values: list[float], target: float | None = None) -> None:
    line = f"{what:28} p50 {pct(values, 0.5):5.2f} s  p95 {pct(values, 0.95):5.2f} s  (n={len(values)})"
    if target is not None:
        line += f"  {'PASS' if pct(values, 0.5) <= target else 'FAIL'} (p50 <= {target:g} s)"
    print(line)


def run(runs: int) -> None:
    starts, initdbs, imports = [], [], []
    for _ in range(runs):
        base = Path(tempfile.mkdtemp(prefix="vmyard-coldstart-", dir="/tmp"))
        base.chmod(0o711)  # the cluster may run as the service user, who must reach its dir
        try:
            starts.append(one_start(base))
            initdbs.append(bare_initdb(base))
            imports.append(import_time())
        finally:
            shutil.rmtree(base, ignore_errors=True)
    report("cold start to API answer", starts, TARGET)
    report("  initdb alone", initdbs)
    report("  import region.service", imports)
    print(f"  (mean start {statistics.mean(starts):.2f} s)")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args(argv)
    run(args.runs)


if __name__ == "__main__":
    main()
