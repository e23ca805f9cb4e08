"""The LXD client's session against a real LXD: plain API requests skip requests' per-request
machinery and urllib3 (one kept, pinned connection per host) yet send and answer exactly what
requests' own path does; anything else takes it.  A tiny loopback HTTPS server stands in where a
real LXD will not misbehave on demand."""

from __future__ import annotations

import socket
import ssl
import threading
import time
import uuid
from urllib.parse import urlencode

import pylxd
import pytest
import requests
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pylxd import exceptions as lxd_exc

from common import tls
from common.models import HostTarget
from rack.drivers import lxd_http
from rack.drivers.base import ServerCertificateChanged, Unreachable
from rack.drivers.lxd import LXDDriver
from rack.drivers.lxd_session import LXDSession
from rack.drivers.lxd_tls import PinnedAdapter, cert_files

from tests.fixtures.tiny_https import (
    answer,
    close_when_idle,
    drop_from,
    falsely_gzipped,
    gzipped,
    half_answer_from,
    redirects,
    sets_a_cookie,
    tiny_https,  # noqa: F401 (fixture)
)


@pytest.fixture
def trusted_target(lxd_server) -> HostTarget:
    pair = tls.make_self_signed(f"session-{uuid.uuid4().hex[:6]}", kind="rsa")
    lxd_server.trust_add(pair.cert_pem, f"session-{uuid.uuid4().hex[:6]}")
    return HostTarget(type="lxd", address=lxd_server.address, project="default", cert_pem=pair.cert_pem,
                      key_pem=pair.key_pem)


@pytest.fixture
def requests_path(monkeypatch) -> list[tuple[str, str]]:
    """(method, url) of every request that went through requests' own Session.request."""
    seen: list[tuple[str, str]] = []
    real = requests.Session.request

    def recorded(self, method, url, **kwargs):
        seen.append((method, url))
        return real(self, method, url, **kwargs)

    monkeypatch.setattr(requests.Session, "request", recorded)
    return seen


def test_the_driver_talks_to_lxd_through_the_lean_path(lxd_server, trusted_target, requests_path):
    driver = LXDDriver(timeout=(5, 30))
    host = driver.discover(trusted_target)
    assert host.version and host.storage_pools
    assert requests_path == []  # every discovery request was a plain one


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")  # unpinned on purpose
def test_lean_and_requests_paths_send_and_answer_the_same(lxd_server, trusted_target, requests_path):
    def session(cls, cert):
        s = cls()
        s.trust_env, s.verify, s.cert = False, False, cert
        return s

    with cert_files(trusted_target) as cert:
        lean, plain = session(LXDSession, cert), session(requests.Session, cert)
        # Parameters: URLs prepared once per distinct URL and parameters, which 1, True and "1" are not.
        calls = [("GET", "/1.0", {"params": {"recursion": "0"}}),
                 *[("GET", "/1.0/instances", {"params": {"recursion": v}}) for v in (1, True, "1", 1, ["1", "2"])],
                 ("GET", "/1.0/instances/no-such-instance", {"timeout": (5, 30)}),
                 ("POST", "/1.0/instances", {"params": {"project": "default"}, "json": {"name": "x"}}),
                 ("PUT", "/1.0/instances/no-such-instance/state", {"data": b'{"action": "stop"}',
                                                                   "headers": {"Content-Type": "application/json"}})]
        for method, path, kwargs in calls:
            a = lean.request(method, lxd_server.url + path, **kwargs)
            assert requests_path == []
            b = plain.request(method, lxd_server.url + path, **kwargs)
            requests_path.clear()
            assert (a.status_code, a.json() | {"metadata": None}, a.url) == \
                   (b.status_code, b.json() | {"metadata": None}, b.url), (method, path)
            assert (dict(a.request.headers), a.request.body) == (dict(b.request.headers), b.request.body)
            if path == "/1.0/instances":
                assert a.url.endswith(urlencode(kwargs["params"], doseq=True)), a.url
        assert lean.get(lxd_server.url + "/1.0").json()["metadata"]["api_version"] == "1.0"
        # Anything beyond a plain request (here a stream) takes requests' own path.
        with lean.get(lxd_server.url + "/1.0", stream=True) as streamed:
            assert streamed.status_code == 200
        assert requests_path == [("GET", lxd_server.url + "/1.0")]
        lean.close()
        plain.close()


def pinned_session(fingerprint: str, cert: tuple[str, str] | None = None) -> LXDSession:
    """A session set up as LXDDriver sets up its own."""
    session = LXDSession()
    session.trust_env, session.verify = False, False
    session.mount("https://", PinnedAdapter(fingerprint, client_cert=cert))
    return session


@pytest.fixture
def pin_checks(monkeypatch) -> list[ssl.SSLSocket]:
    """The socket of every new kept connection, recorded when its pin is checked (once a handshake)."""
    checked: list[ssl.SSLSocket] = []
    real = lxd_http.check_pin

    def recorded(sock, fingerprint):
        checked.append(sock)
        real(sock, fingerprint)

    monkeypatch.setattr(lxd_http, "check_pin", recorded)
    return checked


@pytest.fixture
def sends(monkeypatch) -> list[str]:
    """The path of every request written on a kept connection (retries included)."""
    written: list[str] = []
    real = lxd_http.PinnedHTTPSConnection.request

    def recorded(self, method, url, *args, **kwargs):
        written.append(url)
        return real(self, method, url, *args, **kwargs)

    monkeypatch.setattr(lxd_http.PinnedHTTPSConnection, "request", recorded)
    return written


def wait_for(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_plain_requests_share_one_kept_connection(lxd_server, trusted_target, pin_checks, requests_path):
    pin = tls.cert_fingerprint(lxd_server.server_cert_pem)
    with cert_files(trusted_target) as cert:
        session = pinned_session(pin, cert)
    # The client certificate lives in the adapter's TLS context: the files are gone, LXD still trusts us.
    for _ in range(4):
        assert session.get(f"{lxd_server.url}/1.0", timeout=(5, 30)).json()["metadata"]["auth"] == "trusted"
    missing = session.put(f"{lxd_server.url}/1.0/instances/no-such-instance/state", json={"action": "stop"})
    assert missing.status_code == 404
    assert len(pin_checks) == 1 and requests_path == []
    assert pin_checks[0].getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)  # a body never waits for an ACK
    # The connection went away while idle (its socket shut under the session): noticed before reuse,
    # the next request goes on a fresh, pin-checked connection.
    pin_checks[0].shutdown(socket.SHUT_RDWR)
    assert session.get(f"{lxd_server.url}/1.0", timeout=5).status_code == 200
    assert len(pin_checks) == 2
    session.close()
    assert pin_checks[1].fileno() == -1  # the session closed its kept connection


def test_lxd_errors_reach_pylxd_unchanged(lxd_server, trusted_target, requests_path):
    pin = tls.cert_fingerprint(lxd_server.server_cert_pem)
    with cert_files(trusted_target) as cert, pinned_session(pin, cert) as session:
        client = pylxd.Client(endpoint=lxd_server.url, cert=cert, verify=False, session=session, timeout=(5, 30))
        with pytest.raises(lxd_exc.NotFound) as e:
            client.instances.get("no-such-instance")
    assert "not found" in str(e.value).lower()
    assert requests_path == []


def test_the_pin_is_checked_before_a_new_connection_sends_anything(lxd_server, tiny_https):
    other = tiny_https()
    with pinned_session(tls.cert_fingerprint(lxd_server.server_cert_pem)) as session:
        with pytest.raises(ServerCertificateChanged) as e:
            session.get(f"{other.url}/1.0", timeout=5)
    assert e.value.expected == tls.cert_fingerprint(lxd_server.server_cert_pem)
    wait_for(lambda: other.closed == 1)
    assert other.connections == 1 and other.requests == []  # it got a handshake, never a request
    with pinned_session(other.fingerprint) as session:
        assert session.get(f"{other.url}/1.0", timeout=5).json() == {"type": "sync"}


def test_a_connection_the_server_closed_while_idle_is_not_reused(tiny_https, pin_checks, sends):
    server = tiny_https(close_when_idle)
    with pinned_session(server.fingerprint) as session:
        for n in range(1, 4):
            assert session.get(f"{server.url}/1.0/{n}", timeout=5).status_code == 200
            wait_for(lambda: server.closed == n)
    # Each request went once, on its own fresh connection: none was written on a closed one.
    assert (sends, len(pin_checks), server.connections) == (["/1.0/1", "/1.0/2", "/1.0/3"], 3, 3)


def test_a_reused_connection_dropped_before_answering_is_retried_once_fresh(tiny_https, pin_checks, sends):
    server = tiny_https(drop_from(2))
    with pinned_session(server.fingerprint) as session:
        assert session.get(f"{server.url}/1.0/a", timeout=5).status_code == 200
        assert session.get(f"{server.url}/1.0/b", timeout=5).json() == {"type": "sync"}
    assert sends == ["/1.0/a", "/1.0/b", "/1.0/b"]
    assert (len(pin_checks), server.connections) == (2, 2)


def test_no_retry_on_a_fresh_connection_or_after_answer_bytes(tiny_https, sends):
    fresh_dropped = tiny_https(drop_from(1))
    with pinned_session(fresh_dropped.fingerprint) as session:
        with pytest.raises(requests.exceptions.ConnectionError) as e:
            session.get(f"{fresh_dropped.url}/1.0/a", timeout=5)
    assert "RemoteDisconnected" in str(e.value)
    assert sends == ["/1.0/a"] and fresh_dropped.connections == 1
    sends.clear()
    half = tiny_https(half_answer_from(2))
    with pinned_session(half.fingerprint) as session:
        assert session.get(f"{half.url}/1.0/a", timeout=5).status_code == 200
        with pytest.raises(requests.exceptions.ConnectionError):
            session.get(f"{half.url}/1.0/b", timeout=5)
        assert session.get(f"{half.url}/1.0/c", timeout=5).status_code == 200  # a fresh connection
    assert sends == ["/1.0/a", "/1.0/b", "/1.0/c"] and half.connections == 2


def test_timeouts_and_failures_are_requests_own(tiny_https, tmp_path):
    silent = tiny_https()
    silent.silent.set()
    with pinned_session(silent.fingerprint) as session:
        for timeout in (0.3, (5, 0.3)):
            started = time.monotonic()
            with pytest.raises(requests.exceptions.ReadTimeout):
                session.get(f"{silent.url}/1.0", timeout=timeout)
            assert time.monotonic() - started < 3
        # ... which the driver turns into what users see, as before.
        with pytest.raises(Unreachable) as e, LXDDriver(timeout=(5, 0.3))._translated(silent.url):
            session.get(f"{silent.url}/1.0", timeout=(5, 0.3))
        assert "did not answer within 0.3 s" in str(e.value)
    with socket.socket() as listener:  # accepts TCP, never answers the TLS handshake
        listener.bind(("127.0.0.1", 0))
        listener.listen(5)
        address = "https://127.0.0.1:%d" % listener.getsockname()[1]
        with pinned_session("ab" * 32) as session:
            started = time.monotonic()
            with pytest.raises(requests.exceptions.ConnectTimeout):
                session.get(f"{address}/1.0", timeout=(0.3, 30))
            assert time.monotonic() - started < 3
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        address = "https://127.0.0.1:%d" % closed.getsockname()[1]  # nothing listens there now
    with pinned_session("ab" * 32) as session:
        with pytest.raises(requests.exceptions.ConnectionError) as refused:
            session.get(f"{address}/1.0", timeout=5)
        assert not isinstance(refused.value, requests.exceptions.Timeout)
        assert "refused" in str(refused.value).lower()
        plain_http = _plain_http_listener()
        with pytest.raises(requests.exceptions.SSLError):
            session.get(f"https://127.0.0.1:{plain_http.getsockname()[1]}/1.0", timeout=5)
        plain_http.close()


def _plain_http_listener() -> socket.socket:
    """Answers whatever arrives with a plain-text HTTP response: not TLS."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)

    def serve():
        conn, _ = listener.accept()
        with conn:
            conn.recv(4096)
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    threading.Thread(target=serve, daemon=True).start()
    return listener


def test_set_cookie_goes_to_the_jar_and_the_session_stops_being_plain(tiny_https, requests_path):
    server = tiny_https(sets_a_cookie)
    with pinned_session(server.fingerprint) as session:
        first = session.get(f"{server.url}/1.0", timeout=5)
        assert first.cookies.get("lxd-session") == session.cookies.get("lxd-session") == "abc"
        assert requests_path == []
        session.get(f"{server.url}/1.0", timeout=5)
    assert requests_path == [("GET", f"{server.url}/1.0")]
    assert server.requests[-1][2].get("Cookie") == "lxd-session=abc"


def test_redirect_goes_through_requests_and_compressed_answers_are_decoded(tiny_https, requests_path):
    moved = tiny_https(redirects)
    with pinned_session(moved.fingerprint) as session:
        answered = session.get(f"{moved.url}/moved", timeout=5)
        assert (answered.status_code, answered.url) == (200, f"{moved.url}/1.0")
        assert requests_path == [("GET", f"{moved.url}/moved")]
        assert session.get(f"{moved.url}/moved", timeout=5, allow_redirects=False).status_code == 302
    zipped = tiny_https(gzipped)
    with pinned_session(zipped.fingerprint) as session:
        answered = session.get(f"{zipped.url}/1.0", timeout=5)
    assert answered.json() == {"zipped": True} and answered.headers["content-encoding"] == "gzip"
    not_zipped = tiny_https(falsely_gzipped)
    with pinned_session(not_zipped.fingerprint) as session:
        with pytest.raises(requests.exceptions.ContentDecodingError):
            session.get(f"{not_zipped.url}/1.0", timeout=5)


def test_a_busy_kept_connection_sends_through_the_adapter(tiny_https, monkeypatch, pin_checks):
    adapter_sends: list[str] = []
    real = PinnedAdapter.send

    def recorded(self, request, **kwargs):
        adapter_sends.append(request.path_url)
        return real(self, request, **kwargs)

    monkeypatch.setattr(PinnedAdapter, "send", recorded)
    inner: list[requests.Response] = []

    def nested(handler, _nth):
        if handler.path == "/outer":  # asked while the session's kept connection waits for this answer
            inner.append(session.get(f"{server.url}/inner", timeout=5))
        answer(handler)

    server = tiny_https(nested)
    with pinned_session(server.fingerprint) as session:
        assert session.get(f"{server.url}/outer", timeout=5).status_code == 200
    assert [r.status_code for r in inner] == [200]
    assert adapter_sends == ["/inner"] and len(pin_checks) == 1


_URL_TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)


@settings(max_examples=300, deadline=None)
@example(origin="https://127.0.0.1:8443", path="/.", params={})
@example(origin="https://127.0.0.1:8443", path="/1.0/../x/./wait", params={"project": "p"})
@given(origin=st.sampled_from(["https://127.0.0.1:8443", "https://[::1]:8443", "http://lxd.example",
                               "https://LXD.Example:8443", "https://user@127.0.0.1:8443"]),
       path=st.lists(st.one_of(st.from_regex(r"[A-Za-z0-9._~\-]{0,10}", fullmatch=True), _URL_TEXT),
                     max_size=4).map(lambda parts: "/" + "/".join(parts)),
       params=st.dictionaries(st.text(max_size=6), st.one_of(_URL_TEXT, st.integers()), max_size=3))
def test_a_request_url_is_prepared_exactly_as_requests_prepares_it(origin, path, params):
    """The remembered query strings and the plain-URL shortcut give requests' own URL."""
    from rack.drivers.lxd_session import _params_key, _prepared_url

    expected = requests.PreparedRequest()
    expected.prepare_url(origin + path, params)
    assert _prepared_url(origin + path, _params_key(params)) == expected.url


def test_remembered_headers_are_requests_own_and_never_shared():
    session = LXDSession()
    first = session._prepared("POST", "https://127.0.0.1:8443/1.0/instances", {"json": {"a": 1}})
    second = session._prepared("GET", "https://127.0.0.1:8443/1.0", {"headers": {"X-Extra": "1"}})
    expected = requests.Session().prepare_request(requests.Request("POST", "https://127.0.0.1:8443/1.0/instances",
                                                                   json={"a": 1}))
    assert dict(first.headers) == dict(expected.headers)
    assert second.headers["X-Extra"] == "1" and "Content-Length" not in second.headers
    assert "X-Extra" not in first.headers  # each request has its own copy
    with pytest.raises(requests.exceptions.InvalidHeader):
        session._prepared("GET", "https://127.0.0.1:8443/1.0", {"headers": {"X-Bad": "a\nb"}})


def test_a_request_with_a_body_leaves_as_one_segment(tiny_https, monkeypatch):
    """http.client writes headers and body apart; both go out corked, and the socket is uncorked
    after, so nothing later waits for the kernel's 200 ms cork timer."""
    import http.client

    corked_during_send: list[tuple[bytes, int]] = []
    real_send = http.client.HTTPConnection.send

    def send(self, data):
        corked_during_send.append((bytes(data[:4]), self.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_CORK)))
        return real_send(self, data)

    monkeypatch.setattr(http.client.HTTPConnection, "send", send)
    server = tiny_https()  # reads no body: one request a connection here
    with pinned_session(server.fingerprint) as session:
        assert session.post(f"{server.url}/1.0/instances", json={"name": "x"}, timeout=5).status_code == 200
        kept = next(iter(session._kept.values()))
        assert kept._conn.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_CORK) == 0
    with pinned_session(server.fingerprint) as session:
        assert session.get(f"{server.url}/1.0", timeout=5).status_code == 200
    assert corked_during_send == [(b"POST", 1), (b'{"na', 1), (b"GET ", 0)]
