"""Shared fixtures: a real PostgreSQL cluster, real region and rack daemons."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from region.db import secrets, users
from region.db.pool import run_sync
from region.secretbox import SecretBox
from tests.fixtures.daemons import RackProcess, RegionProcess
from tests.fixtures.libvirt import libvirt_lab  # noqa: F401  (session fixture: a real libvirtd over ssh)
from tests.fixtures.http import Api
from tests.fixtures.postgres import PostgresCluster

# Requests and pylxd must not pick up a CA bundle from the environment.
for var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
    os.environ.pop(var, None)


# -- skips fail the run ---------------------------------------------------------------------------
# scripts/install-deps.sh --test provides every prerequisite a test checks for (bridges via
# `ip link`, Go and gomaasapi, the libmaas virtualenv, LXD, PostgreSQL), so a skip means a
# broken setup.  A developer may opt out with VMYARD_ALLOW_SKIPS=1; CI (CI=true) never can.

def skips_allowed() -> bool:
    return os.environ.get("VMYARD_ALLOW_SKIPS") == "1" and os.environ.get("CI", "").lower() != "true"


_skipped: list[str] = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    report = (yield).get_result()
    if report.skipped and not hasattr(report, "wasxfail"):
        _skipped.append(report.nodeid)
        if not skips_allowed():
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            report.outcome = "failed"
            report.longrepr = f"skipped without VMYARD_ALLOW_SKIPS=1: {reason}"


def pytest_collectreport(report) -> None:
    if report.skipped:  # a whole module skipped
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus) -> None:
    if _skipped and not skips_allowed() and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter) -> None:
    if not _skipped:
        terminalreporter.write_line("skipped: 0")
    elif skips_allowed():
        terminalreporter.write_line(f"skipped: {len(_skipped)} (allowed by VMYARD_ALLOW_SKIPS=1)", yellow=True)
    else:
        terminalreporter.write_line(f"skipped: {len(_skipped)}; failing the run: every prerequisite is "
                                    "installed by scripts/install-deps.sh --test (set VMYARD_ALLOW_SKIPS=1 "
                                    "to allow skips locally; never honoured when CI=true)", red=True)
        for nodeid in _skipped:
            terminalreporter.write_line(f"  {nodeid}", red=True)


@pytest.fixture(scope="session")
def pg_cluster():
    cluster = PostgresCluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture
def dsn(pg_cluster):
    made = pg_cluster.new_database()
    yield made
    pg_cluster.drop_database(made)


@pytest.fixture
def public_tmp():
    """A temp dir other users can traverse (for an embedded PostgreSQL)."""
    path = Path(tempfile.mkdtemp(prefix="vmyard-test-", dir="/tmp"))
    path.chmod(0o711)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def start_region(tmp_path, dsn):
    started: list[RegionProcess] = []

    def start(name: str = "region", *, database: str | None = dsn, data_dir: Path | None = None,
              **kw) -> RegionProcess:
        region = RegionProcess.make(data_dir or tmp_path / name, dsn=database, **kw)
        started.append(region)
        return region.start().wait_ready()

    yield start
    for region in started:
        region.stop()


@pytest.fixture
def region(start_region) -> RegionProcess:
    return start_region()


def region_box(region: RegionProcess) -> SecretBox:
    return SecretBox.load(region.data_dir / "region.key")


def make_user(dsn: str, box: SecretBox, username: str, *, admin: bool) -> str:
    def create_thd(cur):
        user = users.create_user_thd(cur, username, "pw-" + username, f"{username}@example.com",
                                     is_superuser=admin)
        return users.create_token_thd(cur, box, user.id).apikey

    return run_sync(dsn, create_thd)


@pytest.fixture
def admin_api(region, dsn) -> Api:
    return Api(region.api, make_user(dsn, region_box(region), "admin", admin=True))


@pytest.fixture
def user_api(region, dsn) -> Api:
    return Api(region.api, make_user(dsn, region_box(region), "alice", admin=False))


@pytest.fixture
def lxd_region(start_region) -> RegionProcess:
    """A region with its local rack; automatic refreshes off so tests decide when."""
    return start_region("lxdregion", local_rack=True, extra=["--vm-host-refresh-interval", "0"])


@pytest.fixture
def lxd_api(lxd_region, dsn) -> Api:
    return Api(lxd_region.api, make_user(dsn, region_box(lxd_region), "admin", admin=True))


@pytest.fixture
def enrol_secret_file(region, dsn, tmp_path) -> Path:
    value = run_sync(dsn, secrets.get_thd, region_box(region), secrets.ENROLLMENT_SECRET)
    path = tmp_path / "enrol.secret"
    path.write_text(value + "\n")
    return path


@pytest.fixture
def start_rack(tmp_path):
    started: list[RackProcess] = []

    def start(region: RegionProcess, secret_file: Path | None, name: str = "rack",
              url: str | None = None) -> RackProcess:
        rack = RackProcess.make(tmp_path / name, url or region.url, secret_file)
        started.append(rack)
        return rack.start()

    yield start
    for rack in started:
        rack.stop()


@pytest.fixture(scope="session")
def lxd_server():
    """A private LXD daemon (own LXD_DIR, HTTPS on 127.0.0.1 only) for the whole session."""
    from tests.fixtures.lxd import LxdServer

    server = LxdServer.start()
    yield server
    server.stop()
