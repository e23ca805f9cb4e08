"""The region's HTTP site: limits enforced while a request arrives, before any handler runs.

- A body over `MAX_REQUEST_BODY` is refused with 413 as soon as its length is known
  (Content-Length) or exceeded (chunked), and the connection closed: nothing more is read.
- A request line over Twisted's 16 KiB line limit gets 414, a header line 431 (Twisted
  would just drop the connection).
- The access log never shows OAuth credentials given in the query string.
- Twisted does not parse form bodies into `request.args` (it would do so on the reactor, with
  the email package for multipart: ~9 s for an 8.9 MB body of 150,000 parts, and ~0.13 ms
  for the Content-Type of every POST); handlers parse the body themselves
  (region/api/params.py), off the reactor when it is large.
"""

from __future__ import annotations

import re

from twisted.web import http, server

from common.threadpools import LazyThreadPool

# The largest body any endpoint takes; handlers parse at most MAX_FORM_BODY of it as a form
# (region/api/params.py).  Uploads of image chunks stream through raw bodies below this.
MAX_REQUEST_BODY = 16 * 1024 * 1024

# Forms up to this size parse on the reactor thread (well under a millisecond); larger ones
# in a small pool of their own, so a burst of big bodies queues there and nowhere else.
INLINE_PARSE_LIMIT = 64 * 1024
PARSE_THREADS = 2

_OAUTH_IN_QUERY = re.compile(rb"(oauth_[a-z_]+=)[^&\s\"]*", re.IGNORECASE)


def _refuse(channel: http.HTTPChannel, status: bytes, message: bytes) -> None:
    channel.transport.write(b"HTTP/1.1 " + status + b"\r\nContent-Type: text/plain; charset=utf-8\r\n"
                            b"Content-Length: " + str(len(message)).encode() + b"\r\nConnection: close\r\n\r\n"
                            + message)
    channel.loseConnection()


class LimitedRequest(server.Request):
    """A request whose body may not exceed MAX_REQUEST_BODY bytes."""

    _received = 0
    _refused = False

    def gotLength(self, length: int | None) -> None:
        if length is not None and length > MAX_REQUEST_BODY:
            self._refuse_body()
            return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self._refused:
            return
        self._received += len(data)
        if self._received > MAX_REQUEST_BODY:
            self._refuse_body()
            return
        super().handleContentChunk(data)

    def _refuse_body(self) -> None:
        self._refused = True
        self.content = None
        _refuse(self.channel, b"413 Request Entity Too Large",
                f"The request body is over {MAX_REQUEST_BODY} bytes.".encode())

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if self._refused:  # the 413 is already on its way
            return
        super().requestReceived(command, path, version)


class LimitedChannel(http.HTTPChannel):
    """Answers an over-long request line (414) or header line (431) instead of dropping it."""

    def lineLengthExceeded(self, line: bytes) -> None:
        if self._HTTPChannel__first_line:  # Twisted's own flag: still on the request line
            _refuse(self, b"414 URI Too Long", b"The request line (URI) is over 16384 bytes.")
        else:
            _refuse(self, b"431 Request Header Fields Too Large", b"A request header is over 16384 bytes.")


def _redacted_log_line(timestamp: str, request: server.Request) -> str:
    line = http.combinedLogFormatter(timestamp, request)
    return _OAUTH_IN_QUERY.sub(rb"\1REDACTED", line.encode("utf-8", "replace")).decode("utf-8", "replace")


class RegionSite(server.Site):
    """The region's Site: limited requests, no tracebacks to clients, redacted access log."""

    requestFactory = LimitedRequest
    protocol = LimitedChannel
    displayTracebacks = False
    noisy = False

    def __init__(self, root, **kwargs) -> None:
        kwargs.setdefault("logFormatter", _redacted_log_line)
        kwargs.setdefault("parsePOSTFormSubmission", False)
        super().__init__(root, **kwargs)


_parse_pool = LazyThreadPool("region-parse", PARSE_THREADS)


def parse_pool() -> LazyThreadPool:
    return _parse_pool
