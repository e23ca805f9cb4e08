"""The region's child services without daemons: periodic work, listeners, the local rack process."""

from __future__ import annotations

import signal
from pathlib import Path

import attrs
from twisted.application import internet
from twisted.internet import defer, error, task
from twisted.internet.protocol import Factory
from twisted.python.failure import Failure

from region.listeners import listener
from region.local_rack import FIRST_RESTART_DELAY, LocalRackProcess, LocalRackSettings
from region.periodic import PeriodicService


def test_periodic_work_starts_one_step_after_start_and_survives_errors():
    clock = task.Clock()
    calls = []

    async def work():
        calls.append(clock.seconds())
        if len(calls) == 1:
            raise RuntimeError("first tick fails")

    svc = PeriodicService(5.0, work, "test work", clock)
    svc.startService()
    assert calls == []
    clock.advance(5)
    clock.advance(5)
    assert calls == [5.0, 10.0], "a failed tick is logged and the next one still runs"
    stopped = svc.stopService()
    assert stopped.called


def test_stopping_cancels_a_hung_tick_after_the_grace_period():
    clock = task.Clock()
    hung = defer.Deferred()
    svc = PeriodicService(1.0, lambda: hung, "hung work", clock, grace=3.0)
    svc.startService()
    clock.advance(1)
    stopped = svc.stopService()
    clock.advance(2.9)
    assert not stopped.called, "a tick in progress may finish first"
    clock.advance(0.1)
    assert stopped.called and hung.called, "but not after the grace period"
    assert not svc.running


def test_a_listener_reports_its_port_or_why_it_could_not_listen():
    @attrs.define
    class Endpoint:
        result: defer.Deferred

        def listen(self, factory):
            return self.result

    @attrs.define
    class Port:
        def getHost(self):
            return attrs.make_class("Host", ["port"])(4242)

        def stopListening(self):
            return None

    svc, bound = listener(Endpoint(defer.succeed(Port())), Factory())
    assert isinstance(svc, internet.StreamServerEndpointService)
    svc.startService()
    assert bound.result == 4242
    svc.stopService()

    svc, bound = listener(Endpoint(defer.fail(error.CannotListenError("127.0.0.1", 1, "in use"))), Factory())
    svc.startService()
    failure = []
    bound.addErrback(failure.append)
    assert failure and failure[0].check(error.CannotListenError)
    assert svc.stopService().called


@attrs.define
class _Transport:
    pid: int
    signals: list = attrs.field(factory=list)
    written: bytes = b""

    def write(self, data: bytes) -> None:
        self.written += data

    def signalProcess(self, sig) -> None:
        self.signals.append(sig)


class _ProcessClock(task.Clock):
    """A clock that also "spawns" processes: records them, starts none."""

    def __init__(self) -> None:
        super().__init__()
        self.children = []

    def spawnProcess(self, proto, executable, args, env, childFDs):
        proto.makeConnection(_Transport(pid=1000 + len(self.children)))
        self.children.append((proto, args, env))
        return proto.transport


def _rack(reactor) -> LocalRackProcess:
    settings = LocalRackSettings(Path("/nonexistent/rack"), "http://127.0.0.1:5240/MAAS/", ("127.0.0.1", 5250),
                                 secret="s3cret")
    return LocalRackProcess(settings, reactor, stop_timeout=5.0)


def _die(proto) -> None:
    proto.processEnded(Failure(error.ProcessTerminated(signal=signal.SIGKILL)))


def test_the_local_rack_gets_its_secret_on_stdin_and_is_restarted_with_backoff():
    clock = _ProcessClock()
    rack = _rack(clock)
    rack.startService()
    proto, args, env = clock.children[0]
    assert proto.transport.written == b"s3cret\n"
    assert "s3cret" not in " ".join(args) and "s3cret" not in env.values()
    assert args[args.index("--rpc-endpoint") + 1] == "127.0.0.1:5250"

    _die(proto)
    clock.advance(FIRST_RESTART_DELAY)
    assert len(clock.children) == 2
    _die(clock.children[1][0])
    clock.advance(FIRST_RESTART_DELAY)
    assert len(clock.children) == 2, "the second restart waits longer"
    clock.advance(FIRST_RESTART_DELAY)
    assert len(clock.children) == 3


def test_stopping_the_local_rack_sends_sigterm_then_sigkill():
    clock = _ProcessClock()
    rack = _rack(clock)
    rack.startService()
    proto = clock.children[0][0]
    stopped = rack.stopService()
    assert proto.transport.signals == [signal.SIGTERM]
    clock.advance(5.0)
    assert proto.transport.signals == [signal.SIGTERM, signal.SIGKILL]
    assert not stopped.called
    _die(proto)
    assert stopped.called
    clock.advance(60)
    assert len(clock.children) == 1, "no restart after stop"
