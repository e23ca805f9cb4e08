"""Large JSON replies: built off the reactor, chunk by chunk, while earlier chunks are sent.

A handler returns `StreamedJSON` (from `streamed`).  Its chunks are made in a small thread
pool of its own, at most `AHEAD` chunks ahead of what the transport has taken, and written
while the transport is not paused (a push producer): neither building nor sending a big listing
holds the reactor, the client reads the first machines while the last are built, and the
reply is never whole in memory.  Its length is not known up front: HTTP/1.1 sends it chunked.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any, Awaitable, Callable, Iterable, Iterator, TypeVar

import orjson
from twisted.internet import defer
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.web import server
from zope.interface import implementer

from common.gcpause import gc_paused
from common.threadpools import LazyThreadPool

T = TypeVar("T")

log = Logger()
_render_pool = LazyThreadPool("api-render", 2)
AHEAD = 4  # chunks made before the transport takes them (a machines/ chunk is ~0.7 MB)
# A client that stops reading for this long gives up the reply's pause of garbage collection:
# one slow (or hostile) reader must not leave the whole region without it.
SLOW_CLIENT_SECONDS = 5.0


class _Chunks:
    """A reply's chunks still to make, and the pause of automatic garbage collection that lasts
    until they are all made or dropped (see `streamed`)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks: Iterator[bytes] | None = chunks
        self._pause = gc_paused()
        self._pause.__enter__()
        self._lock = threading.Lock()

    def next(self) -> bytes | None:
        """The next chunk, None after the last (call it in the render pool, one call at a time)."""
        chunk = next(self._chunks, None) if self._chunks is not None else None
        if chunk is None:
            self.close()
        return chunk

    def resume_gc(self) -> None:
        """End this reply's pause of garbage collection now (only the first call does)."""
        with self._lock:
            pause, self._pause = self._pause, None
        if pause is not None:
            pause.__exit__(None, None, None)

    def close(self) -> None:
        """Drop what is left (the objects it was made from are freed here: call it off the
        reactor) and resume garbage collection; only the first call does anything."""
        with self._lock:
            chunks, self._chunks = self._chunks, None
            pause, self._pause = self._pause, None
        try:
            if chunks is not None and hasattr(chunks, "close"):
                chunks.close()
            del chunks
        finally:
            if pause is not None:
                pause.__exit__(None, None, None)


class StreamedJSON:
    """A 200 reply whose chunks, concatenated, are one JSON document: `first`, then the rest."""

    status = 200
    clock = None  # the reactor unless a test sets one

    def __init__(self, first: bytes, rest: _Chunks) -> None:
        self.first = first
        self._rest = rest

    def send(self, request: server.Request) -> None:
        if request._disconnected or request.method == b"HEAD":
            _render_pool.run(self._rest.close)
            if not request._disconnected:
                request.setResponseCode(200)
                request.setHeader(b"Content-Type", b"application/json")
                request.finish()
            return
        request.setResponseCode(200)
        request.setHeader(b"Content-Type", b"application/json")
        request.write(self.first)
        _ChunkPump(request, self._rest, self.clock).start()


@implementer(IPushProducer)
class _ChunkPump:
    """Makes the next chunks in the render pool (at most AHEAD waiting) and writes them while
    the transport is not paused; finishes the request after the last one."""

    def __init__(self, request: server.Request, chunks: _Chunks, clock=None) -> None:
        if clock is None:
            from twisted.internet import reactor as clock
        self._clock = clock
        self._slow_client = None  # the timer that ends the GC pause while the transport is paused
        self._request = request
        self._chunks = chunks
        self._made: deque[bytes] = deque()
        self._making = False
        self._last_made = False
        self._paused = False
        self._stopped = False  # finished, failed, or the client went away

    def start(self) -> None:
        self._request.registerProducer(self, True)
        self._make_more()

    def _make_more(self) -> None:
        if not (self._making or self._last_made or self._stopped or len(self._made) >= AHEAD):
            self._making = True
            _render_pool.run(self._chunks.next).addCallbacks(self._made_one, self._failed)

    def _made_one(self, chunk: bytes | None) -> None:
        self._making = False
        if self._stopped:
            _render_pool.run(self._chunks.close)
            return
        if chunk is None:
            self._last_made = True
        else:
            self._made.append(chunk)
        self._write()
        self._make_more()

    def _write(self) -> None:
        while self._made and not self._paused:
            self._request.write(self._made.popleft())
        if self._last_made and not self._made:
            self._cancel_slow_client_timer()
            self._stopped = True
            self._request.unregisterProducer()
            self._request.finish()

    def _failed(self, failure) -> None:
        # The status line is sent: all the client can learn is that the body is cut short.
        self._making = False
        log.failure("building a streamed reply failed; closing the connection", failure)
        _render_pool.run(self._chunks.close)
        self._cancel_slow_client_timer()
        if not self._stopped:
            self._stopped = True
            self._request.unregisterProducer()
            self._request.channel.transport.abortConnection()

    def pauseProducing(self) -> None:  # noqa: N802 (Twisted's name)
        self._paused = True
        if self._slow_client is None and not self._stopped:
            self._slow_client = self._clock.callLater(SLOW_CLIENT_SECONDS, self._chunks.resume_gc)

    def resumeProducing(self) -> None:  # noqa: N802 (Twisted's name)
        self._paused = False
        self._cancel_slow_client_timer()
        if not self._stopped:
            self._write()
            self._make_more()

    def _cancel_slow_client_timer(self) -> None:
        timer, self._slow_client = self._slow_client, None
        if timer is not None and timer.active():
            timer.cancel()

    def stopProducing(self) -> None:  # noqa: N802 (the client went away)
        self._cancel_slow_client_timer()
        if self._stopped:
            return
        self._stopped = True
        self._made.clear()
        if not self._making:
            _render_pool.run(self._chunks.close)


def json_list_chunks(items: list[T], render: Callable[[T], Any], per_chunk: int, *,
                     option: int = orjson.OPT_NON_STR_KEYS) -> Iterator[bytes]:
    """The JSON list of `render(item)` for each item, in chunks that together are one document,
    rendered and serialised `per_chunk` items at a time (each orjson call holds the GIL);
    `option=0` where every key is a str (OPT_NON_STR_KEYS slows orjson down).

    `items` is emptied as it goes: what a chunk was made from is freed with it, rather than a
    whole listing's objects in one deallocation that holds the GIL for a hundred ms or more."""
    def elements() -> Iterator[bytes]:
        while items:
            yield orjson.dumps([render(item) for item in items[:per_chunk]], option=option)[1:-1]
            del items[:per_chunk]

    return json_array_chunks(elements())


def in_render_pool(fn: Callable[..., T], *args: Any) -> defer.Deferred:
    """`fn(*args)` in the threads that render replies (off the reactor, bounded)."""
    return _render_pool.run(fn, *args)


def json_array_chunks(elements: Iterable[bytes]) -> Iterator[bytes]:
    """One JSON array in chunks, from pieces that are each one or more comma-separated elements."""
    opening = b"["
    for piece in elements:
        yield opening + piece
        opening = b","
    yield b"]" if opening == b"," else b"[]"


async def streamed(load: Awaitable[T], build: Callable[[T], Iterable[bytes]]) -> StreamedJSON:
    """What `load` gives, made into chunks by `build` in a small thread pool of its own, as a
    streamed reply; the first chunk is made before it returns (an error there is an ordinary
    error reply).

    Automatic garbage collection is paused from the load until the loaded objects are freed
    (in that pool, not on the reactor), or until the client has stopped reading for
    SLOW_CLIENT_SECONDS: a listing allocates millions of objects, and a
    collection walking them, or their freeing, would hold the GIL for hundreds of ms."""
    with gc_paused():  # until _Chunks holds its own pause
        loaded = [await load]
        chunks = _Chunks(await _render_pool.run(_iterate, build, loaded))
    try:
        first = await _render_pool.run(chunks.next)
    except BaseException:
        await _render_pool.run(chunks.close)
        raise
    return StreamedJSON(first or b"", chunks)


def _iterate(build: Callable[[T], Iterable[bytes]], loaded: list[T]) -> Iterator[bytes]:
    return iter(build(loaded.pop()))  # the iterator holds the only reference left: freed with it
