"""Large JSON replies: built off the reactor, then written as the client reads them.

A handler returns `StreamedJSON` (from `streamed`); the site writes its chunks through a pull
producer, one chunk each time the transport has room, so neither building nor sending a big
listing holds the reactor (other requests are answered in between).
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Iterator, Sequence, TypeVar

import attrs
import orjson
from twisted.internet.interfaces import IPullProducer
from twisted.web import server
from zope.interface import implementer

from common.gcpause import gc_paused
from common.threadpools import LazyThreadPool

T = TypeVar("T")

_render_pool = LazyThreadPool("api-render", 2)


@attrs.frozen
class StreamedJSON:
    """A 200 reply whose chunks, concatenated, are one JSON document."""

    chunks: list[bytes]
    status = 200

    def send(self, request: server.Request) -> None:
        request.setResponseCode(200)
        request.setHeader(b"Content-Type", b"application/json")
        request.setHeader(b"Content-Length", str(sum(len(c) for c in self.chunks)).encode())
        if request.method == b"HEAD":
            request.finish()
            return
        request.registerProducer(_ChunkProducer(request, iter(self.chunks)), False)


@implementer(IPullProducer)
class _ChunkProducer:
    def __init__(self, request: server.Request, chunks: Iterator[bytes]) -> None:
        self._request = request
        self._chunks = chunks

    def resumeProducing(self) -> None:  # noqa: N802 (Twisted's name)
        chunk = next(self._chunks, None)
        if chunk is None:
            self._request.unregisterProducer()
            self._request.finish()
        else:
            self._request.write(chunk)

    def stopProducing(self) -> None:  # noqa: N802 (the client went away)
        self._chunks = iter(())


def json_list_chunks(items: Sequence[T], render: Callable[[T], Any], per_chunk: int) -> list[bytes]:
    """The JSON list of `render(item)` for each item, in chunks that together are one document,
    rendered and serialised `per_chunk` items at a time (each orjson call holds the GIL)."""
    chunks = [b"["]
    for start in range(0, len(items), per_chunk):
        part = orjson.dumps([render(item) for item in items[start:start + per_chunk]],
                            option=orjson.OPT_NON_STR_KEYS)[1:-1]
        chunks.append((b"," if start else b"") + part)
    chunks.append(b"]")
    return chunks


async def streamed(load: Awaitable[T], build: Callable[[T], list[bytes]]) -> StreamedJSON:
    """What `load` gives, built by `build` in a small thread pool of its own, as a streamed reply.

    Automatic garbage collection is paused from the load until the loaded objects are freed
    (in that thread, not on the reactor): a listing allocates millions of objects, and a
    collection walking them, or their freeing, would hold the GIL for hundreds of ms."""
    with gc_paused():
        loaded = [await load]
        return StreamedJSON(await _render_pool.run(_build_and_free, build, loaded))


def _build_and_free(build: Callable[[T], list[bytes]], loaded: list[T]) -> list[bytes]:
    return build(loaded.pop())  # the only reference left: freed here when build returns
