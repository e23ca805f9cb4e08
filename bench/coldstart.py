"""Cold start of an embedded region: from exec to an API answer, initdb included.

Run from the repository root:
    python -m bench.coldstart [--runs 7] [--base COMMIT] [--compiled] [--template] [--remove-between] [--dir DIR]

Each run starts `python -m region.daemon` on a fresh data dir (so it creates its own
PostgreSQL cluster), with no local rack, and times until `GET version/` answers 200 (and,
as a phase, until the region says it is ready, once the new cluster is flushed); then
stops it (SIGTERM to its PID; the region stops its cluster).  The data dirs are made under
`--dir` (default /var/tmp, not /tmp) and removed at the end, not between runs
(`--remove-between` does): on ext4 without a journal (this test machine's root file
system), creating a file skips every inode freed in the last ~30 s in its block group, and
the test suites here free thousands in /tmp's (each test's database dropped, each cluster
removed).  In /tmp an initdb spent 0.32-0.56 s of system CPU against 0.13-0.19 s in /var/tmp
in the same minute (openat: 40% of initdb's `perf` samples, 43% of the migrations'), which
a first start in /var/lib/vmyard does not.  The
region's log is read as it is written, so each phase is timed from exec by when its line
appears.  With `--base`, the same start of that commit (exported with `git archive` to a
temporary dir) alternates with this tree's, first one then the other.  `--compiled` runs
with bytecode cached in a private dir (warmed by a discarded start), as an installed
package would; otherwise the environment decides (PYTHONDONTWRITEBYTECODE compiles every
module on each start).  `--template` makes a template cluster first (region/pg_template.py,
an install-time step) for this tree's starts to copy instead of running initdb.  Beside it,
the parts: a bare `initdb` as the region runs it, and
`import region.service` in a fresh interpreter.  p50/p95 are printed with PASS/FAIL
against the 3 s target.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from devstack.daemons import REPO, RegionProcess, http_get
from region import pg_template
from region.embedded_pg import EmbeddedPostgres

TARGET = 3.0
# Phase → the region log line that ends it (debug level; see region/daemon.py, service.py,
# embedded_pg.py).  Lines are seen by polling the log, so each time is late by up to ~5 ms.
PHASES = (
    ("cluster made", "the new cluster's files are made"),
    ("imports done", "region modules loaded"),
    ("postgres accepting", "the embedded PostgreSQL accepts connections"),
    ("database created", "database vmyard ready"),
    ("migrations applied", "database schema at head"),
    ("secrets loaded", "region key, CA and enrolment secret loaded"),
    ("site listening", "HTTP listening on port"),
    ("ready (cluster flushed)", "region ready"),
)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class _LogWatch(threading.Thread):
    """Notes when each phase's line first appears in the region's log."""

    def __init__(self, log: Path, started: float) -> None:
        super().__init__(daemon=True)
        self.log, self.started, self.seen, self.done = log, started, {}, threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            text = self.log.read_text(errors="replace") if self.log.exists() else ""
            now = time.perf_counter() - self.started
            for phase, line in PHASES:
                if phase not in self.seen and line in text:
                    self.seen[phase] = now
            self.done.wait(0.005)


def one_start(base: Path, tree: Path, env: dict[str, str]) -> dict[str, float]:
    """Seconds from exec to each phase and to the first answer ("answer")."""
    region = RegionProcess.make(base / "region", dsn=None, env={**env, "PYTHONPATH": str(tree)})
    region.args.insert(1, "-P")  # modules from `tree` (PYTHONPATH), not from the working dir
    started = time.perf_counter()
    watch = _LogWatch(region.log, started)
    watch.start()
    region.start()
    try:
        while True:
            try:
                if http_get(region.api + "version/", 1)[0] == 200:
                    answered = time.perf_counter() - started
                    break
            except OSError:
                pass
            if not region.running:
                raise RuntimeError("the region exited:\n" + region.output()[-3000:])
            if time.perf_counter() - started > 120:
                raise RuntimeError("the region did not answer within 120 s")
            time.sleep(0.005)
        while "ready (cluster flushed)" not in watch.seen and region.running \
                and time.perf_counter() - started < 120:
            time.sleep(0.005)
    finally:
        region.stop()
        watch.done.set()
        watch.join()
    return {**watch.seen, "answer": answered}


def bare_initdb(base: Path) -> float:
    pg = EmbeddedPostgres(base / "initdb")
    started = time.perf_counter()
    try:
        pg.initdb()
        return time.perf_counter() - started
    finally:
        pg.stop()  # no server ran: this removes the socket dir initdb's preparation made in the temp dir


def import_time(env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import region.service"], cwd=str(REPO), check=True,
                   env={**os.environ, **env})
    return time.perf_counter() - started


def report(what: str, values: list[float], target: float | None = None) -> None:
    line = f"{what:28} p50 {pct(values, 0.5):5.2f} s  p95 {pct(values, 0.95):5.2f} s  (n={len(values)})"
    if target is not None:
        line += f"  {'PASS' if pct(values, 0.5) <= target else 'FAIL'} (p50 <= {target:g} s)"
    print(line)


def export_commit(commit: str, into: Path) -> Path:
    tree = into / "tree"
    tree.mkdir()
    archive = subprocess.run(["git", "archive", commit], cwd=str(REPO), check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree


def new_base(scratch: Path) -> Path:
    """A fresh dir for one run under `scratch`."""
    base = Path(tempfile.mkdtemp(prefix="vmyard-coldstart-", dir=scratch))
    base.chmod(0o711)  # the cluster may run as the service user, who must reach its dir
    return base


def start_once(tree: Path, env: dict[str, str], scratch: Path, remove_between: bool) -> dict[str, float]:
    base = new_base(scratch)
    try:
        return one_start(base, tree, env)
    finally:
        if remove_between:
            shutil.rmtree(base, ignore_errors=True)


def run(runs: int, base_commit: str | None, compiled: bool, template: bool, remove_between: bool,
        under: Path) -> None:
    scratch = Path(tempfile.mkdtemp(prefix="vmyard-coldstart-trees-", dir=under))
    scratch.chmod(0o711)
    runs_dir = scratch / "runs"
    runs_dir.mkdir()
    env = {"PYTHONDONTWRITEBYTECODE": "", "PYTHONPYCACHEPREFIX": str(scratch / "pyc")} if compiled else {}
    # A template cluster in the default place would change what is measured: only --template
    # uses one, and only for the region's starts (never for "initdb alone").
    os.environ["VMYARD_PG_TEMPLATE_DIR"] = str(scratch / "no-template")
    env["VMYARD_PG_TEMPLATE_DIR"] = str(scratch / ("pg-template" if template else "no-template"))
    if template:
        pg_template.make(scratch / "pg-template")
    trees = {"now": REPO}
    if base_commit:
        trees["base"] = export_commit(base_commit, scratch)
    try:
        if compiled:
            for tree in trees.values():
                start_once(tree, env, runs_dir, remove_between)  # fills the bytecode cache
        results: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
        for i in range(runs):
            order = list(trees) if i % 2 == 0 else list(reversed(trees))
            for name in order:
                results[name].append(start_once(trees[name], env, runs_dir, remove_between))
                print(f"run {i + 1} {name}: {results[name][-1]['answer']:.2f} s  (load {os.getloadavg()[0]:.2f})",
                      flush=True)
        initdbs, imports = [], []
        for _ in range(runs):
            base = new_base(runs_dir)
            try:
                initdbs.append(bare_initdb(base))
            finally:
                if remove_between:
                    shutil.rmtree(base, ignore_errors=True)
            imports.append(import_time(env))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    for name, starts in results.items():
        label = "this tree" if name == "now" else f"base {base_commit}"
        report(f"cold start to API answer ({label})", [s["answer"] for s in starts], TARGET)
        for phase, _ in PHASES:
            times = [s[phase] for s in starts if phase in s]
            if times:
                print(f"    {phase:24} at p50 {pct(times, 0.5):5.2f} s (n={len(times)})")
        print(f"    mean start {statistics.mean(s['answer'] for s in starts):.2f} s")
    if base_commit:
        ratios = [n["answer"] / b["answer"] for n, b in zip(results["now"], results["base"])]
        print(f"now / base per round: {', '.join(f'{r:.2f}' for r in ratios)} (median {statistics.median(ratios):.2f})")
    report("initdb alone", initdbs)
    report("import region.service", imports)
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--base", metavar="COMMIT", help="alternate with a start of this commit")
    parser.add_argument("--compiled", action="store_true", help="with bytecode cached, as when installed")
    parser.add_argument("--template", action="store_true",
                        help="new clusters copy a template cluster (region.pg_template) made first")
    parser.add_argument("--remove-between", action="store_true",
                        help="remove each run's dir before the next run (as this bench did before 2026-11-30)")
    parser.add_argument("--dir", type=Path, default=Path("/var/tmp"),
                        help="where the runs' data dirs are made (default /var/tmp; before 2026-11-30: /tmp)")
    args = parser.parse_args(argv)
    run(args.runs, args.base, args.compiled, args.template, args.remove_between, args.dir)


if __name__ == "__main__":
    main()
