"""The LXD client's session against a real LXD: plain API requests skip requests' per-request
machinery yet send and answer exactly what requests' own path does; anything else takes it."""

from __future__ import annotations

import uuid

import pytest
import requests

from common import tls
from common.models import HostTarget
from rack.drivers.lxd import LXDDriver
from rack.drivers.lxd_session import LXDSession
from rack.drivers.lxd_tls import cert_files


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
        calls = [("GET", "/1.0", {"params": {"recursion": "0"}}),
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
        assert lean.get(lxd_server.url + "/1.0").json()["metadata"]["api_version"] == "1.0"
        # Anything beyond a plain request (here a stream) takes requests' own path.
        with lean.get(lxd_server.url + "/1.0", stream=True) as streamed:
            assert streamed.status_code == 200
        assert requests_path == [("GET", lxd_server.url + "/1.0")]
        lean.close()
        plain.close()
