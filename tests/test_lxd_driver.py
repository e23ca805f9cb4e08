"""LXDDriver against a REAL private LXD daemon (tests/fixtures/lxd.py)."""

from __future__ import annotations

import http.server
import json
import socket
import ssl
import threading
import uuid

import cattrs
import pytest

from common import tls
from common.models import DiscoveredHost, HostCredentials
from rack.drivers.base import (
    NotLXD,
    ServerCertificateChanged,
    Unreachable,
    Untrusted,
    VMHostDriver,
    WrongTrustPassword,
)
from rack.drivers.lxd import LXDDriver, _parse_cpu_memory, _parse_interfaces, endpoint_for


def new_creds(pin: str | None = None) -> HostCredentials:
    kp = tls.make_self_signed(f"vmyard-test-{uuid.uuid4().hex[:8]}", kind="rsa")
    return HostCredentials(cert_pem=kp.cert_pem, key_pem=kp.key_pem, server_fingerprint=pin)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def driver() -> LXDDriver:
    return LXDDriver(timeout=(5, 30))


@pytest.fixture
def trusted_creds(lxd_server) -> HostCredentials:
    creds = new_creds()
    lxd_server.trust_add(creds.cert_pem, unique("trusted"))
    return creds


def lxc_json(lxd_server, path: str):
    return json.loads(lxd_server.lxc("query", path))


def test_driver_implements_protocol():
    assert isinstance(LXDDriver(), VMHostDriver)


def test_endpoint_for():
    assert endpoint_for("h") == ("https://h:8443", "h", 8443)
    assert endpoint_for("h:1234") == ("https://h:1234", "h", 1234)
    assert endpoint_for("https://10.0.0.1") == ("https://10.0.0.1:8443", "10.0.0.1", 8443)
    assert endpoint_for("[::1]:9") == ("https://[::1]:9", "::1", 9)


def test_untrusted_without_password(lxd_server, driver):
    creds = new_creds()
    with pytest.raises(Untrusted) as e:
        driver.discover(lxd_server.address, creds, "default")
    assert "lxc config trust add" in str(e.value)
    assert tls.cert_fingerprint(creds.cert_pem) in str(e.value)


def test_trusted_discover(lxd_server, driver, trusted_creds):
    host = driver.discover(lxd_server.address, trusted_creds, "default")
    server = lxc_json(lxd_server, "/1.0")
    env = server["environment"]
    assert host.name == env["server_name"]
    assert host.version == env["server_version"]
    assert host.architectures == ["amd64/generic"]  # this CI machine is x86_64
    assert host.server_fingerprint == env["certificate_fingerprint"]
    assert host.server_fingerprint == tls.cert_fingerprint(lxd_server.server_cert_pem)
    assert host.capabilities == ["composable", "dynamic_local_storage", "over_commit", "storage_pools"]
    assert host.clustered is False

    res = lxc_json(lxd_server, "/1.0/resources")
    assert host.cores == res["cpu"]["total"]
    assert host.memory == res["memory"]["total"]
    assert sum(len(n.cores) for n in host.numa_nodes) == res["cpu"]["total"]
    assert sum(n.memory for n in host.numa_nodes) == sum(n["total"] for n in res["memory"]["nodes"])
    macs = {p["address"] for c in res["network"]["cards"] for p in c.get("ports", [])}
    assert {i.mac for i in host.interfaces} == macs

    [pool] = host.storage_pools
    assert (pool.name, pool.type) == ("default", "dir")
    assert pool.path == str(lxd_server.lxd_dir / "storage-pools" / "default")
    usage = lxc_json(lxd_server, "/1.0/storage-pools/default/resources")["space"]
    assert pool.total == usage["total"]
    # "used" is the host filesystem's, which other processes change between the two reads.
    assert abs(pool.used - usage["used"]) < 256 * 2**20
    assert pool.available == pool.total - pool.used
    info = lxd_server.lxc("storage", "info", "default")
    assert "total space:" in info and "space used:" in info

    assert "default" in {p.name for p in host.projects}

    # cattrs round trip (the value crosses the AMP boundary)
    assert cattrs.structure(cattrs.unstructure(host), DiscoveredHost) == host


def test_trust_password(lxd_server, driver):
    creds = new_creds()
    host = driver.discover(lxd_server.address, creds, "default", password=lxd_server.trust_password)
    assert host.version
    # Now trusted: no password needed any more.
    assert driver.discover_projects(lxd_server.address, creds)
    fps = {c["fingerprint"] for c in lxc_json(lxd_server, "/1.0/certificates?recursion=1")}
    assert tls.cert_fingerprint(creds.cert_pem) in fps


def test_trust_token(lxd_server, driver):
    creds = new_creds()
    token = lxd_server.trust_token(unique("tok"))
    host = driver.discover(lxd_server.address, creds, "default", password=token)
    assert host.server_fingerprint == tls.cert_fingerprint(lxd_server.server_cert_pem)
    # A token is single-use.
    with pytest.raises(WrongTrustPassword):
        driver.discover(lxd_server.address, new_creds(), "default", password=token)


def test_wrong_password(lxd_server, driver):
    with pytest.raises(WrongTrustPassword) as e:
        driver.discover(lxd_server.address, new_creds(), "default", password="not-the-password")
    assert "not-the-password" not in str(e.value)
    assert "rejected the trust password" in str(e.value)


def test_pinned_fingerprint(lxd_server, driver, trusted_creds):
    real = tls.cert_fingerprint(lxd_server.server_cert_pem)
    ok = HostCredentials(trusted_creds.cert_pem, trusted_creds.key_pem, real)
    assert driver.discover(lxd_server.address, ok, "default").server_fingerprint == real
    bad = HostCredentials(trusted_creds.cert_pem, trusted_creds.key_pem, "ab" * 32)
    with pytest.raises(ServerCertificateChanged) as e:
        driver.discover(lxd_server.address, bad, "default")
    assert (e.value.expected, e.value.got) == ("ab" * 32, real)


def test_pinned_fingerprint_checked_before_password_is_sent(lxd_server, driver):
    creds = new_creds(pin="cd" * 32)
    with pytest.raises(ServerCertificateChanged):
        driver.discover(lxd_server.address, creds, "default", password=lxd_server.trust_password)
    fps = {c["fingerprint"] for c in lxc_json(lxd_server, "/1.0/certificates?recursion=1")}
    assert tls.cert_fingerprint(creds.cert_pem) not in fps


def test_unreachable_refused(driver):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens
    with pytest.raises(Unreachable) as e:
        driver.discover(f"127.0.0.1:{port}", new_creds(), "default")
    assert "refused" in str(e.value).lower()


def test_unreachable_timeout():
    with socket.socket() as s:  # listens but never answers the TLS handshake
        s.bind(("127.0.0.1", 0))
        s.listen(5)
        port = s.getsockname()[1]
        with pytest.raises(Unreachable) as e:
            LXDDriver(timeout=(0.5, 0.5)).discover(f"127.0.0.1:{port}", new_creds(), "default")
    assert "0.5 s" in str(e.value)


class _JSONHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"hello": "world"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server(tmp_path):
    servers = []

    def start(use_tls: bool) -> str:
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _JSONHandler)
        if use_tls:
            kp = tls.make_self_signed("not-lxd", kind="ec")
            (tmp_path / "s.crt").write_text(kp.cert_pem)
            (tmp_path / "s.key").write_text(kp.key_pem)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(tmp_path / "s.crt", tmp_path / "s.key")
            srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f"127.0.0.1:{srv.server_address[1]}"

    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def test_not_lxd_plain_http(http_server, driver):
    with pytest.raises(NotLXD) as e:
        driver.discover(http_server(use_tls=False), new_creds(), "default")
    assert "does not speak TLS" in str(e.value)


def test_not_lxd_https_json(http_server, driver):
    with pytest.raises(NotLXD) as e:
        driver.discover(http_server(use_tls=True), new_creds(), "default")
    assert "not an LXD API response" in str(e.value)


def test_project_created_with_default_features(lxd_server, driver, trusted_creds):
    name = unique("vmyard")
    host = driver.discover(lxd_server.address, trusted_creds, name)
    assert name in {p.name for p in host.projects}
    project = lxc_json(lxd_server, f"/1.0/projects/{name}")
    assert project["description"] == "Project managed by vmyard"
    # No config sent: LXD's per-project defaults (spec §6.2).
    assert project["config"] == {"features.images": "true", "features.profiles": "true",
                                 "features.storage.volumes": "true"}
    # Idempotent.
    driver.discover(lxd_server.address, trusted_creds, name)
    assert lxc_json(lxd_server, f"/1.0/projects/{name}") == project


def test_existing_project_and_vm_untouched(lxd_server, driver, trusted_creds):
    name = unique("existing")
    lxd_server.lxc("project", "create", name, "-c", "features.images=false",
                   "-c", "features.profiles=false", "-c", "features.storage.volumes=false")
    lxd_server.lxc("init", "--empty", "--vm", "vm1", "--project", name,
                   "-c", "limits.memory=256MiB", "-c", "security.secureboot=false")
    project_before = lxc_json(lxd_server, f"/1.0/projects/{name}")
    vm_before = lxc_json(lxd_server, f"/1.0/instances/vm1?project={name}")
    assert vm_before["type"] == "virtual-machine"

    host = driver.discover(lxd_server.address, trusted_creds, name)

    assert name in {p.name for p in host.projects}
    assert lxc_json(lxd_server, f"/1.0/projects/{name}") == project_before
    assert lxc_json(lxd_server, f"/1.0/instances/vm1?project={name}") == vm_before
    lxd_server.lxc("delete", "vm1", "--project", name)


def test_parse_resources_sriov_and_numa():
    res = {
        "cpu": {"total": 4, "sockets": [{"frequency": 2000, "frequency_turbo": 3500, "cores": [
            {"core": 0, "threads": [{"id": 0, "numa_node": 0, "online": True},
                                    {"id": 2, "numa_node": 1, "online": True}]},
            {"core": 1, "threads": [{"id": 1, "numa_node": 0, "online": True},
                                    {"id": 3, "numa_node": 1, "online": False}]}]}]},
        "memory": {"total": 8 << 30, "hugepages_size": 2 << 20, "nodes": [
            {"numa_node": 0, "total": 4 << 30, "hugepages_total": 10, "hugepages_used": 4},
            {"numa_node": 1, "total": 4 << 30, "hugepages_total": 0, "hugepages_used": 0}]},
        "network": {"cards": [{"numa_node": 1, "sriov": {"current_vfs": 2, "maximum_vfs": 8},
                               "ports": [{"id": "enp1s0", "address": "00:11:22:33:44:55",
                                          "link_speed": 10000}]}]},
    }
    nodes, cores, speed, memory = _parse_cpu_memory(res)
    assert (cores, speed, memory) == (4, 3500, 8 << 30)
    assert [(n.index, n.cores, n.memory) for n in nodes] == [(0, [0, 1], 4 << 30), (1, [2], 4 << 30)]
    assert nodes[0].hugepages[0].page_size == 2 << 20
    assert (nodes[0].hugepages[0].total, nodes[0].hugepages[0].free) == (10, 6)
    [nic] = _parse_interfaces(res)
    assert (nic.name, nic.numa_node, nic.sriov_max_vfs, nic.sriov_current_vfs, nic.link_speed) == \
        ("enp1s0", 1, 8, 2, 10000)


def test_credentials_repr_hides_key():
    creds = new_creds()
    assert creds.key_pem not in repr(creds)
