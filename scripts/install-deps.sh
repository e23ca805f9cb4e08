#!/usr/bin/env bash
# Install what vmyard needs on a Debian/Ubuntu machine: system packages
# (PostgreSQL server binaries for the embedded database) and the Python
# package itself.  With --test, also the test dependencies.  Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(postgresql postgresql-contrib ca-certificates curl lxd qemu-system-x86 ovmf)
# The region makes uploaded disk images (ddraw, ddgz, ddxz) into LXD VM images with qemu-img.
APT_PACKAGES+=(qemu-utils)
# libvirt-python (setup.cfg) builds against libvirt-dev; racks reach virsh hosts with the OpenSSH client.
APT_PACKAGES+=(libvirt-dev pkg-config gcc openssh-client)
# The client tests build a Python 3.11 virtualenv with python-libmaas from PyPI.
if [ "${1:-}" = "--test" ]; then
  APT_PACKAGES+=(python3-venv)
  # tests/test_gomaasapi.py builds Juju's MAAS client library offline (GOPATH mode) from
  # /usr/share/gocode; apt brings in its golang-github-juju-* dependencies.
  APT_PACKAGES+=(golang-go golang-github-juju-gomaasapi-dev)
  # devstack/debian_image.py builds the deploy tests' Debian image (with cloud-init) with mmdebstrap.
  APT_PACKAGES+=(mmdebstrap)
  # tests/fixtures/libvirt.py: a real libvirtd reached over qemu+ssh on 127.0.0.1 with a password.
  APT_PACKAGES+=(libvirt-daemon-system libvirt-clients openssh-server)
  # tests/test_deploy_split.py makes an LXD split image's squashfs rootfs from that image (sqfstar).
  APT_PACKAGES+=(squashfs-tools)
  # tests/test_ui_*.py drive the web UI in headless Chromium through Debian's matching chromedriver.
  APT_PACKAGES+=(chromium chromium-driver)
fi

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: need root to install ${missing[*]} (run with sudo)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

PYTHON=${PYTHON:-python3}
extra=""
[ "${1:-}" = "--test" ] && extra="[test]"
"$PYTHON" -m pip install -q --disable-pip-version-check -e ".${extra}"
