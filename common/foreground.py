"""Run one service in the foreground until SIGTERM/SIGINT."""

from __future__ import annotations

from twisted.internet import defer


def run_service_until_stopped(reactor, svc, *watched: defer.Deferred) -> defer.Deferred:
    """Start svc; stop it cleanly on SIGTERM/SIGINT.

    If any of `watched` fails (start-up failed, or a fatal error later), stop
    the service and fail the returned Deferred, so the process exits non-zero.
    """
    done = defer.Deferred()

    def stop_on_shutdown():
        return svc.stopService() if svc.running else None

    reactor.addSystemEventTrigger("before", "shutdown", stop_on_shutdown)
    svc.startService()

    def failed(failure):
        if done.called:
            return
        # Stop what did start, then exit non-zero with the reason.
        d = defer.maybeDeferred(svc.stopService) if svc.running else defer.succeed(None)
        d.addBoth(lambda _: None if done.called else done.errback(failure))

    for d in watched:
        d.addErrback(failed)
    return done
