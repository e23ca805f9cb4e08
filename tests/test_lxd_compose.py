"""Composing and powering VMs and containers with LXDDriver against a REAL private LXD
daemon (tests/fixtures/lxd.py), plus the pure helpers of rack/drivers/lxd_compose.py.

VMs can be created here but not started (qemu fails on memlock), which is how the
power-on failure path is tested with LXD's real error.  Containers start: they get a
real power cycle once they have a root filesystem.
"""

from __future__ import annotations

import re
import subprocess
import time

import pytest

from common.models import (
    ComposeRequest,
    DiscoveredVM,
    RequestedDisk,
    RequestedNic,
    VMDisk,
    VMInterface,
)
from rack.drivers import lxd_power
from rack.drivers.base import DriverError, VMHostDriver
from rack.drivers.lxd import LXDDriver
from rack.drivers.lxd_compose import (
    check_request,
    cpu_limit,
    instance_definition,
    kernel_architecture,
    random_mac,
    volume_definitions,
)
from rack.drivers.lxd_instances import debian_architecture
from tests.fixtures.lxd import BridgesUnavailable, lxc_json, lxc_missing, unique, unmanaged_bridges
from tests.fixtures.tiny_rootfs import give_root_filesystem
from tests.test_lxd_driver import driver, in_project, new_target, purge_project, trusted  # noqa: F401 (fixtures)

GiB = 1024**3



def _make_project(lxd_server, own_volumes: bool) -> str:
    name = unique("cmp")
    if own_volumes:  # LXD's defaults: the project has its own images, profiles, volumes
        lxd_server.lxc("project", "create", name)
    else:  # volumes (and profiles, images) are those of the default project
        lxd_server.lxc("project", "create", name, "-c", "features.images=false",
                       "-c", "features.profiles=false", "-c", "features.storage.volumes=false")
    return name


@pytest.fixture(params=["own-volumes", "shared-volumes"])
def project(request, lxd_server):
    own = request.param == "own-volumes"
    name = _make_project(lxd_server, own)
    try:
        yield name, own
    finally:
        purge_project(lxd_server, name)
        for vol in _volumes(lxd_server, "default", name):  # where a shared project's went
            subprocess.run(["lxc", "storage", "volume", "delete", "default", vol],
                           env=lxd_server._env, capture_output=True)


@pytest.fixture
def vm_project(lxd_server):
    name = _make_project(lxd_server, True)
    try:
        yield name
    finally:
        purge_project(lxd_server, name)


@pytest.fixture
def bridge():
    """An unmanaged Linux bridge, removed afterwards."""
    try:
        with unmanaged_bridges(1, prefix="vyc") as names:
            yield names[0]
    except BridgesUnavailable as e:
        pytest.skip(f"the NIC part needs an unmanaged bridge: {e}")


def _host(lxd_server) -> tuple[str, list[int]]:
    """The host's kernel architecture and its CPU thread ids (from /1.0/resources)."""
    arch = lxc_json(lxd_server, "/1.0")["environment"]["kernel_architecture"]
    resources = lxc_json(lxd_server, "/1.0/resources")
    threads = sorted(t["id"] for s in resources["cpu"]["sockets"] for c in s["cores"]
                     for t in c["threads"])
    return arch, threads


def _config(instance: dict) -> dict:
    return {k: v for k, v in instance["config"].items() if not k.startswith("volatile.")}


def _vol_path(volume: str, project: str | None) -> str:
    path = f"/1.0/storage-pools/default/volumes/custom/{volume}"
    return f"{path}?project={project}" if project else path


def _volumes(lxd_server, project: str, containing: str) -> list[str]:
    """Custom volumes of pool `default` seen from `project` whose name contains `containing`."""
    urls = lxc_json(lxd_server, f"/1.0/storage-pools/default/volumes/custom?project={project}")
    return [v for u in urls if containing in (v := u.split("?")[0].rsplit("/", 1)[-1])]


def _request(name: str, arch: str, **kw) -> ComposeRequest:
    values = dict(instance_name=name, architecture=debian_architecture(arch),
                  cores=1, memory=GiB,
                  disks=[RequestedDisk("root", 2 * GiB, "default"),
                         RequestedDisk("disk1", 1 * GiB, "default")])
    values.update(kw)
    return ComposeRequest(**values)


def _by_name(items):
    return {i.name: i for i in items}


# -- compose ----------------------------------------------------------------------------------

def test_driver_implements_protocol():
    assert isinstance(LXDDriver(), VMHostDriver)


def test_compose_vm(lxd_server, driver, trusted, project):
    p, own_volumes = project
    arch, threads = _host(lxd_server)
    pinned = threads[:2]  # pin only cores that exist
    name = f"vm-{p}"
    req = _request(name, arch, cores=len(pinned), pinned_cores=pinned,
                   hugepages_backed=not own_volumes)

    vm = driver.compose_vm(in_project(trusted, p), req)

    inst = lxc_json(lxd_server, f"/1.0/instances/{name}?project={p}")
    assert inst["type"] == "virtual-machine"
    assert inst["status_code"] == 102  # created, never started
    assert inst["profiles"] == []
    assert inst["architecture"] == arch
    assert _config(inst) == {
        "limits.cpu": ",".join(map(str, pinned)) if len(pinned) > 1 else f"{pinned[0]}-{pinned[0]}",
        "limits.memory": str(GiB),
        "limits.memory.hugepages": "false" if own_volumes else "true",
        "security.secureboot": "false",
    }
    volume = f"vmyard-{name}-disk1"
    devices = {
        "root": {"path": "/", "type": "disk", "pool": "default", "size": str(2 * GiB),
                 "boot.priority": "0"},
        "disk1": {"type": "disk", "pool": "default", "source": volume},
    }
    assert inst["devices"] == devices  # no NIC requested: no NIC device
    assert inst["expanded_devices"] == devices  # nothing from a profile
    # The volume is in the project (or, without features.storage.volumes, in default).
    vol = lxc_json(lxd_server, _vol_path(volume, p))
    assert vol["content_type"] == "block" and vol["config"]["size"] == str(GiB)
    assert vol["used_by"] == [f"/1.0/instances/{name}?project={p}"]
    assert lxc_missing(lxd_server, _vol_path(volume, None)) == own_volumes

    assert vm == DiscoveredVM(
        instance_name=name, project=p, architecture=debian_architecture(arch), power_state="off",
        cores=len(pinned), memory=GiB, pinned_cores=pinned, hugepages_backed=not own_volumes,
        disks=[VMDisk("root", 2 * GiB, "default"), VMDisk("disk1", GiB, "default")],  # root first
        interfaces=[], location=None)
    # Discovery sees the same VM.
    assert driver.discover(in_project(trusted, p)).vms == [vm]

    # Deleting it removes the volume too.
    assert driver.delete_vm(in_project(trusted, p), name) == []
    assert lxc_missing(lxd_server, _vol_path(volume, p))


def test_compose_vm_single_pinned_core_and_architecture_default(lxd_server, driver, trusted,
                                                                 vm_project):
    arch, threads = _host(lxd_server)
    core = threads[-1]
    req = _request("one-core", arch, architecture="", pinned_cores=[core],
                   disks=[RequestedDisk("root", 3 * GiB, "default")])
    vm = driver.compose_vm(in_project(trusted, vm_project), req)
    inst = lxc_json(lxd_server, f"/1.0/instances/one-core?project={vm_project}")
    assert inst["config"]["limits.cpu"] == f"{core}-{core}"  # a bare "N" would be a count
    assert inst["architecture"] == arch  # the host's, when the request names none
    assert (vm.cores, vm.pinned_cores) == (1, [core])
    assert vm.disks == [VMDisk("root", 3 * GiB, "default")]
    assert _volumes(lxd_server, vm_project, "one-core") == []


def test_compose_vm_nics(lxd_server, driver, trusted, vm_project, bridge):
    arch, _ = _host(lxd_server)
    name = "nics"
    req = _request(name, arch, disks=[RequestedDisk("root", GiB, "default")], nics=[
        RequestedNic("eth0", "bridged", bridge),
        RequestedNic("eth1", "bridged", bridge, vlan=42, hwaddr="00:16:3E:AB:CD:EF"),
    ])

    vm = driver.compose_vm(in_project(trusted, vm_project), req)

    inst = lxc_json(lxd_server, f"/1.0/instances/{name}?project={vm_project}")
    nics = {k: d for k, d in inst["devices"].items() if d["type"] == "nic"}
    lxd_mac = nics["eth0"].get("hwaddr")  # chosen by vmyard: a random locally administered MAC
    assert lxd_mac and int(lxd_mac.split(":")[0], 16) & 0x03 == 0x02
    assert nics == {
        "eth0": {"type": "nic", "nictype": "bridged", "parent": bridge, "name": "eth0",
                 "boot.priority": "1", "hwaddr": lxd_mac},
        "eth1": {"type": "nic", "nictype": "bridged", "parent": bridge, "name": "eth1",
                 "vlan": "42", "hwaddr": "00:16:3e:ab:cd:ef"},
    }
    # ...and what LXD reports is what compose returned.
    assert driver.discover(in_project(trusted, vm_project)).vms[0].interfaces == vm.interfaces
    assert _by_name(vm.interfaces) == {
        "eth0": VMInterface("eth0", lxd_mac, "bridge", bridge, vid=0, boot=True),
        "eth1": VMInterface("eth1", "00:16:3e:ab:cd:ef", "bridge", bridge, vid=42, boot=False),
    }
    assert vm.disks == [VMDisk("root", GiB, "default")]


def test_compose_failure_removes_created_volumes(lxd_server, driver, trusted, project):
    """disk1's volume is created, disk2's pool does not exist: the error carries LXD's
    reason and disk1's volume is gone again; no instance was made."""
    p, _ = project
    arch, _ = _host(lxd_server)
    name = f"fail-{p}"
    req = _request(name, arch, disks=[RequestedDisk("root", GiB, "default"),
                                         RequestedDisk("disk1", GiB, "default"),
                                         RequestedDisk("disk2", GiB, "nosuchpool")])
    with pytest.raises(DriverError) as e:
        driver.compose_vm(in_project(trusted, p), req)
    assert type(e.value) is DriverError
    assert "'nosuchpool'" in str(e.value) and "Storage pool not found" in str(e.value)
    assert "could not remove" not in str(e.value)
    assert lxc_missing(lxd_server, f"/1.0/instances/{name}?project={p}")
    assert lxc_missing(lxd_server, _vol_path(f"vmyard-{name}-disk1", p))
    assert lxc_missing(lxd_server, _vol_path(f"vmyard-{name}-disk1", None))
    assert _volumes(lxd_server, p, name) == []


def test_compose_failure_when_lxd_refuses_the_instance(lxd_server, driver, trusted, vm_project):
    """The volume exists, then LXD fails the creation operation (root pool missing)."""
    arch, _ = _host(lxd_server)
    req = _request("badroot", arch, disks=[RequestedDisk("root", GiB, "nosuchpool"),
                                                       RequestedDisk("disk1", GiB, "default")])
    with pytest.raises(DriverError) as e:
        driver.compose_vm(in_project(trusted, vm_project), req)
    assert "cannot create LXD VM 'badroot'" in str(e.value)
    assert "Storage pool not found" in str(e.value)  # LXD's words
    assert lxc_missing(lxd_server, f"/1.0/instances/badroot?project={vm_project}")
    assert _volumes(lxd_server, vm_project, "badroot") == []


def _failing_after_instance_created(driver, error):
    """A `_wait` that lets LXD finish creating the instance, then fails (as a lost or
    failed operation would, with the VM already there)."""
    real_wait = driver._wait

    def wait(client, prefix, response, *args, **kwargs):
        real_wait(client, prefix, response, *args, **kwargs)
        if prefix.startswith("cannot create LXD VM"):
            raise error

    return wait


@pytest.mark.parametrize("error", [DriverError("reading back failed"), RuntimeError("bug")])
def test_compose_failure_after_the_instance_exists_removes_it(lxd_server, driver, trusted, vm_project,
                                                              monkeypatch, error):
    arch, _ = _host(lxd_server)

    monkeypatch.setattr(driver, "_wait", _failing_after_instance_created(driver, error))
    with pytest.raises(type(error)) as e:
        driver.compose_vm(in_project(trusted, vm_project), _request("late", arch))
    assert str(e.value) == str(error)  # everything was removed: nothing to add
    assert lxc_missing(lxd_server, f"/1.0/instances/late?project={vm_project}")
    assert _volumes(lxd_server, vm_project, "late") == []


def test_compose_failure_says_what_it_could_not_remove(lxd_server, driver, trusted, vm_project,
                                                       monkeypatch):
    arch, _ = _host(lxd_server)
    real_run = driver._run

    def run(client, what, method, **kwargs):
        if method.__name__ == "delete" and "/instances/" in method.__self__._api_endpoint:
            raise DriverError("refused for the test")
        return real_run(client, what, method, **kwargs)

    monkeypatch.setattr(driver, "_wait", _failing_after_instance_created(driver, DriverError("boom")))
    monkeypatch.setattr(driver, "_run", run)
    with pytest.raises(DriverError) as e:
        driver.compose_vm(in_project(trusted, vm_project), _request("stuck", arch))
    assert str(e.value).startswith("boom; could not remove what was already created: instance 'stuck'")
    assert "refused for the test" in str(e.value)
    # The instance is left (and said so); its volume could not go while it is in use.
    assert not lxc_missing(lxd_server, f"/1.0/instances/stuck?project={vm_project}")
    assert "volume 'vmyard-stuck-disk1'" in str(e.value)


def test_compose_invalid_nic_parent_creates_nothing(lxd_server, driver, trusted, vm_project):
    arch, _ = _host(lxd_server)
    req = _request("badnic", arch,
                   nics=[RequestedNic("eth0", "bridged", "nosuchbr0")])
    with pytest.raises(DriverError) as e:
        driver.compose_vm(in_project(trusted, vm_project), req)
    assert "no network interface 'nosuchbr0'" in str(e.value)
    assert lxc_missing(lxd_server, f"/1.0/instances/badnic?project={vm_project}")
    assert _volumes(lxd_server, vm_project, "badnic") == []


def test_compose_existing_name_is_refused_untouched(lxd_server, driver, trusted, vm_project):
    arch, _ = _host(lxd_server)
    lxd_server.lxc("init", "--empty", "--vm", "taken", "--project", vm_project, "-s", "default",
                   "-c", "limits.cpu=1", "-c", "user.mine=yes")
    before = lxc_json(lxd_server, f"/1.0/instances/taken?project={vm_project}")
    with pytest.raises(DriverError) as e:
        driver.compose_vm(in_project(trusted, vm_project), _request("taken", arch))
    assert str(e.value) == f"an instance named taken already exists in project {vm_project}"
    assert lxc_json(lxd_server, f"/1.0/instances/taken?project={vm_project}") == before
    assert _volumes(lxd_server, vm_project, "taken") == []


@pytest.mark.parametrize("name", ["1vm", "-vm", "vm-", "v_m", "v.m", "a" * 64, "", "vm/x"])
def test_compose_invalid_instance_name(driver, name):
    req = ComposeRequest(name, "amd64/generic", 1, GiB, disks=[RequestedDisk("root", GiB, "d")])
    with pytest.raises(DriverError) as e:
        driver.compose_vm(new_target("127.0.0.1:1", "p"), req)  # refused before connecting
    assert "invalid LXD instance name" in str(e.value)


def test_compose_container_then_power_cycle_and_delete(lxd_server, driver, trusted, vm_project, bridge):
    """A container: no VM-only keys, its data disk a filesystem volume mounted at the asked path,
    made empty (it cannot start until it has a root filesystem), then started and stopped."""
    arch, _ = _host(lxd_server)
    target = in_project(trusted, vm_project)
    req = _request("box", arch, instance_type="container", cores=2,
                   disks=[RequestedDisk("root", 2 * GiB, "default"),
                          RequestedDisk("disk1", GiB, "default", path="/mnt/data")],
                   nics=[RequestedNic("eth0", "bridged", bridge)])

    vm = driver.compose_vm(target, req)

    inst = lxc_json(lxd_server, f"/1.0/instances/box?project={vm_project}")
    assert (inst["type"], inst["status_code"], inst["profiles"]) == ("container", 102, [])
    assert _config(inst) == {"limits.cpu": "2", "limits.memory": str(GiB)}
    mac = inst["devices"]["eth0"]["hwaddr"]
    assert inst["devices"] == {
        "root": {"path": "/", "type": "disk", "pool": "default", "size": str(2 * GiB)},
        "disk1": {"type": "disk", "pool": "default", "source": "vmyard-box-disk1", "path": "/mnt/data"},
        "eth0": {"type": "nic", "nictype": "bridged", "parent": bridge, "name": "eth0", "hwaddr": mac},
    }
    vol = lxc_json(lxd_server, _vol_path("vmyard-box-disk1", vm_project))
    assert vol["content_type"] == "filesystem" and vol["config"]["size"] == str(GiB)
    assert vm.instance_type == "container" and (vm.cores, vm.memory) == (2, GiB)
    assert vm.disks == [VMDisk("root", 2 * GiB, "default"), VMDisk("disk1", GiB, "default")]
    assert driver.discover(target).vms == [vm]

    with pytest.raises(DriverError) as e:
        driver.power_on(target, "box")
    assert str(e.value).startswith(f"cannot start LXD container 'box' in project {vm_project!r}: ")
    assert "composed empty has no root filesystem until it is deployed" in str(e.value)

    give_root_filesystem(lxd_server, vm_project, "box")
    assert driver.power_on(target, "box") == "on"
    assert lxc_json(lxd_server, f"/1.0/instances/box?project={vm_project}")["status"] == "Running"
    assert driver.power_state(target, "box") == "on"
    assert driver.power_off(target, "box") == "off"
    assert lxc_json(lxd_server, f"/1.0/instances/box?project={vm_project}")["status"] == "Stopped"

    assert driver.delete_vm(target, "box") == []
    assert lxc_missing(lxd_server, f"/1.0/instances/box?project={vm_project}")
    assert lxc_missing(lxd_server, _vol_path("vmyard-box-disk1", vm_project))


# -- power --------------------------------------------------------------------------------------

def test_power(lxd_server, driver, trusted, vm_project):
    arch, _ = _host(lxd_server)
    name = "powered"
    driver.compose_vm(in_project(trusted, vm_project), _request(name, arch))
    args = (in_project(trusted, vm_project), name)

    assert driver.power_state(*args) == "off"
    assert driver.power_off(*args) == "off"  # already stopped: nothing to do

    started = time.monotonic()
    try:
        state = driver.power_on(*args)
    except DriverError as e:
        # This machine cannot run VMs: the error is LXD's own, and nothing changed.
        assert time.monotonic() - started < 60
        message = str(e)
        assert message.startswith(f"cannot start LXD VM {name!r} in project {vm_project!r}: ")
        with pytest.raises(subprocess.CalledProcessError) as lxc:
            lxd_server.lxc("start", name, "--project", vm_project)
        lxd_reason = lxc.value.stderr.split("Error: ", 1)[1].splitlines()[0]
        assert lxd_reason and lxd_reason in message
        assert driver.power_state(*args) == "off"
        assert lxc_json(lxd_server, f"/1.0/instances/{name}?project={vm_project}")["status_code"] == 102
    else:  # a machine that can run VMs
        assert state == "on" and driver.power_state(*args) == "on"
        assert driver.power_on(*args) == "on"
        assert driver.power_off(*args) == "off"


def test_power_off_when_lxd_says_already_stopped(lxd_server, driver, trusted, vm_project, monkeypatch):
    """Believing a stopped VM runs, the driver asks LXD to stop it; LXD answers "already
    stopped", which is the state asked for."""
    lxd_server.lxc("init", "--empty", "--vm", "vm1", "--project", vm_project, "-s", "default")
    monkeypatch.setattr(lxd_power, "STOPPED", -1)
    assert driver.power_off(in_project(trusted, vm_project), "vm1") == "off"


def test_power_errors(lxd_server, driver, trusted, vm_project):
    with pytest.raises(DriverError) as e:
        driver.power_state(in_project(trusted, vm_project), "nosuchvm")
    assert str(e.value) == f"no VM or container named 'nosuchvm' in LXD project {vm_project!r}"
    lxd_server.lxc("init", "--empty", "c1", "--project", vm_project, "-s", "default")
    with pytest.raises(DriverError) as e:
        driver.power_on(in_project(trusted, vm_project), "c1")
    assert str(e.value).startswith(f"cannot start LXD container 'c1' in project {vm_project!r}: ")
    assert str(e.value).endswith("(a container composed empty has no root filesystem until it is deployed)")
    with pytest.raises(DriverError) as e:
        driver.power_off(new_target("127.0.0.1:1", vm_project), "../x")
    assert "invalid LXD instance name" in str(e.value)


# -- pure helpers -------------------------------------------------------------------------------

def test_cpu_limit():
    assert cpu_limit(4, []) == "4"
    assert cpu_limit(1, [3]) == "3-3"
    assert cpu_limit(3, [5, 0, 2]) == "0,2,5"


def test_kernel_architecture():
    assert kernel_architecture("amd64/generic") == "x86_64"
    assert kernel_architecture("arm64/generic") == "aarch64"
    assert kernel_architecture("ppc64el") == "ppc64le"
    assert kernel_architecture("armhf/generic") == "armv7l"
    assert kernel_architecture("i386/generic") == "i686"
    assert kernel_architecture("s390x/generic") == "s390x"
    assert kernel_architecture("x86_64") == "x86_64"
    with pytest.raises(DriverError, match="unsupported architecture"):
        kernel_architecture("vax/generic")


def test_random_mac_is_local_unicast():
    for _ in range(50):
        mac = random_mac()
        first = int(mac[:2], 16)
        assert len(mac.split(":")) == 6 and first & 0b11 == 0b10


def test_instance_definition():
    req = ComposeRequest(
        "vm1", "arm64/generic", 2, 3 * GiB, pinned_cores=[], hugepages_backed=True,
        disks=[RequestedDisk("root", 10 * GiB, "fast"), RequestedDisk("disk1", GiB, "slow"),
               RequestedDisk("disk2", 2 * GiB, "fast")],
        nics=[RequestedNic("eth0", "sriov", "enp1s0"),
              RequestedNic("eth1", "macvlan", "eno1", vlan=7),
              RequestedNic("eth2", "bridge", "br0", vlan=0, hwaddr="00:16:3E:00:00:01")])
    check_request(req, "p")
    assert instance_definition(req, kernel_architecture(req.architecture),
                               mac=lambda: "02:00:00:00:00:01") == {
        "name": "vm1", "type": "virtual-machine", "source": {"type": "none"}, "profiles": [],
        "architecture": "aarch64",
        "config": {"limits.cpu": "2", "limits.memory": str(3 * GiB),
                   "limits.memory.hugepages": "true", "security.secureboot": "false"},
        "devices": {
            "root": {"path": "/", "type": "disk", "pool": "fast", "size": str(10 * GiB),
                     "boot.priority": "0"},
            "disk1": {"type": "disk", "pool": "slow", "source": "vmyard-vm1-disk1"},
            "disk2": {"type": "disk", "pool": "fast", "source": "vmyard-vm1-disk2"},
            "eth0": {"type": "nic", "nictype": "sriov", "parent": "enp1s0", "name": "eth0",
                     "hwaddr": "02:00:00:00:00:01", "boot.priority": "1"},
            "eth1": {"type": "nic", "nictype": "macvlan", "parent": "eno1", "name": "eth1",
                     "vlan": "7"},
            "eth2": {"type": "nic", "nictype": "bridged", "parent": "br0", "name": "eth2",
                     "hwaddr": "00:16:3e:00:00:01"},
        },
    }
    assert volume_definitions(req) == [
        ("slow", {"name": "vmyard-vm1-disk1", "type": "custom", "content_type": "block",
                  "config": {"size": str(GiB)}}),
        ("fast", {"name": "vmyard-vm1-disk2", "type": "custom", "content_type": "block",
                  "config": {"size": str(2 * GiB)}}),
    ]


def test_container_definition_has_no_vm_keys():
    req = ComposeRequest(
        "c1", "amd64/generic", 2, GiB, pinned_cores=[0, 1], instance_type="container",
        disks=[RequestedDisk("root", 4 * GiB, "fast"), RequestedDisk("disk1", GiB, "slow", path="/mnt/logs")],
        nics=[RequestedNic("eth0", "macvlan", "eno1", vlan=7, hwaddr="00:16:3e:00:00:02")])
    check_request(req, "p")
    assert instance_definition(req, "x86_64") == {
        "name": "c1", "type": "container", "source": {"type": "none"}, "profiles": [], "architecture": "x86_64",
        "config": {"limits.cpu": "0,1", "limits.memory": str(GiB)},
        "devices": {
            "root": {"path": "/", "type": "disk", "pool": "fast", "size": str(4 * GiB)},
            "disk1": {"type": "disk", "pool": "slow", "source": "vmyard-c1-disk1", "path": "/mnt/logs"},
            "eth0": {"type": "nic", "nictype": "macvlan", "parent": "eno1", "name": "eth0", "vlan": "7",
                     "hwaddr": "00:16:3e:00:00:02"},
        },
    }
    assert volume_definitions(req) == [
        ("slow", {"name": "vmyard-c1-disk1", "type": "custom", "content_type": "filesystem",
                  "config": {"size": str(GiB)}})]


@pytest.mark.parametrize("change, message", [
    (dict(instance_type="oci"), "unknown LXD instance type 'oci'"),
    (dict(instance_type="container", hugepages_backed=True), "cannot be backed by hugepages"),
    (dict(instance_type="container", disks=[RequestedDisk("root", 1, "d"), RequestedDisk("disk1", 1, "d")]),
     "a container mounts a data disk at an absolute path, not None"),
    (dict(instance_type="container", disks=[RequestedDisk("root", 1, "d"),
                                            RequestedDisk("disk1", 1, "d", path="/mnt/../etc")]),
     "not '/mnt/../etc'"),
    (dict(architecture="vax"), "unsupported architecture"),
    (dict(cores=0), "at least 1 core"),
    (dict(memory=0), "needs memory"),
    (dict(cores=2, pinned_cores=[1]), "2 cores requested but 1 pinned"),
    (dict(cores=2, pinned_cores=[1, 1]), "invalid pinned cores"),
    (dict(disks=[]), "at least one disk"),
    (dict(disks=[RequestedDisk("root", 0, "d")]), "disk root has no size"),
    (dict(disks=[RequestedDisk("root", 1, "a/b")]), "invalid storage pool name"),
    (dict(disks=[RequestedDisk("root", 1, "d"), RequestedDisk("root", 1, "d")]),
     "two devices are named 'root'"),
    (dict(nics=[RequestedNic("root", "bridged", "br0")]), "two devices are named 'root'"),
    (dict(nics=[RequestedNic("eth0", "ovn", "br0")]), "unsupported nictype 'ovn'"),
    (dict(nics=[RequestedNic("eth0", "bridged", "a/b")]), "invalid parent interface name"),
    (dict(nics=[RequestedNic("eth0", "bridged", "br0", vlan=4095)]), "VLAN 4095"),
    (dict(nics=[RequestedNic("eth0", "bridged", "br0", hwaddr="nope")]), "invalid MAC address"),
    (dict(nics=[RequestedNic("../x", "bridged", "br0")]), "invalid device name"),
])
def test_check_request(change, message):
    values = dict(instance_name="vm1", architecture="amd64/generic", cores=1,
                  memory=GiB, disks=[RequestedDisk("root", GiB, "default")])
    values.update(change)
    with pytest.raises(DriverError, match=re.escape(message)):
        check_request(ComposeRequest(**values), "p")


def test_discover_lists_unmanaged_bridges_as_host_interfaces(lxd_server, driver, trusted, bridge):
    host = driver.discover(trusted)
    [found] = [i for i in host.interfaces if i.name == bridge]
    state = lxc_json(lxd_server, f"/1.0/networks/{bridge}/state")
    assert (found.type, found.mac) == ("bridge", state["hwaddr"])
    # Physical NICs still come from /1.0/resources, each once.
    names = [i.name for i in host.interfaces]
    assert len(names) == len(set(names))
