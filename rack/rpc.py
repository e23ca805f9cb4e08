"""The rack side of AMP: register on connect, answer the region's commands."""

from __future__ import annotations

import socket

from twisted.internet import defer, protocol
from twisted.logger import Logger
from twisted.protocols import amp

from common.models import CloudInitData, ComposeRequest, HostTarget, ImageRef
from common.rpc import rack_commands, region_commands
from common.rpc.wire import RackHello
from common.version import VERSION

log = Logger()


class RackClientProtocol(amp.AMP):
    """One connection to the region; registers itself as soon as TLS is up."""

    def __init__(self, rack, index: int) -> None:
        super().__init__()
        self.rack = rack
        self.index = index
        self.region = None

    def hello(self) -> RackHello:
        return RackHello(hostname=socket.gethostname(), version=VERSION, connection_index=self.index)

    def connectionMade(self) -> None:
        super().connectionMade()
        d = self.callRemote(region_commands.RegisterRack, hello=self.hello())
        d.addCallbacks(self._registered, self._refused)

    def _registered(self, result: dict) -> None:
        self.region = result["region"]
        log.info("connected to region {region} (connection {index})", region=self.region.region_id,
                 index=self.index)
        self.rack.registered(self)

    def _disowned(self, why: str) -> None:
        log.error("the region does not know this rack: {why}. Delete the rack's data dir and "
                  "enrol again with the enrollment secret.", why=why)
        self.rack.disowned(why)

    def _refused(self, failure) -> None:
        if failure.check(region_commands.UnknownRack):
            self._disowned(failure.getErrorMessage())
        elif not failure.check(defer.CancelledError):
            log.warn("registering with the region failed: {why}", why=failure.getErrorMessage())
        self.transport.loseConnection()

    def connectionLost(self, reason) -> None:
        super().connectionLost(reason)
        self.rack.lost(self)

    @rack_commands.Identify.responder
    def identify(self) -> dict:
        return {"hello": self.hello()}

    @rack_commands.RackDeleted.responder
    def rack_deleted(self) -> dict:
        self._disowned("this rack was deleted")
        return {}

    @rack_commands.Echo.responder
    def echo(self, payload: bytes) -> dict:
        return {"payload": payload}

    @rack_commands.DiscoverHost.responder
    async def discover_host(self, target: HostTarget, password: str | None = None,
                            background: bool | None = None) -> dict:
        return {"host": await self.rack.hostops.discover(target, password, background=bool(background))}

    @rack_commands.DeleteVM.responder
    async def delete_vm(self, target: HostTarget, instance_name: str, root_disk_only: bool | None = None) -> dict:
        return {"warnings": await self.rack.hostops.delete_vm(target, instance_name, bool(root_disk_only))}

    @rack_commands.ComposeVM.responder
    async def compose_vm(self, target: HostTarget, request: ComposeRequest) -> dict:
        return {"vm": await self.rack.hostops.compose_vm(target, request)}

    @rack_commands.PowerVM.responder
    async def power_vm(self, target: HostTarget, instance_name: str, action: str) -> dict:
        return {"state": await self.rack.hostops.power(target, instance_name, action)}

    @rack_commands.DeployMachine.responder
    async def deploy_machine(self, target: HostTarget, instance_name: str, image: ImageRef,
                             cloud_init: CloudInitData, profiles: list[str], progress_id: str | None = None) -> dict:
        progress = self._progress_reporter(progress_id) if progress_id else None
        return {"state": await self.rack.hostops.deploy(target, instance_name, image, cloud_init, profiles,
                                                        progress)}

    def _progress_reporter(self, progress_id: str):
        """progress(stage, percent) for the driver's thread: sent to the region that asked."""
        def send(stage: str, percent: int) -> None:
            if self.transport is not None and not self.transport.disconnecting:
                self.callRemote(region_commands.DeployProgress, progress_id=progress_id, stage=stage,
                                percent=percent)

        return lambda stage, percent: self.rack.reactor.callFromThread(send, stage, percent)

    @rack_commands.EraseMachine.responder
    async def erase_machine(self, target: HostTarget, instance_name: str, profiles: list[str]) -> dict:
        await self.rack.hostops.erase(target, instance_name, profiles)
        return {}

    @rack_commands.CloudInitStatus.responder
    async def cloud_init_status(self, target: HostTarget, instance_name: str) -> dict:
        status, detail = await self.rack.hostops.cloud_init_status(target, instance_name)
        return {"status": status, "detail": detail}


class RackClientFactory(protocol.Factory):
    def __init__(self, rack, index: int) -> None:
        self.rack = rack
        self.index = index

    def buildProtocol(self, addr) -> RackClientProtocol:
        p = RackClientProtocol(self.rack, self.index)
        p.factory = self
        return p
