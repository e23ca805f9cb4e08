#!/usr/bin/env bash
# README command 1: install everything, then run a region with its own
# PostgreSQL cluster and a local rack, in the foreground (Ctrl-C stops all).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
python3 -m region.pg_template  # new embedded clusters copy it instead of running initdb
DATA_DIR=${VMYARD_DATA_DIR:-/var/lib/vmyard}
exec vmyard-regiond --data-dir "$DATA_DIR" "$@"
