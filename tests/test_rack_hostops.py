"""HostOperations with a fake driver, and ComposeVM/PowerVM over an in-memory AMP
connection between the rack's real protocol and a stand-in region."""

from __future__ import annotations

import threading

import attrs
import pytest
import pytest_twisted
from twisted.internet import reactor, task
from twisted.protocols import amp, loopback

from common import hosterrors
from common.models import (
    ComposeRequest,
    DiscoveredVM,
    HostTarget,
    RequestedDisk,
    RequestedNic,
    VMDisk,
    VMInterface,
)
from common.rpc import rack_commands, region_commands
from common.rpc.wire import RegionHello
from rack.drivers.base import VMHostDriver
from rack.hostops import HostOperations
from rack.rpc import RackClientProtocol

GiB = 1024**3
TARGET = HostTarget(type="lxd", address="h:8443", project="p1", cert_pem="CERT", key_pem="KEY",
                    server_fingerprint="ab" * 32)
LIBVIRT = attrs.evolve(TARGET, type="libvirt")
REQUEST = ComposeRequest(
    instance_name="vm1", architecture="amd64/generic", cores=2, memory=GiB,
    pinned_cores=[0, 1], hugepages_backed=True,
    disks=[RequestedDisk("root", 2 * GiB, "default"), RequestedDisk("disk1", GiB, "fast")],
    nics=[RequestedNic("eth0", "bridged", "br0", vlan=5, hwaddr="00:16:3e:00:00:01")])
VM = DiscoveredVM(
    instance_name="vm1", project="p1", architecture="amd64/generic", power_state="off", cores=2,
    memory=GiB, pinned_cores=[0, 1], hugepages_backed=True,
    disks=[VMDisk("root", 2 * GiB, "default"), VMDisk("disk1", GiB, "fast")],
    interfaces=[VMInterface("eth0", "00:16:3e:00:00:01", "bridge", "br0", vid=5, boot=True)])


class FakeDriver:
    """Records calls (and the thread they ran in); raises `error` if set."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error
        self.calls: list[tuple] = []
        self.threads: list[threading.Thread] = []

    def _call(self, name: str, *args, result=None):
        self.calls.append((name, *args))
        self.threads.append(threading.current_thread())
        if self.error is not None:
            raise self.error
        return result

    def discover(self, target, password=None):
        return self._call("discover", target, password)

    def discover_projects(self, target, password=None):
        return self._call("discover_projects", target, password, result=[])

    def delete_vm(self, target, instance_name, root_disk_only=False):
        return self._call("delete_vm", target, instance_name, root_disk_only, result=[])

    def compose_vm(self, target, request):
        return self._call("compose_vm", target, request, result=VM)

    def power_state(self, target, instance_name):
        return self._call("power_state", target, instance_name, result="off")

    def power_on(self, target, instance_name):
        return self._call("power_on", target, instance_name, result="on")

    def power_off(self, target, instance_name):
        return self._call("power_off", target, instance_name, result="off")

    def deploy_machine(self, target, instance_name, image, cloud_init, profiles, progress=None):
        return self._call("deploy_machine", target, instance_name, image, cloud_init, profiles, result="on")

    def erase_machine(self, target, instance_name, profiles):
        return self._call("erase_machine", target, instance_name, profiles)

    def cloud_init_status(self, target, instance_name):
        return self._call("cloud_init_status", target, instance_name, result=("done", ""))


@pytest.fixture
def hostops():
    made: list[HostOperations] = []

    def make(driver: FakeDriver) -> HostOperations:
        ops = HostOperations(reactor, {"lxd": driver}, max_threads=2)
        made.append(ops)
        return ops

    yield make
    for ops in made:
        ops.stop()


def test_fake_driver_implements_protocol():
    assert isinstance(FakeDriver(), VMHostDriver)


@pytest_twisted.ensureDeferred
async def test_compose_vm_runs_the_driver_in_the_pool(hostops):
    driver = FakeDriver()
    vm = await hostops(driver).compose_vm(TARGET, REQUEST)
    assert vm == VM
    assert driver.calls == [("compose_vm", TARGET, REQUEST)]
    assert driver.threads[0] is not threading.main_thread()  # never on the reactor


@pytest_twisted.ensureDeferred
async def test_power_actions(hostops):
    driver = FakeDriver()
    ops = hostops(driver)
    assert await ops.power(TARGET, "vm1", "on") == "on"
    assert await ops.power(TARGET, "vm1", "off") == "off"
    assert await ops.power(TARGET, "vm1", "query") == "off"
    assert [c[0] for c in driver.calls] == ["power_on", "power_off", "power_state"]
    assert all(c[1:] == (TARGET, "vm1") for c in driver.calls)


@pytest_twisted.ensureDeferred
async def test_unknown_power_action(hostops):
    driver = FakeDriver()
    with pytest.raises(hosterrors.DriverError, match="unknown power action 'reset'"):
        await hostops(driver).power(TARGET, "vm1", "reset")
    assert driver.calls == []


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("error", [hosterrors.Unreachable("no route"), hosterrors.DriverError("full"),
                                   hosterrors.Untrusted("who are you")])
async def test_driver_errors_pass_through(hostops, error):
    ops = hostops(FakeDriver(error))
    with pytest.raises(type(error)) as e:
        await ops.compose_vm(TARGET, REQUEST)
    assert e.value is error
    with pytest.raises(type(error)):
        await ops.power(TARGET, "vm1", "on")


@pytest_twisted.ensureDeferred
async def test_unexpected_exception_becomes_driver_error(hostops):
    ops = hostops(FakeDriver(KeyError("status_code")))
    with pytest.raises(hosterrors.DriverError) as e:
        await ops.compose_vm(TARGET, REQUEST)
    assert type(e.value) is hosterrors.DriverError
    assert "composing VM vm1 on failed on the rack: KeyError: 'status_code'" == str(e.value)
    with pytest.raises(hosterrors.DriverError) as e:
        await ops.power(TARGET, "vm1", "query")
    assert type(e.value) is hosterrors.DriverError and "KeyError" in str(e.value)


@pytest_twisted.ensureDeferred
async def test_unknown_host_type(hostops):
    driver = FakeDriver()
    ops = hostops(driver)
    with pytest.raises(hosterrors.UnknownHostType, match="'libvirt'"):
        await ops.compose_vm(LIBVIRT, REQUEST)
    with pytest.raises(hosterrors.UnknownHostType):
        await ops.power(LIBVIRT, "vm1", "on")
    assert driver.calls == []


# -- over AMP -----------------------------------------------------------------------------------

class FakeRack:
    """What RackClientProtocol needs of the rack service."""

    def __init__(self, hostops: HostOperations) -> None:
        self.hostops = hostops
        self.connected: list = []

    def registered(self, protocol) -> None:
        self.connected.append(protocol)

    def lost(self, protocol) -> None:
        pass

    def disowned(self, reason: str) -> None:
        raise AssertionError(f"disowned: {reason}")


class FakeRegion(amp.AMP):
    @region_commands.RegisterRack.responder
    def register(self, hello):
        return {"region": RegionHello("region-1", "regionhost", "test", "rack-1")}


async def _connected(hostops_factory, driver: FakeDriver):
    rack = FakeRack(hostops_factory(driver))
    rack_side, region_side = RackClientProtocol(rack, 0), FakeRegion()
    done = loopback.loopbackAsync(rack_side, region_side)
    for _ in range(100):  # let the rack register, as it does on every connection
        if rack.connected:
            break
        await task.deferLater(reactor, 0.01, lambda: None)
    assert rack.connected == [rack_side]
    return region_side, done


def _target() -> dict:
    return dict(target=TARGET)


@pytest_twisted.ensureDeferred
async def test_amp_compose_and_power(hostops):
    driver = FakeDriver()
    region, done = await _connected(hostops, driver)
    try:
        result = await region.callRemote(rack_commands.ComposeVM, request=REQUEST, **_target())
        assert result == {"vm": VM}
        assert driver.calls == [("compose_vm", TARGET, REQUEST)]
        for action, state in (("on", "on"), ("off", "off"), ("query", "off")):
            result = await region.callRemote(rack_commands.PowerVM, instance_name="vm1",
                                             action=action, **_target())
            assert result == {"state": state}
        assert [c[0] for c in driver.calls[1:]] == ["power_on", "power_off", "power_state"]
    finally:
        region.transport.loseConnection()
        await done


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("error, expected", [
    (hosterrors.Unreachable("the LXD host at https://h:8443 did not answer"), hosterrors.Unreachable),
    (hosterrors.ServerCertificateChanged("changed"), hosterrors.ServerCertificateChanged),
    (hosterrors.DriverError("an instance named vm1 already exists in project p1"),
     hosterrors.DriverError),
    (ZeroDivisionError("oops"), hosterrors.DriverError),
])
async def test_amp_errors_keep_their_kind(hostops, error, expected):
    region, done = await _connected(hostops, FakeDriver(error))
    try:
        for command, args in ((rack_commands.ComposeVM, dict(request=REQUEST)),
                              (rack_commands.PowerVM, dict(instance_name="vm1", action="on"))):
            with pytest.raises(hosterrors.DriverError) as e:
                await region.callRemote(command, **args, **_target())
            assert type(e.value) is expected
            if isinstance(error, hosterrors.DriverError):
                assert str(e.value) == str(error)
            else:
                assert "ZeroDivisionError: oops" in str(e.value)
    finally:
        region.transport.loseConnection()
        await done


@pytest_twisted.ensureDeferred
async def test_amp_unknown_host_type_and_power_action(hostops):
    driver = FakeDriver()
    region, done = await _connected(hostops, driver)
    try:
        with pytest.raises(hosterrors.UnknownHostType):
            await region.callRemote(rack_commands.ComposeVM, request=REQUEST,
                                    target=LIBVIRT)
        with pytest.raises(hosterrors.DriverError) as e:
            await region.callRemote(rack_commands.PowerVM, instance_name="vm1", action="cycle",
                                    **_target())
        assert type(e.value) is hosterrors.DriverError and "'cycle'" in str(e.value)
        assert driver.calls == []
    finally:
        region.transport.loseConnection()
        await done
