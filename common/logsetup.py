"""twisted.logger set-up shared by both daemons: level filter, journald prefixes."""

from __future__ import annotations

import sys
from typing import TextIO

from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    formatEvent,
    globalLogBeginner,
    jsonFileLogObserver,
)
from zope.interface import implementer

from common.config import LEVELS  # noqa: F401 (re-exported: the daemons' --log-level choices)

# syslog priorities, understood by journald as a "<N>" line prefix.
_SYSLOG_PRIORITY = {
    LogLevel.debug: 7,
    LogLevel.info: 6,
    LogLevel.warn: 4,
    LogLevel.error: 3,
    LogLevel.critical: 2,
}

_CHATTY = (
    "twisted.protocols.amp",
    "twisted.web.client",
    "twisted.internet.protocol",
    "region.rpc.RegionServerFactory",
    "rack.rpc.RackClientFactory",
    "log_legacy",
)


@implementer(ILogObserver)
class PrefixedLineObserver:
    """One line per event: '<6>region.api: message key=value …'."""

    def __init__(self, out: TextIO, prefix_priority: bool) -> None:
        self._out = out
        self._prefix = prefix_priority

    def __call__(self, event: dict) -> None:
        text = formatEvent(event)
        if "log_failure" in event:
            text = f"{text}\n{event['log_failure'].getTraceback()}"
        level = event.get("log_level", LogLevel.info)
        ns = event.get("log_namespace", "-")
        head = f"<{_SYSLOG_PRIORITY.get(level, 6)}>" if self._prefix else ""
        for line in text.splitlines() or [""]:
            self._out.write(f"{head}{ns}: {line}\n")
        self._out.flush()


def start_logging(level: str = "info", fmt: str = "text", out: TextIO | None = None) -> None:
    """Begin logging to stdout (journald under systemd)."""
    out = out or sys.stdout
    if fmt == "json":
        base = jsonFileLogObserver(out)
    else:
        import os

        base = PrefixedLineObserver(out, prefix_priority=bool(os.environ.get("JOURNAL_STREAM")))
    predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.levelWithName(level))
    if level != "debug":
        # Twisted announces every factory start/stop and AMP connection at
        # info level; that is noise for an operator.
        for namespace in _CHATTY:
            predicate.setLogLevelForNamespace(namespace, LogLevel.warn)
    globalLogBeginner.beginLoggingTo([FilteringLogObserver(base, [predicate])], redirectStandardIO=False)
