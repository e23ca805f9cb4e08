"""HTTP GETs for the image sync: small documents into memory, large files streamed to disk.

Every request has explicit timeouts (connect, response headers, and silence while the body
arrives) and a size limit; a file's bytes are written and hashed in a thread of the image
pool, with the connection paused while that thread is behind.
"""

from __future__ import annotations

import hashlib
import os
import queue
from pathlib import Path
from typing import Any, Callable

from twisted.internet import defer, protocol, reactor
from twisted.web import client, http_headers
from twisted.web.client import ResponseDone

CONNECT_TIMEOUT = 30.0
HEADERS_TIMEOUT = 60.0
IDLE_TIMEOUT = 60.0  # seconds without a byte of the body
_QUEUE_HIGH, _QUEUE_LOW = 64, 8  # chunks waiting for the writer thread: pause above, resume below
_USER_AGENT = b"vmyard-regiond image sync"


class FetchError(Exception):
    """The URL could not be fetched whole; the message says why."""


class _Body(protocol.Protocol):
    """Hands each chunk of a body to `sink`, refusing more than `limit` bytes or a silence of
    IDLE_TIMEOUT seconds; `done` fires with the byte count."""

    def __init__(self, url: str, limit: int, sink: Callable[[bytes], None]) -> None:
        self.url, self.limit, self.sink = url, limit, sink
        self.received = 0
        self.done: defer.Deferred = defer.Deferred()
        self._problem: str | None = None
        self._idle = reactor.callLater(IDLE_TIMEOUT, self.stop, f"nothing arrived for {IDLE_TIMEOUT:g}s")

    def dataReceived(self, data: bytes) -> None:
        if self._problem is not None:
            return
        self.received += len(data)
        if self.received > self.limit:
            self.stop(f"it is larger than {self.limit} bytes")
            return
        self._idle.reset(IDLE_TIMEOUT)
        self.sink(data)

    def stop(self, problem: str) -> None:
        if self._problem is None and self.transport is not None:
            self._problem = problem
            self.transport.stopProducing()

    def connectionLost(self, reason) -> None:
        if self._idle.active():
            self._idle.cancel()
        if self._problem is None and reason.check(ResponseDone):
            self.done.callback(self.received)
        else:
            self.done.errback(FetchError(f"{self.url}: {self._problem or reason.getErrorMessage()}"))


async def _get(url: str) -> Any:
    agent = client.RedirectAgent(client.Agent(reactor, connectTimeout=CONNECT_TIMEOUT))
    request = agent.request(b"GET", url.encode(), http_headers.Headers({b"User-Agent": [_USER_AGENT]}))
    request.addTimeout(HEADERS_TIMEOUT, reactor)
    try:
        response = await request
    except defer.TimeoutError:
        raise FetchError(f"{url}: no answer within {HEADERS_TIMEOUT:g}s") from None
    except Exception as e:
        raise FetchError(f"{url}: {e}") from None
    if response.code != 200:
        response.deliverBody(protocol.Protocol())  # drop the body
        raise FetchError(f"{url}: HTTP {response.code} {response.phrase.decode('latin-1', 'replace')}")
    return response


async def fetch_bytes(url: str, limit: int) -> bytes:
    """The whole body of `url`, at most `limit` bytes."""
    response = await _get(url)
    chunks: list[bytes] = []
    body = _Body(url, limit, chunks.append)
    response.deliverBody(body)
    await body.done
    return b"".join(chunks)


class FileWriter:
    """Writes and hashes the chunks a download queues, in a thread of its own."""

    def __init__(self, path: Path, transport_of: Callable[[], Any]) -> None:
        self.path = path
        self.chunks: queue.Queue[bytes | None] = queue.Queue()
        self.written = 0
        self._transport_of = transport_of
        self._paused = False
        self._aborted = False

    def abort(self) -> None:
        """Stop writing: the file is removed and write_thd fails."""
        self._aborted = True
        self.chunks.put(None)

    def put(self, data: bytes) -> None:
        self.chunks.put(data)
        if self.chunks.qsize() > _QUEUE_HIGH and not self._paused:
            self._paused = True
            self._transport_of().pauseProducing()

    def _resume(self) -> None:
        if self._paused:
            self._paused = False
            self._transport_of().resumeProducing()

    def write_thd(self) -> str:
        digest = hashlib.sha256()
        try:
            with open(self.path, "wb") as out:
                while (data := self.chunks.get()) is not None and not self._aborted:
                    out.write(data)
                    digest.update(data)
                    self.written += len(data)
                    if self._paused and self.chunks.qsize() < _QUEUE_LOW:
                        reactor.callFromThread(self._resume)
                if self._aborted:
                    raise FetchError("the download was stopped")
                out.flush()
                os.fsync(out.fileno())
        except BaseException:
            self.path.unlink(missing_ok=True)
            raise
        return digest.hexdigest()


async def download(url: str, path: Path, size: int, run_in_pool: Callable[..., defer.Deferred],
                   on_writer: Callable[[FileWriter], None] = lambda writer: None) -> str:
    """Stream `url` into `path` (at most `size` bytes, and exactly that many) and return its
    sha256; nothing is left at `path` on failure.  `on_writer` gets the writer (its `written`
    counts the bytes on disk) for progress reports."""
    response = await _get(url)
    body: _Body | None = None
    writer = FileWriter(path, lambda: body.transport)
    body = _Body(url, size, writer.put)
    on_writer(writer)
    writing = run_in_pool(writer.write_thd)

    def stop_for_shutdown() -> None:
        # The writer thread must end before the image pool can stop.
        writer.abort()
        body.stop("the region is stopping")

    trigger = reactor.addSystemEventTrigger("before", "shutdown", stop_for_shutdown)
    response.deliverBody(body)
    try:
        try:
            await body.done
        except BaseException:
            writer.abort()
            try:
                await writing  # the writer removes the file; its own failure (a full disk) says more
            except FetchError:
                pass
            raise
        writer.chunks.put(None)
        sha256 = await writing
    finally:
        reactor.removeSystemEventTrigger(trigger)
    if body.received != size:
        path.unlink(missing_ok=True)
        raise FetchError(f"{url}: got {body.received} bytes, the stream says {size}")
    return sha256
