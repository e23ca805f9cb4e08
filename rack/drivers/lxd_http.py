"""A kept-alive, pinned HTTPS connection to one LXD server over http.client, for LXDSession's
plain requests.

A request through requests' adapter and urllib3's pool costs ~1.2 ms of CPU here, the same
exchange over http.client ~0.3 ms.  What the adapter path guarantees is kept: the server
certificate pin is checked right after every handshake (lxd_tls.check_pin), before anything is
sent; timeouts are (connect, read) as requests takes them; failures are requests' own exceptions
(ConnectTimeout, ReadTimeout, SSLError, ConnectionError), which LXDDriver._translated maps; a
kept connection the server closed while idle is noticed before reuse, as urllib3 does, or, when
it fails on send or before the first byte of the answer, the request goes once more on a fresh
connection.  The answer is a whole `requests.Response`.  A request with a body leaves as one
TCP segment (corked while http.client writes its headers and its body).
"""

from __future__ import annotations

import contextlib
import http.client
import io
import socket
import ssl
import threading
from typing import Any, Iterator, Union

import requests
import urllib3
from requests.cookies import extract_cookies_to_jar
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers
from urllib3.util.wait import wait_for_read

from rack.drivers.lxd_tls import PinnedAdapter, check_pin

Timeout = Union[float, tuple[Union[float, None], Union[float, None]], None]

# How a kept connection the server closed fails on reuse (RemoteDisconnected is a
# ConnectionResetError: end of stream before the status line).
_CLOSED_BY_SERVER = (ConnectionError, ssl.SSLEOFError, ssl.SSLZeroReturnError)


class _Answer(http.client.HTTPResponse):
    """http.client's response that tells its connection whether any byte of it arrived, so a failure
    before that on a reused connection can be retried and one after never is."""

    def __init__(self, sock: Any, *args: Any, connection: PinnedHTTPSConnection, **kwargs: Any):
        super().__init__(sock, *args, **kwargs)
        self._connection = connection

    def begin(self) -> None:
        if self.headers is None and self.fp.peek(1):
            self._connection.answered = True
        super().begin()

    @property
    def _original_response(self) -> _Answer:
        """What requests' cookie extraction reads the headers from (urllib3's response has it)."""
        return self


class PinnedHTTPSConnection(http.client.HTTPSConnection):
    """http.client's HTTPS connection whose every handshake is followed by the pin check."""

    def __init__(self, host: str, port: int, adapter: PinnedAdapter):
        super().__init__(host, port, context=adapter.ssl_context)
        self.fingerprint = adapter.fingerprint
        self.answered = False

    def connect(self) -> None:
        try:
            super().connect()
            # As urllib3 does: a request's body goes out at once, not after the ACK of its headers.
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            check_pin(self.sock, self.fingerprint)
        except BaseException:
            self.close()  # also the bare TCP socket when the handshake failed
            raise

    def response_class(self, sock: Any, *args: Any, **kwargs: Any) -> _Answer:  # type: ignore[override]
        return _Answer(sock, *args, connection=self, **kwargs)


class _Stale(Exception):
    """A reused connection failed before any byte of the answer: the server had closed it."""


class KeptConnection:
    """One pinned connection to host:port, kept between requests; one request at a time
    (the caller holds `lock`)."""

    def __init__(self, host: str, port: int, adapter: PinnedAdapter):
        self.adapter = adapter
        self.lock = threading.Lock()
        self._conn = PinnedHTTPSConnection(host, port, adapter)

    def close(self) -> None:
        self._conn.close()

    def send(self, request: requests.PreparedRequest, timeout: Timeout) -> requests.Response:
        connect_timeout, read_timeout = split_timeout(timeout)
        conn = self._conn
        reused = conn.sock is not None
        if reused and _dropped(conn.sock):
            conn.close()
            reused = False
        try:
            try:
                answer, body = self._exchange(request, connect_timeout, read_timeout, reused)
            except _Stale:
                conn.close()
                answer, body = self._exchange(request, connect_timeout, read_timeout, False)
        except BaseException:
            conn.close()
            raise
        return self._response(request, answer, body)

    def _exchange(self, request: requests.PreparedRequest, connect_timeout: float | None,
                  read_timeout: float | None, reused: bool) -> tuple[_Answer, bytes]:
        conn = self._conn
        where = f"{conn.host}:{conn.port}"
        if conn.sock is None:
            conn.timeout = connect_timeout
            try:
                conn.connect()
            except TimeoutError as e:
                raise requests.exceptions.ConnectTimeout(
                    f"connecting to {where} timed out (connect timeout={connect_timeout})",
                    request=request) from e
            except OSError as e:
                raise _requests_error(e, f"cannot connect to {where}", request) from e
        conn.sock.settimeout(read_timeout)
        conn.answered = False
        try:
            with _one_segment(conn.sock, request.body is not None):
                conn.request(request.method, request.path_url, request.body, request.headers)
            answer = conn.getresponse()
            return answer, answer.read()
        except TimeoutError as e:
            raise requests.exceptions.ReadTimeout(
                f"{where} did not answer in time (read timeout={read_timeout})", request=request) from e
        except _CLOSED_BY_SERVER as e:
            if reused and not conn.answered:
                raise _Stale from e
            raise _requests_error(e, f"lost the connection to {where}", request) from e
        except (OSError, http.client.HTTPException) as e:
            raise _requests_error(e, f"bad exchange with {where}", request) from e

    def _response(self, request: requests.PreparedRequest, answer: _Answer, body: bytes) -> requests.Response:
        """The answer as requests' adapter builds it (headers repeated in the answer joined by ", ",
        as urllib3 does; its cookies in its own jar), its content read whole and decoded as requests would."""
        headers: CaseInsensitiveDict[str] = CaseInsensitiveDict()
        for name, value in answer.getheaders():
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        if headers.get("content-encoding", "identity") != "identity":
            try:
                body = urllib3.HTTPResponse(body=io.BytesIO(body), headers=dict(headers), status=answer.status,
                                            preload_content=True, decode_content=True).data
            except urllib3.exceptions.DecodeError as e:
                raise requests.exceptions.ContentDecodingError(e, request=request) from e
        response = requests.Response()
        response.status_code = answer.status
        response.headers = headers
        response.encoding = get_encoding_from_headers(headers)
        response.reason = answer.reason
        response.url = request.url
        response.request = request
        response.connection = self.adapter
        response.raw = answer
        response._content = body
        response._content_consumed = True
        if "set-cookie" in headers:
            extract_cookies_to_jar(response.cookies, request, answer)
        return response


@contextlib.contextmanager
def _one_segment(sock: ssl.SSLSocket, corked: bool) -> Iterator[None]:
    """http.client writes a request's headers and its body apart: on their own, the first
    write wakes LXD, which takes the CPU from this thread until it has read the headers and
    waits for the body (~1 ms a POST on a 2-core machine).  Corked, both leave as one segment."""
    if not corked or _TCP_CORK is None:
        yield
        return
    sock.setsockopt(socket.IPPROTO_TCP, _TCP_CORK, 1)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):  # a connection that failed meanwhile is closed anyway
            sock.setsockopt(socket.IPPROTO_TCP, _TCP_CORK, 0)


_TCP_CORK = getattr(socket, "TCP_CORK", None)  # Linux


def split_timeout(timeout: Timeout) -> tuple[float | None, float | None]:
    """(connect, read) from a number, None or a pair, as requests reads `timeout`."""
    if isinstance(timeout, tuple):
        try:
            connect, read = timeout
        except ValueError:
            raise ValueError(f"Invalid timeout {timeout}. Pass a (connect, read) timeout tuple, "
                             f"or a single float to set both timeouts to the same value.") from None
        return connect, read
    return timeout, timeout


def _dropped(sock: ssl.SSLSocket) -> bool:
    """urllib3's check before reusing a connection: anything to read on an idle one (the server's
    close, or bytes nobody asked for) means it must not be used."""
    return bool(sock.pending()) or wait_for_read(sock, timeout=0.0)


def _requests_error(e: BaseException, what: str, request: requests.PreparedRequest) -> Exception:
    kind = requests.exceptions.SSLError if isinstance(e, ssl.SSLError) else requests.exceptions.ConnectionError
    return kind(f"{what}: {e.__class__.__name__}: {e}", request=request)
