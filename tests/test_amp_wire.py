"""The AMP wire format, over Twisted's in-memory transports (twisted.test.iosim): every
command's attrs values round-trip, host errors keep their class and message, and large
values are chunked.  No sockets, no reactor."""

from __future__ import annotations

import random

import attrs
import pytest
from twisted.protocols import amp
from twisted.test.iosim import connectedServerAndClient

from common import hosterrors
from common.models import (
    CloudInitData,
    ComposeRequest,
    DiscoveredHost,
    DiscoveredVM,
    HostInterface,
    HostTarget,
    HugepageInfo,
    ImageRef,
    NumaNode,
    Project,
    RequestedDisk,
    RequestedNic,
    StoragePool,
    VMDisk,
    VMInterface,
)
from common.rpc import rack_commands, region_commands
from common.rpc.arguments import MAX_CHUNKS, AttrsArgument, PayloadTooLarge
from common.rpc.wire import RackHello, RegionEndpoint, RegionHello

GiB = 1024**3
TARGET = HostTarget(type="lxd", address="10.0.0.7:8443", project="vmyard", cert_pem="CERT-PEM",
                    key_pem="SECRET-KEY-PEM", server_fingerprint="ab" * 32)
VM = DiscoveredVM(
    instance_name="vm1", project="vmyard", architecture="amd64/generic", power_state="on", cores=2,
    memory=2 * GiB, pinned_cores=[0, 1], hugepages_backed=True,
    disks=[VMDisk("root", 8 * GiB, "default"), VMDisk("disk1", GiB, None)],
    interfaces=[VMInterface("eth0", "00:16:3e:00:00:01", "bridge", "br0", vid=5, boot=True)],
    location="member1")
HOST = DiscoveredHost(
    name="lxd1", version="5.0.2", architectures=["amd64/generic"], cores=4, cpu_speed=3500,
    memory=8 * GiB,
    numa_nodes=[NumaNode(0, [0, 1], 4 * GiB, [HugepageInfo(2 << 20, 10, 6)]), NumaNode(1, [2, 3], 4 * GiB)],
    storage_pools=[StoragePool("default", "dir", "/var/lib/lxd", 100 * GiB, 10 * GiB, 90 * GiB)],
    interfaces=[HostInterface("enp1s0", "physical", "00:11:22:33:44:55", 0, 8, 2, 10000),
                HostInterface("br0", "bridge", "00:11:22:33:44:66")],
    projects=[Project("default", "Default LXD project"), Project("vmyard")],
    server_fingerprint="ab" * 32, capabilities=["composable"], clustered=True, vms=[VM])
REQUEST = ComposeRequest(
    instance_name="vm1", architecture="amd64/generic", cores=2, memory=2 * GiB, pinned_cores=[0, 1],
    hugepages_backed=True, disks=[RequestedDisk("root", 8 * GiB, "default")],
    nics=[RequestedNic("eth0", "macvlan", "enp1s0", vlan=5, hwaddr=None)])
IMAGE = ImageRef("f" * 64, "http://10.0.0.2:5240/MAAS/images/" + "f" * 64, "123.sig", 300 << 20, "tgz")
CLOUD_INIT = CloudInitData("Content-Type: multipart/mixed\n…", "version: 2\n", vendor_data=None)
RACK_HELLO = RackHello(hostname="rack1", version="1.0", connection_index=3)
REGION_HELLO = RegionHello(region_id="r1", hostname="region1", version="1.0", rack_system_id="abc123",
                           regions=[RegionEndpoint("r1", "10.0.0.2", 5250)])

# command -> (arguments sent, response answered)
CALLS = {
    region_commands.RegisterRack: ({"hello": RACK_HELLO}, {"region": REGION_HELLO}),
    region_commands.Ping: ({"payload": b"\x00ping"}, {"payload": b"\x00ping"}),
    region_commands.ListRegions: ({}, {"regions": [RegionEndpoint("r1", "10.0.0.2", 5250)]}),
    rack_commands.Identify: ({}, {"hello": RACK_HELLO}),
    rack_commands.Echo: ({"payload": b"echo\xff"}, {"payload": b"echo\xff"}),
    rack_commands.RackDeleted: ({}, {}),
    rack_commands.DiscoverHost: ({"target": TARGET, "password": "tok", "background": True}, {"host": HOST}),
    rack_commands.DeleteVM: ({"target": TARGET, "instance_name": "vm1", "root_disk_only": True},
                             {"warnings": ["gone", "kept"]}),
    rack_commands.ComposeVM: ({"target": TARGET, "request": REQUEST}, {"vm": VM}),
    rack_commands.PowerVM: ({"target": TARGET, "instance_name": "vm1", "action": "on"}, {"state": "on"}),
    rack_commands.DeployMachine: ({"target": TARGET, "instance_name": "vm1", "image": IMAGE, "cloud_init": CLOUD_INIT,
                                   "profiles": ["gpu"], "progress_id": "m1"}, {"state": "on"}),
    rack_commands.EraseMachine: ({"target": TARGET, "instance_name": "vm1", "profiles": []}, {}),
    rack_commands.CloudInitStatus: ({"target": TARGET, "instance_name": "vm1"},
                                    {"status": "done", "detail": "status: done"}),
}


class Answering(amp.AMP):
    """Answers every command with its canned response (`answers` first), or raises `raising`;
    records what arrived."""

    def __init__(self, raising: BaseException | None = None, answers: dict | None = None) -> None:
        super().__init__()
        self.raising = raising
        self.answers = answers or {}
        self.received: list[tuple[type[amp.Command], dict]] = []

    def locateResponder(self, name: bytes):
        command = next((c for c in CALLS if c.commandName == name), None)
        if command is None:
            return super().locateResponder(name)

        def answer(**arguments):
            self.received.append((command, arguments))
            if self.raising is not None:
                raise self.raising
            return self.answers.get(command, CALLS[command][1])

        return self._wrapWithSerialization(answer, command)


def connected(server: Answering) -> tuple[amp.AMP, object]:
    client, _, pump = connectedServerAndClient(lambda: server, amp.AMP)
    return client, pump


def outcome(client: amp.AMP, pump, command, arguments: dict):
    """The response, or the Failure, of one call once the pump has moved every byte."""
    results: list = []
    client.callRemote(command, **arguments).addBoth(results.append)
    pump.flush()
    [result] = results
    return result


@pytest.mark.parametrize("command", list(CALLS), ids=lambda c: c.__name__)
def test_every_command_round_trips_its_values(command):
    server = Answering()
    client, pump = connected(server)
    arguments, response = CALLS[command]
    assert outcome(client, pump, command, arguments) == response
    [(seen, received)] = server.received
    assert seen is command and received == arguments


def test_a_delete_from_a_region_that_sends_no_hint_arrives_without_it():
    """DeleteVM's `root_disk_only` came later (:since: 2): a region that does not send it is
    answered as before (the rack reads the VM first)."""
    server = Answering()
    client, pump = connected(server)
    assert outcome(client, pump, rack_commands.DeleteVM, {"target": TARGET, "instance_name": "vm1"}) == \
        {"warnings": ["gone", "kept"]}
    assert server.received == [(rack_commands.DeleteVM, {"target": TARGET, "instance_name": "vm1",
                                                         "root_disk_only": None})]


def test_every_host_command_is_covered():
    host_commands = {c for c in vars(rack_commands).values()
                     if isinstance(c, type) and issubclass(c, amp.Command) and c is not amp.Command}
    region_side = {region_commands.RegisterRack, region_commands.Ping, region_commands.ListRegions}
    assert host_commands | region_side == set(CALLS)


def test_deploy_progress_arrives_unanswered():
    server = Answering()
    client, pump = connected(server)
    CALLS[region_commands.DeployProgress] = ({"progress_id": "m1", "stage": "fetching", "percent": 45}, {})
    try:
        assert client.callRemote(region_commands.DeployProgress, progress_id="m1", stage="fetching",
                                 percent=45) is None
        pump.flush()
    finally:
        del CALLS[region_commands.DeployProgress]
    assert server.received == [(region_commands.DeployProgress,
                                {"progress_id": "m1", "stage": "fetching", "percent": 45})]


@pytest.mark.parametrize("error_class", list(rack_commands.HOST_ERRORS), ids=lambda c: c.__name__)
def test_host_errors_keep_their_class_and_message(error_class):
    client, pump = connected(Answering(raising=error_class("what the driver said")))
    for command in (rack_commands.DiscoverHost, rack_commands.DeleteVM, rack_commands.ComposeVM,
                    rack_commands.PowerVM):
        failure = outcome(client, pump, command, CALLS[command][0])
        assert type(failure.value) is error_class
        assert str(failure.value) == "what the driver said"


def test_certificate_change_keeps_its_message():
    error = hosterrors.ServerCertificateChanged.between("ab" * 32, "cd" * 32)
    client, pump = connected(Answering(raising=error))
    failure = outcome(client, pump, rack_commands.DiscoverHost, CALLS[rack_commands.DiscoverHost][0])
    assert type(failure.value) is hosterrors.ServerCertificateChanged
    assert str(failure.value) == str(error) and "cd" * 32 in str(failure.value)


def test_a_driver_error_subclass_arrives_as_driver_error():
    class Conflict(hosterrors.DriverError):
        pass

    client, pump = connected(Answering(raising=Conflict("an instance named vm1 already exists")))
    failure = outcome(client, pump, rack_commands.ComposeVM, CALLS[rack_commands.ComposeVM][0])
    assert type(failure.value) is hosterrors.DriverError
    assert str(failure.value) == "an instance named vm1 already exists"


def test_unknown_rack_keeps_its_class():
    client, pump = connected(Answering(raising=region_commands.UnknownRack("not enrolled")))
    failure = outcome(client, pump, region_commands.RegisterRack, {"hello": RACK_HELLO})
    assert type(failure.value) is region_commands.UnknownRack and str(failure.value) == "not enrolled"


def test_values_above_one_amp_value_are_chunked_and_reassembled():
    rng = random.Random(0)  # random names keep the encoding large after compression
    vms = [attrs.evolve(VM, instance_name=rng.randbytes(1000).hex()) for _ in range(150)]
    answer = {"host": attrs.evolve(HOST, vms=vms)}
    strings: dict[bytes, bytes] = {}
    AttrsArgument(DiscoveredHost).toBox(b"host", strings, dict(answer), None)
    assert b"host.1" in strings and all(len(v) <= amp.MAX_VALUE_LENGTH for v in strings.values())

    client, pump = connected(Answering(answers={rack_commands.DiscoverHost: answer}))
    assert outcome(client, pump, rack_commands.DiscoverHost, CALLS[rack_commands.DiscoverHost][0]) == answer


def test_values_beyond_the_chunk_limit_are_refused():
    rng = random.Random(1)
    huge = RackHello(hostname=rng.randbytes(amp.MAX_VALUE_LENGTH * MAX_CHUNKS).hex(), version="1")
    with pytest.raises(PayloadTooLarge):
        AttrsArgument(RackHello).toBox(b"hello", {}, {"hello": huge}, None)


def test_host_target_repr_hides_the_key():
    assert "SECRET-KEY-PEM" not in repr(TARGET)
    assert "10.0.0.7:8443" in repr(TARGET) and "vmyard" in repr(TARGET)
