"""vmyard-regiond: run a region (and, by default, a local rack) in the foreground."""

from __future__ import annotations

import argparse
import sys

from twisted.logger import Logger

from common.config import ConfigError
from common.logsetup import start_logging
from region import config as region_config
from region import embedded_pg

log = Logger()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="vmyard-regiond", description=__doc__)
    region_config.add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        cfg = region_config.from_arguments(args)
    except ConfigError as e:
        parser.exit(2, f"vmyard-regiond: {e}\n")
    start_logging(cfg.log_level, cfg.log_format)
    # An embedded cluster's initdb, start and migrations begin before the reactor and the
    # region are imported, and overlap those imports.
    cluster = embedded_pg.prestart(cfg)
    from twisted.internet import task

    from common.foreground import run_service_until_stopped

    def run(reactor):
        from region.service import RegionService

        log.debug("region modules loaded")
        svc = RegionService(cfg, reactor, prestarted=cluster)
        return run_service_until_stopped(reactor, svc, svc.ready)

    task.react(run)


if __name__ == "__main__":
    sys.exit(main())
