"""events/: server-sent events telling open pages that hosts, machines or images changed.

One ChangeFeed per region polls a cheap fingerprint (region/db/ui_changes.py) every
POLL_INTERVAL seconds on the database pool, and only while some page listens; every stream
gets one small `changed` event when the fingerprint moves, and the page re-reads what it shows
through the REST API (with the same permissions as any other read).  Streams are bounded in
number and end after MAX_STREAM_SECONDS; EventSource reconnects, which checks the session again.
"""

from __future__ import annotations

import json

from twisted.internet import defer, task
from twisted.logger import Logger
from twisted.web import server

from region.services import live_updates, sessions
from region.services.context import Context
from region.ui.auth import session_key
from region.ui.responses import serve, write_json

log = Logger()

POLL_INTERVAL = 2.0
KEEPALIVE_EVERY = 10  # polls between comment lines that keep proxies from closing a quiet stream
MAX_STREAMS = 256
MAX_STREAM_SECONDS = 600


class ChangeFeed:
    def __init__(self, region, reactor) -> None:
        self.region = region
        self.reactor = reactor
        self.streams: dict[server.Request, object] = {}  # -> the delayed call that ends it
        self.fingerprint: str | None = None
        self._loop: task.LoopingCall | None = None
        self._polls = 0

    def full(self) -> bool:
        return len(self.streams) >= MAX_STREAMS

    def add(self, request: server.Request) -> None:
        self.streams[request] = self.reactor.callLater(MAX_STREAM_SECONDS, request.finish)
        request.notifyFinish().addBoth(lambda _: self._remove(request))
        if self._loop is None:
            self._loop = task.LoopingCall(self._poll)
            self._loop.clock = self.reactor
            self._loop.start(POLL_INTERVAL, now=True).addErrback(
                lambda f: log.failure("web UI change feed stopped", f))

    def _remove(self, request: server.Request) -> None:
        ending = self.streams.pop(request, None)
        if ending is not None and ending.active():
            ending.cancel()
        if not self.streams and self._loop is not None:
            self._loop.stop()
            self._loop, self.fingerprint = None, None

    async def _fingerprint(self) -> str | None:
        try:
            return await live_updates.changes_fingerprint(Context(self.region))
        except Exception:  # the database is down or the region is stopping: try at the next poll
            log.failure("web UI change feed could not read the fingerprint")
            return None

    def _poll(self) -> defer.Deferred:
        return defer.Deferred.fromCoroutine(self._poll_once())

    async def _poll_once(self) -> None:
        current = await self._fingerprint()
        self._polls += 1
        if current is not None and current != self.fingerprint:
            first = self.fingerprint is None
            self.fingerprint = current
            if not first:
                self._send(b"event: changed\ndata: " + json.dumps({"version": current}).encode() + b"\n\n")
                return
        if self._polls % KEEPALIVE_EVERY == 0:
            self._send(b": keepalive\n\n")

    def _send(self, data: bytes) -> None:
        for request in list(self.streams):
            if not request._disconnected:
                request.write(data)


class EventStream:
    def __init__(self, region, feed: ChangeFeed) -> None:
        self.region = region
        self.feed = feed

    def render(self, request: server.Request):
        return serve(request, {b"GET": self._open})

    async def _open(self, request: server.Request) -> None:
        if await sessions.lookup(Context(self.region), session_key(request)) is None:
            write_json(request, 401, {"error": "Not logged in."})
            return
        if self.feed.full():
            write_json(request, 503, {"error": "Too many live-update streams are open."}, {"Retry-After": "30"})
            return
        request.setHeader(b"Content-Type", b"text/event-stream")
        request.setHeader(b"Cache-Control", b"no-store")
        request.setHeader(b"X-Accel-Buffering", b"no")
        request.write(b"retry: 3000\nevent: hello\ndata: {}\n\n")
        self.feed.add(request)
