"""Streamed replies (region/api/streaming.py): chunks made in the render pool only a few ahead of
what the transport takes, every chunk written in order, and what they were made from dropped
(garbage collection resumed) whether the client reads to the end or goes away."""

from __future__ import annotations

import gc

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task

from region.api import streaming
from tests.fixtures.polling import until

CHUNKS = 12


class _Request:
    """The little of twisted.web's Request a streamed reply uses, its transport the test."""

    method = b"GET"
    _disconnected = False

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.finished = False
        self.producer = None
        self.aborted = False
        self.channel = self  # its transport too
        self.transport = self

    def abortConnection(self) -> None:  # noqa: N802 (Twisted's name)
        self.aborted = True

    def setResponseCode(self, code: int) -> None:  # noqa: N802 (Twisted's name)
        self.code = code

    def setHeader(self, name: bytes, value: bytes) -> None:  # noqa: N802 (Twisted's name)
        pass

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def registerProducer(self, producer, streaming: bool) -> None:  # noqa: N802 (Twisted's name)
        assert streaming
        self.producer = producer

    def unregisterProducer(self) -> None:  # noqa: N802 (Twisted's name)
        self.producer = None

    def finish(self) -> None:
        self.finished = True


class _Source:
    """Chunks b"0" … b"11", counting how many were made and whether the rest was dropped; with
    `fail_at`, making that chunk fails."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.made = 0
        self.closed = False
        self.fail_at = fail_at

    def chunks(self, _loaded):
        try:
            for i in range(CHUNKS):
                if i == self.fail_at:
                    raise RuntimeError("a render bug")
                self.made += 1
                yield str(i).encode()
        finally:
            self.closed = True


async def _started(source: _Source) -> tuple[_Request, streaming.StreamedJSON]:
    reply = await streaming.streamed(defer.succeed(None), source.chunks)
    assert not gc.isenabled()  # paused while there are chunks to make
    request = _Request()
    reply.send(request)
    return request, reply


@pytest_twisted.ensureDeferred
async def test_every_chunk_is_written_in_order_and_collection_resumes():
    source = _Source()
    request, _ = await _started(source)
    await until(lambda: request.finished)
    assert request.written == [str(i).encode() for i in range(CHUNKS)] and request.producer is None
    await until(lambda: gc.isenabled())
    assert source.closed


@pytest_twisted.ensureDeferred
async def test_a_paused_transport_stops_the_making_a_few_chunks_ahead():
    source = _Source()
    request, _ = await _started(source)
    request.producer.pauseProducing()
    await task.deferLater(reactor, 0.3, lambda: None)
    assert source.made <= len(request.written) + streaming.AHEAD + 1 < CHUNKS
    request.producer.resumeProducing()
    await until(lambda: request.finished)
    assert b"".join(request.written) == b"".join(str(i).encode() for i in range(CHUNKS))


@pytest_twisted.ensureDeferred
async def test_a_client_that_goes_away_drops_the_rest_and_resumes_collection():
    source = _Source()
    request, _ = await _started(source)
    request.producer.pauseProducing()
    request.producer.stopProducing()
    await until(lambda: source.closed and gc.isenabled())
    assert source.made < CHUNKS and not request.finished


@pytest_twisted.ensureDeferred
async def test_a_failure_before_the_first_chunk_is_an_ordinary_error_and_one_later_cuts_the_reply_short():
    with pytest.raises(RuntimeError):
        await streaming.streamed(defer.succeed(None), _Source(fail_at=0).chunks)
    assert gc.isenabled()
    source = _Source(fail_at=5)
    request, _ = await _started(source)
    await until(lambda: request.aborted and gc.isenabled())
    assert request.written == [str(i).encode() for i in range(5)] and not request.finished


async def _paused_with_clock(source: _Source) -> tuple[_Request, task.Clock]:
    """A reply on a fake clock whose transport has paused it at once."""
    reply = await streaming.streamed(defer.succeed(None), source.chunks)
    reply.clock = task.Clock()
    request = _Request()
    reply.send(request)
    request.producer.pauseProducing()
    return request, reply.clock


@pytest_twisted.ensureDeferred
async def test_a_client_that_stops_reading_gives_up_the_pause_of_garbage_collection():
    source = _Source()
    request, clock = await _paused_with_clock(source)
    await until(lambda: source.made >= streaming.AHEAD)  # the pump has made what it may
    clock.advance(streaming.SLOW_CLIENT_SECONDS - 0.1)
    assert not gc.isenabled()
    clock.advance(0.2)
    assert gc.isenabled() and not source.closed  # the reply goes on, only without the pause
    request.producer.resumeProducing()
    await until(lambda: request.finished)
    assert b"".join(request.written) == b"".join(str(i).encode() for i in range(CHUNKS))
    assert gc.isenabled() and source.closed


@pytest_twisted.ensureDeferred
async def test_a_client_that_resumes_in_time_keeps_the_pause():
    request, clock = await _paused_with_clock(_Source())
    clock.advance(streaming.SLOW_CLIENT_SECONDS - 1)
    request.producer.resumeProducing()
    clock.advance(streaming.SLOW_CLIENT_SECONDS)
    assert not clock.getDelayedCalls()
    await until(lambda: request.finished)
    await until(lambda: gc.isenabled())
