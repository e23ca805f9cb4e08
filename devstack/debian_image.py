"""A small Debian root filesystem with cloud-init, for deploy tests (built once, then cached).

`debian_image()` returns the cached build for the current package list and suite, or builds
it with `mmdebstrap --variant=apt` from the Debian mirror this machine's apt uses (the one
package archive it may reach).  One build serves every test process: builders take an
exclusive lock on the cache entry, build into a temporary directory next to it and rename
it into place, so a reader sees either no entry or a complete one.

Each entry holds:
- `rootfs.tar.gz`: a gzip tarball of the root filesystem (what MAAS calls `tgz`);
- `lxd-unified.tar.gz`: an LXD unified container image (metadata.yaml + rootfs/).

The cache lives in $VMYARD_TEST_CACHE, else /var/cache/vmyard-test.  A build takes 4-8
minutes on two busy cores (about half of it mmdebstrap) and ~110 MB per tarball.  In the
image cloud-init's default user is `debian`; its SSH keys land in /home/debian/.ssh.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import platform
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

import attrs

SUITE = "bookworm"
# Without `locales` cloud-init's locale module fails; netplan.io renders its network config and
# cloud-init then runs udevadm (from `udev`) on every interface, failing its first stage without it.
PACKAGES = ("cloud-init", "openssh-server", "iproute2", "netplan.io", "udev", "systemd-sysv", "locales",
            "ca-certificates")
# Bumped when the way the image is made (hooks, packing) changes, so old cache entries are not reused.
_LAYOUT = 4
_LOCALE = "en_US.UTF-8"  # cloud-init's default on Debian
_BUILD_TIMEOUT = 1800
# LXD names architectures as the kernel does; Debian as dpkg does.
_DEBIAN_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}


@attrs.frozen
class DebianImage:
    directory: Path
    build_seconds: float | None  # None when the image came from the cache

    @property
    def rootfs_tgz(self) -> Path:
        return self.directory / "rootfs.tar.gz"

    @property
    def lxd_unified(self) -> Path:
        return self.directory / "lxd-unified.tar.gz"


def cache_dir() -> Path:
    return Path(os.environ.get("VMYARD_TEST_CACHE") or "/var/cache/vmyard-test")


def entry_name(suite: str = SUITE, packages: tuple[str, ...] = PACKAGES) -> str:
    """The cache entry for this suite, package list and architecture."""
    key = json.dumps([_LAYOUT, suite, sorted(packages), platform.machine()])
    return f"debian-{suite}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def debian_image(cache: Path | None = None) -> DebianImage:
    """The cached image, built first if no complete one is there yet."""
    cache = cache or cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    name = entry_name()
    final = cache / name
    if final.is_dir():
        return DebianImage(final, None)
    with open(cache / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building it: wait for it
        if final.is_dir():
            return DebianImage(final, None)
        # Under the lock, leftovers of a builder that died are nobody's: remove them.
        for stale in cache.glob(f".{name}.building-*"):
            shutil.rmtree(stale, ignore_errors=True)
        started = time.monotonic()
        work = Path(tempfile.mkdtemp(prefix=f".{name}.building-", dir=cache))
        try:
            _build(work)
            os.rename(work, final)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        return DebianImage(final, time.monotonic() - started)


def _build(work: Path) -> None:
    plain_tar = work / "rootfs.tar"
    command = ["mmdebstrap", "--variant=apt", "--include=" + ",".join(PACKAGES),
               f"--architectures={_DEBIAN_ARCH.get(platform.machine(), platform.machine())}",
               # No manuals, documentation (copyright files stay) or translations: a fifth fewer
               # bytes and files for LXD to unpack on every deploy (as Debian's slim images do).
               *(f"--dpkgopt=path-exclude=/usr/share/{path}/*" for path in ("man", "doc", "locale")),
               "--dpkgopt=path-include=/usr/share/doc/*/copyright",
               # cloud-init's locale module sets en_US.UTF-8, which Debian's update-locale refuses
               # unless that locale has been generated.
               f"--customize-hook=echo '{_LOCALE} UTF-8' > \"$1/etc/locale.gen\"",
               "--customize-hook=chroot \"$1\" locale-gen",
               # What a cloud image ships and a deploy test need not wait for: the system locale
               # already the one cloud-init sets (else its locale module runs locale-gen again,
               # ~6 s), one SSH host key type (three took ~3.5 s of key generation), and no
               # systemd-networkd-wait-online (its ~12 s held cloud-init back, while these tests'
               # containers reach nothing over their NICs: the webhook goes through an LXD proxy).
               f"--customize-hook=echo 'LANG={_LOCALE}' > \"$1/etc/default/locale\"",
               "--customize-hook=printf 'ssh_genkeytypes: [ed25519]\\n' > "
               "\"$1/etc/cloud/cloud.cfg.d/90-vmyard-tests.cfg\"",
               "--customize-hook=ln -sf /dev/null \"$1/etc/systemd/system/systemd-networkd-wait-online.service\"",
               SUITE, str(plain_tar), apt_mirror(SUITE)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=_BUILD_TIMEOUT,
                            stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise RuntimeError(f"mmdebstrap failed ({result.returncode}):\n{result.stderr[-4000:]}")
    # Two cores: gzip the plain tarball while Python packs the unified one.
    with open(plain_tar, "rb") as source, open(work / "rootfs.tar.gz", "wb") as target:
        gzip = subprocess.Popen(["gzip", "-6"], stdin=source, stdout=target)
    try:
        _write_unified(plain_tar, work / "lxd-unified.tar.gz")
    finally:
        gzip.wait(timeout=_BUILD_TIMEOUT)
    if gzip.returncode != 0:
        raise RuntimeError(f"gzip of the root filesystem failed ({gzip.returncode})")
    plain_tar.unlink()
    work.chmod(0o755)  # mkdtemp made it private; the cache is for every test process


def apt_mirror(suite: str) -> str:
    """The URI of the first apt source (deb822 or one-line form) that serves `suite`."""
    sources = sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))
    for path in sources:
        for stanza in re.split(r"\n\s*\n", path.read_text()):
            fields = dict(re.findall(r"^([A-Za-z-]+):\s*(.*)$", stanza, re.MULTILINE))
            if fields.get("Types", "deb").split()[0] == "deb" and suite in fields.get("Suites", "").split():
                return fields["URIs"].split()[0]
    for path in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*.list"))]:
        for line in path.read_text().splitlines() if path.exists() else []:
            words = re.sub(r"\[[^]]*\]", "", line).split()  # drop "[signed-by=...]" options
            if len(words) >= 3 and words[0] == "deb" and words[2] == suite:
                return words[1]
    raise RuntimeError(f"no apt source for {suite} in /etc/apt")


def _write_unified(rootfs_tar: Path, target: Path) -> None:
    """metadata.yaml plus the root filesystem moved under rootfs/, ownership and xattrs kept."""
    metadata = json.dumps({  # JSON is YAML
        "architecture": platform.machine(),
        "creation_date": int(time.time()),
        "properties": {"os": "debian", "release": SUITE,
                       "description": f"Debian {SUITE} with cloud-init (vmyard tests)"},
    }).encode()
    with tarfile.open(rootfs_tar) as source, tarfile.open(target, "w:gz", compresslevel=6,
                                                          format=tarfile.PAX_FORMAT) as out:
        info = tarfile.TarInfo("metadata.yaml")
        info.size, info.mtime, info.mode = len(metadata), int(time.time()), 0o644
        out.addfile(info, io.BytesIO(metadata))
        for member in source:
            # A path in the member's PAX header would win over the new name: drop it.
            member.pax_headers.pop("path", None)
            member.pax_headers.pop("linkpath", None)
            relative = member.name.removeprefix("./").lstrip("/")
            member.name = f"rootfs/{relative}".rstrip("/") if relative else "rootfs"
            if member.islnk():  # a hard link names another member of the archive
                member.linkname = "rootfs/" + member.linkname.removeprefix("./").lstrip("/")
            out.addfile(member, source.extractfile(member) if member.isreg() else None)
