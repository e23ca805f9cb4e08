"""Run one service in the foreground until SIGTERM/SIGINT."""

from __future__ import annotations

from twisted.internet import defer


def run_service_until_stopped(reactor, svc, ready: defer.Deferred) -> defer.Deferred:
    """Start svc; stop it cleanly on SIGTERM/SIGINT; fail fast if start-up fails."""
    done = defer.Deferred()

    def stop_on_shutdown():
        return svc.stopService() if svc.running else None

    reactor.addSystemEventTrigger("before", "shutdown", stop_on_shutdown)
    svc.startService()

    def failed(failure):
        # Stop what did start, then exit non-zero with the reason.
        d = defer.maybeDeferred(svc.stopService)
        d.addBoth(lambda _: done.errback(failure))

    ready.addErrback(failed)
    return done
