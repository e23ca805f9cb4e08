"""A cached virtualenv with python-libmaas from PyPI, for the client tests.

libmaas 0.6.8 imports `distutils`, which Python 3.12 removed, so the venv
uses Python 3.11 when there is one; on a newer Python, setuptools' distutils
shim stands in.  The venv is kept under ~/.cache keyed by both versions and
marked complete only after a clean install, so reruns start at once and a
broken half-install is rebuilt.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

LIBMAAS_VERSION = "0.6.8"
CACHE_ROOT = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vmyard-test-libmaas-venv"
_DONE = ".complete"


class PyPIUnreachable(RuntimeError):
    """The package index cannot be reached: the only reason to skip the client tests."""


def _version_of(python: str) -> tuple[int, int] | None:
    try:
        out = subprocess.run([python, "-c", "import sys; print(*sys.version_info[:2])"], capture_output=True,
                             text=True, timeout=30, check=True).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return None
    return int(out[0]), int(out[1])


def pick_python() -> tuple[str, tuple[int, int]]:
    """Python 3.11 if installed (libmaas's last supported), else this interpreter."""
    for candidate in (sys.executable, shutil.which("python3.11"), "/usr/bin/python3.11"):
        if candidate and _version_of(candidate) == (3, 11):
            return candidate, (3, 11)
    return sys.executable, sys.version_info[:2]


def _index_reachable() -> bool:
    index = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple/").rstrip("/")
    try:
        with urllib.request.urlopen(f"{index}/python-libmaas/", timeout=15) as reply:
            return reply.status == 200
    except OSError:
        return False


def _run(cmd: list[str], what: str) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        raise RuntimeError(f"{what} failed ({r.returncode}): {' '.join(cmd)}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")


def ensure_libmaas_venv() -> Path:
    """The venv's python, creating the venv first when needed.

    Raises PyPIUnreachable when pip fails and the index cannot be reached;
    any other failure (e.g. no `venv` module: install python3-venv) raises
    RuntimeError with the details.
    """
    python, (major, minor) = pick_python()
    venv = CACHE_ROOT / f"py{major}.{minor}-libmaas-{LIBMAAS_VERSION}"
    venv_python = venv / "bin" / "python"
    CACHE_ROOT.mkdir(parents=True, exist_ok=True)
    with open(CACHE_ROOT / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one builder at a time; the others wait and reuse it
        if (venv / _DONE).exists() and venv_python.exists():
            return venv_python
        shutil.rmtree(venv, ignore_errors=True)
        _run([python, "-m", "venv", str(venv)],
             "creating the libmaas virtualenv (on Debian/Ubuntu: apt-get install python3-venv, "
             "or run scripts/install-deps.sh --test)")
        packages = [f"python-libmaas=={LIBMAAS_VERSION}"]
        if (major, minor) >= (3, 12):
            packages.append("setuptools")  # provides the distutils libmaas 0.6.8 imports
        try:
            _run([str(venv_python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *packages],
                 f"installing {' '.join(packages)} from PyPI")
        except RuntimeError:
            shutil.rmtree(venv, ignore_errors=True)
            if not _index_reachable():
                raise PyPIUnreachable(f"PyPI is unreachable, so python-libmaas=={LIBMAAS_VERSION} "
                                      f"cannot be installed") from None
            raise
        _run([str(venv_python), "-c", "import maas.client.viscera, maas.client.facade"],
             "importing python-libmaas")
        (venv / _DONE).write_text(f"python-libmaas=={LIBMAAS_VERSION}\n")
    return venv_python
