"""The region's own rack, run as a child process (`python -m rack.daemon`).

A crashing or wedged driver then cannot take the API down, and the region never loads
pylxd.  The enrolment secret goes over the child's stdin, never argv or the environment
(which `ps` and /proc show); the child stops when that pipe closes, so it never outlives
the region, even one killed with SIGKILL.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import attrs
from twisted.application import service
from twisted.internet import defer, error, protocol
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

log = Logger()

FIRST_RESTART_DELAY = 0.5
MAX_RESTART_DELAY = 30.0
STABLE_AFTER = 60.0  # a child that ran this long restarts without the accumulated backoff


@attrs.frozen
class LocalRackSettings:
    data_dir: Path
    region_url: str  # http://host:port/MAAS/
    rpc_endpoint: tuple[str, int]  # the region's current RPC listener, not the one saved at enrolment
    secret: str = attrs.field(repr=False)
    log_level: str = "info"
    log_format: str = "text"

    def argv(self) -> list[str]:
        host, port = self.rpc_endpoint
        host = f"[{host}]" if ":" in host else host
        return [sys.executable, "-m", "rack.daemon", "--data-dir", str(self.data_dir),
                "--region", self.region_url, "--rpc-endpoint", f"{host}:{port}", "--parent-pipe",
                "--log-level", self.log_level, "--log-format", self.log_format]


class _RackProtocol(protocol.ProcessProtocol):
    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.ended: defer.Deferred = defer.Deferred()

    def connectionMade(self) -> None:
        # stdin stays open: its end tells the child that the region is gone.
        self.transport.write(self.secret.encode() + b"\n")

    def processEnded(self, reason) -> None:
        self.ended.callback(reason.value)  # ProcessDone or ProcessTerminated, as a result


@attrs.define(eq=False)
class LocalRackProcess(service.Service):
    """Keeps one child rack running: restarted with backoff when it dies, and on stop
    sent SIGTERM by PID, then SIGKILL after `stop_timeout` seconds."""

    settings: LocalRackSettings
    reactor: object
    stop_timeout: float = 15.0
    _child: _RackProtocol | None = None
    _restart: IDelayedCall | None = None  # a pending restart
    _delay: float = FIRST_RESTART_DELAY
    _started_at: float = 0.0

    def startService(self) -> None:
        service.Service.startService(self)
        self._spawn()

    def _spawn(self) -> None:
        self._restart = None
        child = _RackProtocol(self.settings.secret)
        # systemd's notifications are the region's alone.
        env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
        self.reactor.spawnProcess(child, sys.executable, self.settings.argv(), env=env,
                                  childFDs={0: "w", 1: 1, 2: 2})
        self._child = child
        self._started_at = self.reactor.seconds()
        log.info("local rack started as PID {pid}", pid=child.transport.pid)
        child.ended.addCallback(self._ended, child, child.transport.pid)

    def _ended(self, reason: Exception, child: _RackProtocol, pid: int) -> None:
        if child is not self._child or not self.running:
            return
        if self.reactor.seconds() - self._started_at >= STABLE_AFTER:
            self._delay = FIRST_RESTART_DELAY
        log.warn("local rack (PID {pid}) ended: {reason}; restarting in {delay:.1f}s",
                 pid=pid, reason=str(reason), delay=self._delay)
        self._restart = self.reactor.callLater(self._delay, self._spawn)
        self._delay = min(self._delay * 2, MAX_RESTART_DELAY)

    def stopService(self) -> defer.Deferred:
        service.Service.stopService(self)
        if self._restart is not None:
            self._restart.cancel()
            self._restart = None
        child = self._child
        if child is None or child.ended.called:
            return defer.succeed(None)
        return defer.Deferred.fromCoroutine(self._stop_child(child))

    async def _stop_child(self, child: _RackProtocol) -> None:
        pid = child.transport.pid
        _signal(child, signal.SIGTERM)
        killer = self.reactor.callLater(self.stop_timeout, self._kill, child, pid)
        await child.ended
        if killer.active():
            killer.cancel()
        log.info("local rack (PID {pid}) stopped", pid=pid)

    def _kill(self, child: _RackProtocol, pid: int) -> None:
        log.warn("local rack (PID {pid}) did not stop within {timeout}s; killing it",
                 pid=pid, timeout=self.stop_timeout)
        _signal(child, signal.SIGKILL)


def _signal(child: _RackProtocol, sig: signal.Signals) -> None:
    try:
        child.transport.signalProcess(sig)  # by the PID we spawned
    except error.ProcessExitedAlready:
        pass
