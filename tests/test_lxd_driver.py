"""LXDDriver against a REAL private LXD daemon (tests/fixtures/lxd.py)."""

from __future__ import annotations

import http.server
import json
import os
import socket
import ssl
import subprocess
import threading
import uuid

import attrs
import cattrs
import pytest
import requests

from common import tls
from common.models import DiscoveredHost, DiscoveredVM, HostTarget, VMDisk, VMInterface
from rack.drivers import lxd_delete as lxd_delete_module
from rack.drivers.base import (
    DriverError,
    NotLXD,
    ServerCertificateChanged,
    Unreachable,
    Untrusted,
    VMHostDriver,
    WrongTrustPassword,
)
from rack.drivers.lxd import LXDDriver
from rack.drivers.lxd_instances import (
    DEFAULT_DISK_SIZE,
    DEFAULT_MEMORY,
    instance_to_vm,
    network_refs,
    parse_cpu_limit,
    parse_memory,
    parse_size,
    pools_needing_default,
    power_state,
    volume_refs,
)
from rack.drivers.lxd_resources import parse_cpu_memory, parse_interfaces
from rack.drivers.lxd_tls import PinnedAdapter, endpoint_for

from tests.fixtures.lxd import BridgesUnavailable, lxc_json, lxc_missing, unique, unmanaged_bridges


def new_target(address: str, project: str = "default", pin: str | None = None) -> HostTarget:
    """An LXD host target with a fresh client identity (not trusted anywhere yet)."""
    kp = tls.make_self_signed(f"vmyard-test-{uuid.uuid4().hex[:8]}", kind="rsa")
    return HostTarget(type="lxd", address=address, project=project, cert_pem=kp.cert_pem,
                      key_pem=kp.key_pem, server_fingerprint=pin)


def in_project(target: HostTarget, project: str) -> HostTarget:
    return attrs.evolve(target, project=project)


@pytest.fixture
def driver() -> LXDDriver:
    return LXDDriver(timeout=(5, 30))


@pytest.fixture
def trusted(lxd_server) -> HostTarget:
    """The fixture's LXD (project default) with a client identity it trusts."""
    target = new_target(lxd_server.address)
    lxd_server.trust_add(target.cert_pem, unique("trusted"))
    return target


def test_driver_implements_protocol():
    assert isinstance(LXDDriver(), VMHostDriver)


def test_endpoint_for():
    assert endpoint_for("h") == ("https://h:8443", "h", 8443)
    assert endpoint_for("h:1234") == ("https://h:1234", "h", 1234)
    assert endpoint_for("https://10.0.0.1") == ("https://10.0.0.1:8443", "10.0.0.1", 8443)
    assert endpoint_for("[::1]:9") == ("https://[::1]:9", "::1", 9)


def test_untrusted_without_password(lxd_server, driver):
    target = new_target(lxd_server.address)
    with pytest.raises(Untrusted) as e:
        driver.discover(target)
    assert "lxc config trust add" in str(e.value)
    assert tls.cert_fingerprint(target.cert_pem) in str(e.value)


def lxd_interface_names(lxd_server) -> set[str]:
    """The NIC ports, bridges and bonds LXD reports right now (a discovery's interfaces)."""
    res = lxc_json(lxd_server, "/1.0/resources")
    ports = {p["id"] for c in res["network"]["cards"] for p in c.get("ports", [])}
    networks = lxc_json(lxd_server, "/1.0/networks?recursion=1")
    return ports | {n["name"] for n in networks if n["type"] in ("bridge", "bond")}


def test_trusted_discover(lxd_server, driver, trusted):
    listed_before = lxd_interface_names(lxd_server)
    host = driver.discover(trusted)
    listed_after = lxd_interface_names(lxd_server)
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
    # Other LXD daemons and tests add and remove bridges on this machine meanwhile: what LXD
    # listed both before and after is there, and nothing it listed neither time.
    assert listed_before & listed_after <= {i.name for i in host.interfaces} <= listed_before | listed_after
    ports = {p["id"]: p["address"] for c in res["network"]["cards"] for p in c.get("ports", [])}
    assert {i.name: i.mac for i in host.interfaces if i.name in ports} == ports

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
    target = new_target(lxd_server.address)
    host = driver.discover(target, password=lxd_server.trust_password)
    assert host.version
    # Now trusted: no password needed any more.
    assert driver.discover_projects(target)
    fps = {c["fingerprint"] for c in lxc_json(lxd_server, "/1.0/certificates?recursion=1")}
    assert tls.cert_fingerprint(target.cert_pem) in fps


def test_trust_token(lxd_server, driver):
    target = new_target(lxd_server.address)
    token = lxd_server.trust_token(unique("tok"))
    host = driver.discover(target, password=token)
    assert host.server_fingerprint == tls.cert_fingerprint(lxd_server.server_cert_pem)
    # A token is single-use.
    with pytest.raises(WrongTrustPassword):
        driver.discover(new_target(lxd_server.address), password=token)


def test_wrong_password(lxd_server, driver):
    with pytest.raises(WrongTrustPassword) as e:
        driver.discover(new_target(lxd_server.address), password="not-the-password")
    assert "not-the-password" not in str(e.value)
    assert "rejected the trust password" in str(e.value)


def test_pinned_fingerprint(lxd_server, driver, trusted):
    real = tls.cert_fingerprint(lxd_server.server_cert_pem)
    ok = attrs.evolve(trusted, server_fingerprint=real)
    assert driver.discover(ok).server_fingerprint == real
    bad = attrs.evolve(trusted, server_fingerprint="ab" * 32)
    with pytest.raises(ServerCertificateChanged) as e:
        driver.discover(bad)
    assert (e.value.expected, e.value.got) == ("ab" * 32, real)


def test_every_connection_checks_the_pin(lxd_server):
    """A certificate that changes after the probe is caught on the next connection, typed."""
    url, _, _ = endpoint_for(lxd_server.address)
    real = tls.cert_fingerprint(lxd_server.server_cert_pem)
    for pin, ok in ((real, True), ("ab" * 32, False)):
        with requests.Session() as session:
            session.trust_env, session.verify = False, False
            session.mount("https://", PinnedAdapter(pin))
            if ok:
                assert session.get(f"{url}/1.0", timeout=5).status_code == 200
                continue
            with pytest.raises(ServerCertificateChanged) as e:
                session.get(f"{url}/1.0", timeout=5)
            assert e.value.expected == "ab" * 32


def test_pinned_fingerprint_checked_before_password_is_sent(lxd_server, driver):
    target = new_target(lxd_server.address, pin="cd" * 32)
    with pytest.raises(ServerCertificateChanged):
        driver.discover(target, password=lxd_server.trust_password)
    fps = {c["fingerprint"] for c in lxc_json(lxd_server, "/1.0/certificates?recursion=1")}
    assert tls.cert_fingerprint(target.cert_pem) not in fps


def test_unreachable_refused(driver):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens
    with pytest.raises(Unreachable) as e:
        driver.discover(new_target(f"127.0.0.1:{port}"))
    assert "refused" in str(e.value).lower()


def test_unreachable_timeout():
    with socket.socket() as s:  # listens but never answers the TLS handshake
        s.bind(("127.0.0.1", 0))
        s.listen(5)
        port = s.getsockname()[1]
        with pytest.raises(Unreachable) as e:
            LXDDriver(timeout=(0.5, 0.5)).discover(new_target(f"127.0.0.1:{port}"))
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
        driver.discover(new_target(http_server(use_tls=False)))
    assert "does not speak TLS" in str(e.value)


def test_not_lxd_https_json(http_server, driver):
    with pytest.raises(NotLXD) as e:
        driver.discover(new_target(http_server(use_tls=True)))
    assert "not an LXD API response" in str(e.value)


def test_project_created_with_default_features(lxd_server, driver, trusted):
    name = unique("vmyard")
    host = driver.discover(in_project(trusted, name))
    assert name in {p.name for p in host.projects}
    project = lxc_json(lxd_server, f"/1.0/projects/{name}")
    assert project["description"] == "Project managed by vmyard"
    # No config sent: LXD's per-project defaults (spec §6.2).
    assert project["config"] == {"features.images": "true", "features.profiles": "true",
                                 "features.storage.volumes": "true"}
    # Idempotent.
    driver.discover(in_project(trusted, name))
    assert lxc_json(lxd_server, f"/1.0/projects/{name}") == project


def test_existing_project_and_vm_untouched(lxd_server, driver, trusted):
    name = unique("existing")
    lxd_server.lxc("project", "create", name, "-c", "features.images=false",
                   "-c", "features.profiles=false", "-c", "features.storage.volumes=false")
    lxd_server.lxc("init", "--empty", "--vm", "vm1", "--project", name,
                   "-c", "limits.memory=256MiB", "-c", "security.secureboot=false")
    project_before = lxc_json(lxd_server, f"/1.0/projects/{name}")
    vm_before = lxc_json(lxd_server, f"/1.0/instances/vm1?project={name}")
    assert vm_before["type"] == "virtual-machine"

    host = driver.discover(in_project(trusted, name))

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
    nodes, cores, speed, memory = parse_cpu_memory(res)
    assert (cores, speed, memory) == (4, 3500, 8 << 30)
    assert [(n.index, n.cores, n.memory) for n in nodes] == [(0, [0, 1], 4 << 30), (1, [2], 4 << 30)]
    assert nodes[0].hugepages[0].page_size == 2 << 20
    assert (nodes[0].hugepages[0].total, nodes[0].hugepages[0].free) == (10, 6)
    [nic] = parse_interfaces(res)
    assert (nic.name, nic.numa_node, nic.sriov_max_vfs, nic.sriov_current_vfs, nic.link_speed) == \
        ("enp1s0", 1, 8, 2, 10000)


# -- virtual machines ----------------------------------------------------------------------

GiB, MiB = 1024**3, 1024**2


def purge_project(lxd_server, project: str) -> None:
    """Delete everything the tests created in `project`, then the project (best effort,
    each step on its own so one failure does not leave the rest behind)."""
    def quiet(*args):
        try:
            lxd_server.lxc(*args)
        except subprocess.CalledProcessError:
            pass

    try:
        urls = lxc_json(lxd_server, f"/1.0/instances?project={project}")
    except subprocess.CalledProcessError:
        urls = []
    for url in urls:
        quiet("delete", "--force", url.split("?")[0].rsplit("/", 1)[-1], "--project", project)
    try:
        profiles = lxc_json(lxd_server, f"/1.0/profiles?project={project}")
    except subprocess.CalledProcessError:
        profiles = []
    for url in profiles:
        name = url.split("?")[0].rsplit("/", 1)[-1]
        if name != "default":
            quiet("profile", "delete", name, "--project", project)
    try:
        vols = lxc_json(lxd_server, f"/1.0/storage-pools/default/volumes/custom?project={project}")
    except subprocess.CalledProcessError:
        vols = []
    for url in vols:
        quiet("storage", "volume", "delete", "default", url.split("?")[0].rsplit("/", 1)[-1],
              "--project", project)
    quiet("project", "delete", project)


@pytest.fixture
def vm_project(lxd_server):
    """A fresh project with LXD's default features (own profiles: no root disk in its
    default profile, so instances get `-s default`)."""
    name = unique("vms")
    lxd_server.lxc("project", "create", name)
    try:
        yield name
    finally:
        purge_project(lxd_server, name)


@pytest.fixture
def nic_parent():
    """(nictype, parent, expected attach_type) for a NIC that needs no LXD network:
    an unmanaged bridge (removed afterwards), else macvlan on lo."""
    try:
        with unmanaged_bridges(1, prefix="vyt") as names:
            yield "bridged", names[0], "bridge"
    except BridgesUnavailable:
        yield "macvlan", "lo", "macvlan"


def init_vm(lxd_server, project: str, name: str, *args: str) -> None:
    lxd_server.lxc("init", "--empty", "--vm", name, "--project", project, "-s", "default",
                   "-c", "security.secureboot=false", *args)


def add_volume(lxd_server, project: str, name: str, size: str) -> None:
    lxd_server.lxc("storage", "volume", "create", "default", name, "--type=block", f"size={size}",
                   "--project", project)


def snapshot(lxd_server, project: str, names: list[str]) -> dict:
    return {n: lxc_json(lxd_server, f"/1.0/instances/{n}?project={project}") for n in names}


def test_discover_vms(lxd_server, driver, trusted, vm_project, nic_parent):
    p = vm_project
    nictype, parent, attach_type = nic_parent
    add_volume(lxd_server, p, "vol1", "64MiB")
    init_vm(lxd_server, p, "vm1", "-c", "limits.cpu=2", "-c", "limits.memory=512MiB")
    lxd_server.lxc("config", "device", "add", "vm1", "data", "disk", "pool=default", "source=vol1",
                   "--project", p)
    lxd_server.lxc("config", "device", "add", "vm1", "eth0", "nic", f"nictype={nictype}",
                   f"parent={parent}", "hwaddr=00:16:3e:12:34:56", "--project", p)
    # no hwaddr: LXD picks one and keeps it in volatile.eth1.hwaddr
    lxd_server.lxc("config", "device", "add", "vm1", "eth1", "nic", f"nictype={nictype}",
                   f"parent={parent}", "--project", p,
                   *(["vlan=42"] if nictype == "bridged" else []))
    init_vm(lxd_server, p, "vm2", "-c", "limits.cpu=0-1", "-c", "limits.memory.hugepages=true",
            "-d", "root,size=3GiB")
    lxd_server.lxc("init", "--empty", "c1", "--project", p, "-s", "default")  # a container
    before = snapshot(lxd_server, p, ["vm1", "vm2", "c1"])
    vol_before = lxc_json(lxd_server, f"/1.0/storage-pools/default/volumes/custom/vol1?project={p}")

    host = driver.discover(in_project(trusted, p))

    assert sorted(vm.instance_name for vm in host.vms) == ["c1", "vm1", "vm2"]  # containers are machines too
    vms = {vm.instance_name: vm for vm in host.vms}
    assert [vm.instance_type for vm in (vms["c1"], vms["vm1"])] == ["container", "virtual-machine"]
    vm1, vm2 = before["vm1"], before["vm2"]
    assert vm1["status_code"] == 102 and vm1["location"] == "none"
    assert vm1["architecture"] == "x86_64"
    # What LXD reports: the volume's size, and the file the dir pool made for it.
    assert vol_before["config"]["size"] == "64MiB"
    vol_file = lxd_server.lxd_dir / "storage-pools/default/custom" / f"{p}_vol1" / "root.img"
    assert os.stat(vol_file).st_size == 64 * MiB
    # The root disk has no size anywhere (device, pool) → the 10 GB default.
    assert "size" not in vm1["expanded_devices"]["root"]
    assert "volume.size" not in lxc_json(lxd_server, "/1.0/storage-pools/default")["config"]
    disks = {"data": VMDisk("data", 64 * MiB, "default"),
             "root": VMDisk("root", DEFAULT_DISK_SIZE, "default")}
    nics = {
        "eth0": VMInterface("eth0", "00:16:3e:12:34:56", attach_type, parent, vid=0, boot=True),
        "eth1": VMInterface("eth1", vm1["expanded_config"]["volatile.eth1.hwaddr"], attach_type,
                            parent, vid=42 if nictype == "bridged" else 0, boot=False),
    }
    assert vms["vm1"] == DiscoveredVM(
        instance_name="vm1", project=p, architecture="amd64/generic", power_state="off",
        cores=2, memory=512 * MiB, pinned_cores=[], hugepages_backed=False,
        # the root disk first, then LXD's expanded_devices order
        disks=[disks["root"]] + [disks[n] for n, d in vm1["expanded_devices"].items()
                                 if d["type"] == "disk" and n != "root"],
        interfaces=[nics[n] for n, d in vm1["expanded_devices"].items() if d["type"] == "nic"],
        location=None,
    )
    assert vms["vm2"] == DiscoveredVM(
        instance_name="vm2", project=p, architecture="amd64/generic", power_state="off",
        cores=2, memory=DEFAULT_MEMORY, pinned_cores=[0, 1], hugepages_backed=True,
        disks=[VMDisk("root", 3 * GiB, "default")], interfaces=[], location=None,
    )
    assert vm2["expanded_devices"]["root"]["size"] == "3GiB"

    # Discovery only reads.
    assert snapshot(lxd_server, p, ["vm1", "vm2", "c1"]) == before
    assert lxc_json(lxd_server, f"/1.0/storage-pools/default/volumes/custom/vol1?project={p}") \
        == vol_before
    assert cattrs.structure(cattrs.unstructure(host), DiscoveredHost) == host


def test_discover_vms_volume_in_default_project(lxd_server, driver, trusted):
    """A project without features.storage.volumes keeps its volumes in `default`."""
    p, vol = unique("novols"), unique("vol")
    lxd_server.lxc("project", "create", p, "-c", "features.images=false",
                   "-c", "features.profiles=false", "-c", "features.storage.volumes=false")
    try:
        add_volume(lxd_server, p, vol, "16MiB")
        assert lxc_json(lxd_server, f"/1.0/storage-pools/default/volumes/custom/{vol}")
        init_vm(lxd_server, p, "vm1")
        lxd_server.lxc("config", "device", "add", "vm1", "data", "disk", "pool=default",
                       f"source={vol}", "--project", p)
        [vm] = driver.discover(in_project(trusted, p)).vms
        assert [(d.name, d.size) for d in vm.disks] == [("root", DEFAULT_DISK_SIZE),
                                                         ("data", 16 * MiB)]
        assert driver.delete_vm(in_project(trusted, p), "vm1") == []
        assert lxc_missing(lxd_server, f"/1.0/storage-pools/default/volumes/custom/{vol}")
    finally:
        purge_project(lxd_server, p)
        try:
            lxd_server.lxc("storage", "volume", "delete", "default", vol)
        except subprocess.CalledProcessError:
            pass


def test_delete_vm(lxd_server, driver, trusted, vm_project):
    p = vm_project
    for vol in ("own", "shared", "viaprofile"):
        add_volume(lxd_server, p, vol, "16MiB")
    init_vm(lxd_server, p, "doomed")
    lxd_server.lxc("config", "device", "add", "doomed", "data", "disk", "pool=default",
                   "source=own", "--project", p)
    lxd_server.lxc("config", "device", "add", "doomed", "data2", "disk", "pool=default",
                   "source=shared", "--project", p)
    # A volume attached through a profile is not the VM's own: it must survive.
    lxd_server.lxc("profile", "create", "extra", "--project", p)
    lxd_server.lxc("profile", "device", "add", "extra", "pdata", "disk", "pool=default",
                   "source=viaprofile", "--project", p)
    lxd_server.lxc("profile", "add", "doomed", "extra", "--project", p)
    # Another VM uses "shared": LXD refuses to delete it, which is a warning.
    init_vm(lxd_server, p, "other")
    lxd_server.lxc("config", "device", "add", "other", "data", "disk", "pool=default",
                   "source=shared", "--project", p)
    other_before = snapshot(lxd_server, p, ["other"])

    warnings = driver.delete_vm(in_project(trusted, p), "doomed")

    assert len(warnings) == 1, warnings
    assert "'shared'" in warnings[0] and "doomed" in warnings[0]
    assert "still in use" in warnings[0]  # LXD's own reason
    vols = f"/1.0/storage-pools/default/volumes/custom/{{}}?project={p}"
    assert lxc_missing(lxd_server, f"/1.0/instances/doomed?project={p}")
    assert lxc_missing(lxd_server, vols.format("own"))
    assert not lxc_missing(lxd_server, vols.format("shared"))
    assert not lxc_missing(lxd_server, vols.format("viaprofile"))
    assert snapshot(lxd_server, p, ["other"]) == other_before


def test_delete_missing_vm_is_a_warning(lxd_server, driver, trusted, vm_project):
    warnings = driver.delete_vm(in_project(trusted, vm_project), "nosuchvm")
    assert len(warnings) == 1
    assert "'nosuchvm'" in warnings[0] and "not found" in warnings[0]


def test_delete_vm_deletes_a_container(lxd_server, driver, trusted, vm_project):
    lxd_server.lxc("init", "--empty", "c1", "--project", vm_project, "-s", "default")
    assert driver.delete_vm(in_project(trusted, vm_project), "c1") == []
    assert lxc_missing(lxd_server, f"/1.0/instances/c1?project={vm_project}")


def test_delete_vm_stop_failure(lxd_server, driver, trusted, vm_project, monkeypatch):
    """VMs cannot run here, so make the driver believe a stopped one runs: LXD rejects
    the stop, the error names the VM and carries LXD's text, and nothing is deleted."""
    init_vm(lxd_server, vm_project, "vm1")
    monkeypatch.setattr(lxd_delete_module, "STOPPED", -1)
    with pytest.raises(DriverError) as e:
        driver.delete_vm(in_project(trusted, vm_project), "vm1")
    assert "cannot stop LXD VM 'vm1'" in str(e.value)
    assert "already stopped" in str(e.value)
    assert not lxc_missing(lxd_server, f"/1.0/instances/vm1?project={vm_project}")


def test_delete_vm_invalid_name(driver):
    with pytest.raises(DriverError) as e:
        driver.delete_vm(new_target("127.0.0.1:1"), "../x")
    assert "invalid LXD instance name" in str(e.value)


# -- pure parsing ---------------------------------------------------------------------------

def test_parse_size_and_memory():
    assert parse_size("1GB") == 1000**3
    assert parse_size("1GiB") == GiB
    assert parse_size("512MiB") == 512 * MiB
    assert parse_size("1073741824") == GiB
    assert parse_size("10kB") == 10_000 and parse_size("1KiB") == 1024
    assert parse_size("2TB") == 2 * 1000**4 and parse_size("1EiB") == 1024**6
    assert parse_size("100B") == 100 and parse_size("1.5GiB") == 3 * GiB // 2
    for bad in ("50%", "", None, "GiB", "12XB", "-1", "1 2"):
        assert parse_size(bad) is None, bad
    assert parse_memory({"limits.memory": "1GB"}) == 1000**3
    assert parse_memory({"limits.memory": "1GiB"}) == GiB
    assert parse_memory({"limits.memory": "512MiB"}) == 512 * MiB
    assert parse_memory({"limits.memory": "1073741824"}) == GiB
    assert parse_memory({}) == DEFAULT_MEMORY == GiB
    assert parse_memory({"limits.memory": "50%"}) == GiB


def test_parse_cpu_limit():
    assert parse_cpu_limit("") == (1, [])
    assert parse_cpu_limit(None) == (1, [])
    assert parse_cpu_limit("4") == (4, [])
    assert parse_cpu_limit("0-3,8") == (5, [0, 1, 2, 3, 8])
    assert parse_cpu_limit("1,3") == (2, [1, 3])
    assert parse_cpu_limit("3,1,1-2") == (3, [1, 2, 3])
    for bad in ("x", "3-1", "1-", "1,,2"):
        assert parse_cpu_limit(bad) == (1, []), bad


def test_power_state():
    assert [power_state(c) for c in (101, 102, 103, 110, 108, None)] == \
        ["on", "off", "on", "off", "unknown", "unknown"]


def test_instance_to_vm_pure():
    inst = {
        "name": "vm9", "type": "virtual-machine", "architecture": "aarch64", "status_code": 103,
        "location": "member2",
        "expanded_config": {"limits.cpu": "4", "limits.memory": "2GB",
                            "limits.memory.hugepages": "TRUE",
                            "volatile.eth1.hwaddr": "00:16:3e:00:00:02"},
        "expanded_devices": {
            "config": {"type": "disk", "source": "cloud-init:config"},
            "agent": {"type": "disk", "source": "agent:config"},
            "root": {"type": "disk", "path": "/", "pool": "fast"},
            "big": {"type": "disk", "pool": "fast", "source": "bigvol"},
            "sized": {"type": "disk", "pool": "slow", "size": "20GiB"},
            "nosize": {"type": "disk", "pool": "slow"},
            "host": {"type": "disk", "source": "/dev/sdb"},
            "share": {"type": "disk", "source": "/srv/data", "path": "/mnt/data"},
            "eth0": {"type": "nic", "network": "lxdbr0"},
            "eth1": {"type": "nic", "nictype": "macvlan", "parent": "enp5s0", "vlan": "7"},
            "gpu": {"type": "gpu"},
        },
    }
    assert volume_refs(inst) == {("fast", "bigvol")}
    assert network_refs(inst) == {"lxdbr0"}
    assert pools_needing_default(inst) == {"fast", "slow"}
    vm = instance_to_vm(inst, "proj", clustered=True,
                        volume_sizes={("fast", "bigvol", "member2"): "5GiB",
                                      ("fast", "bigvol", None): "1GiB"},
                        network_types={"lxdbr0": "bridge"},
                        pool_volume_sizes={"fast": "30GB", "slow": None})
    assert vm == DiscoveredVM(
        instance_name="vm9", project="proj", architecture="arm64/generic", power_state="on",
        cores=4, memory=2 * 1000**3, pinned_cores=[], hugepages_backed=True,
        disks=[VMDisk("root", 30 * 1000**3, "fast"), VMDisk("big", 5 * GiB, "fast"),
               VMDisk("sized", 20 * GiB, "slow"), VMDisk("nosize", DEFAULT_DISK_SIZE, "slow"),
               VMDisk("host", DEFAULT_DISK_SIZE, None)],
        interfaces=[VMInterface("eth0", None, "bridge", "lxdbr0", 0, True),
                    VMInterface("eth1", "00:16:3e:00:00:02", "macvlan", "enp5s0", 7, False)],
        location="member2",
    )
    # Standalone: LXD says "none" → None; nothing looked up → defaults, never a crash.
    inst.update(location="none", status_code=999)
    inst["expanded_config"] = {"limits.memory": "50%", "limits.cpu": "0-1,4"}
    vm = instance_to_vm(inst, "proj")
    assert (vm.location, vm.power_state, vm.memory, vm.cores, vm.pinned_cores) == \
        (None, "unknown", GiB, 3, [0, 1, 4])
    assert vm.disks[1] == VMDisk("big", DEFAULT_DISK_SIZE, "fast")
    assert vm.interfaces[0].attach_type is None
    assert DEFAULT_DISK_SIZE == 10 * 1024**3  # what LXD gives a root disk by default
