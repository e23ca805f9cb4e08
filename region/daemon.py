"""vmyard-regiond: run a region (and, by default, a local rack) in the foreground."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from common.config import ConfigError
from region import config as region_config
from region import embedded_pg


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="vmyard-regiond", description=__doc__)
    region_config.add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        cfg = region_config.from_arguments(args)
    except ConfigError as e:
        parser.exit(2, f"vmyard-regiond: {e}\n")
    # Until the reactor handles SIGTERM/SIGINT, one is remembered (not fatal), so that the
    # cluster's start, which may already have spawned its server, is stopped cleanly.
    stop_asked = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop_asked.set())
    # An embedded cluster's initdb, start and migrations begin before Twisted, the reactor and
    # the region are imported, and overlap those imports (what it logs meanwhile is kept by
    # Twisted's log beginner until logging starts).
    cluster = embedded_pg.prestart(cfg)
    from twisted.internet import task
    from twisted.logger import Logger

    from common.foreground import run_service_until_stopped
    from common.logsetup import start_logging

    start_logging(cfg.log_level, cfg.log_format)
    log = Logger()

    def run(reactor):
        from region.service import RegionService

        log.debug("region modules loaded")
        svc = RegionService(cfg, reactor, prestarted=cluster)
        def stop_if_asked() -> None:
            # Running: the reactor's own handlers have taken the signals over.
            if stop_asked.is_set():
                log.info("asked to stop while starting")
                reactor.stop()

        reactor.callWhenRunning(stop_if_asked)
        svc.ready.addCallback(_freeze)
        return run_service_until_stopped(reactor, svc, svc.ready)

    try:
        task.react(run)
    finally:
        if cluster is not None:
            # Stopped already unless the region failed before its cluster service ran (an
            # import error, say): the server its start spawned must not outlive us.
            cluster.stop()


def _freeze(result):
    from common.gcpause import freeze_what_start_made

    freeze_what_start_made()
    return result


if __name__ == "__main__":
    sys.exit(main())
