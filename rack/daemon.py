"""vmyard-rackd: enrol with a region and serve it, in the foreground."""

from __future__ import annotations

import argparse
import os
import sys
import threading
from pathlib import Path

from twisted.internet import task

from common.config import ConfigError, load_toml, parse_endpoint
from common.logsetup import LEVELS, start_logging

DEFAULT_DATA_DIR = "/var/lib/vmyard-rack"
DEFAULT_CONFIG = "/etc/vmyard/rackd.toml"


def build_settings(args: argparse.Namespace):
    from rack.service import RackSettings

    config_path = args.config or (DEFAULT_CONFIG if os.path.exists(DEFAULT_CONFIG) else None)
    file = load_toml(config_path)

    def pick(name: str, default=None):
        value = getattr(args, name, None)
        return value if value is not None else file.get(name, default)

    region = pick("region")
    if not region:
        raise ConfigError("--region URL is required (e.g. http://region.example:5240/MAAS/)")
    if not region.startswith(("http://", "https://")):
        raise ConfigError(f"--region must be an http:// or https:// URL, got {region!r}")
    secret = None
    secret_file = pick("secret_file")
    if args.parent_pipe:
        secret = sys.stdin.readline().strip() or None
    elif secret_file:
        try:
            secret = Path(secret_file).read_text().strip()
        except OSError as e:
            raise ConfigError(f"cannot read the secret file: {e}") from None
        if not secret:
            raise ConfigError(f"the secret file {secret_file} is empty")
    url = region.rstrip("/")
    if not url.endswith("/MAAS"):
        url += "/MAAS"
    return RackSettings(
        data_dir=Path(pick("data_dir", DEFAULT_DATA_DIR)).absolute(),
        region_url=url + "/",
        secret=secret,
        connections=int(pick("connections", 2)),
        rpc_endpoint=parse_endpoint(args.rpc_endpoint, 0) if args.rpc_endpoint else None,
        regions_poll_interval=float(file.get("regions_poll_interval", 30.0)),
    ), pick("log_level", "info"), pick("log_format", "text")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="vmyard-rackd", description=__doc__)
    parser.add_argument("--config", help=f"TOML config file (default {DEFAULT_CONFIG} if it exists)")
    parser.add_argument("--region", help="the region's URL, e.g. http://10.0.0.2:5240/MAAS/")
    parser.add_argument("--secret-file", help="file holding the enrollment secret (first start only)")
    parser.add_argument("--data-dir", help=f"state directory (default {DEFAULT_DATA_DIR})")
    parser.add_argument("--connections", type=int, help="connections to keep to the region (default 2)")
    parser.add_argument("--rpc-endpoint", metavar="HOST:PORT",
                        help="the region's RPC listener, instead of the one learnt at enrolment")
    parser.add_argument("--parent-pipe", action="store_true",
                        help="run as a region's local rack: the enrollment secret is stdin's first line, "
                             "and the rack stops when stdin closes")
    parser.add_argument("--log-level", choices=LEVELS)
    parser.add_argument("--log-format", choices=("text", "json"))
    args = parser.parse_args(argv)
    try:
        settings, level, fmt = build_settings(args)
    except ConfigError as e:
        parser.exit(2, f"vmyard-rackd: {e}\n")
    start_logging(level, fmt)

    def run(reactor):
        from common import sdnotify
        from common.gcpause import freeze_what_start_made
        from rack.service import RackService
        from common.foreground import run_service_until_stopped

        svc = RackService(settings, reactor)
        if args.parent_pipe:
            _stop_when_stdin_closes(reactor)
        svc.connected.addCallback(lambda _: sdnotify.notify("READY=1\nSTATUS=connected to region"))
        svc.connected.addCallback(lambda _: freeze_what_start_made())
        return run_service_until_stopped(reactor, svc, svc.connected, svc.fatal)

    task.react(run)


def _stop_when_stdin_closes(reactor) -> None:
    """The region holds our stdin open while it lives; EOF means it is gone."""

    def watch() -> None:
        # os.read, not sys.stdin: a thread blocked inside the buffered reader makes the
        # interpreter abort at exit ("could not acquire lock ... at interpreter shutdown").
        while os.read(sys.stdin.fileno(), 4096):
            pass
        reactor.callFromThread(reactor.stop)

    # A daemon thread, not the reactor's pool: it blocks for the rack's whole life.
    threading.Thread(target=watch, name="parent-pipe", daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
