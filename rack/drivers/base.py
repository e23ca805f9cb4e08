"""The interface every VM-host driver implements on the rack.

Methods are synchronous and blocking: the rack runs them in a bounded thread
pool, never on the reactor.  Every network call inside must carry an explicit
timeout.  Errors are raised as `DriverError` subclasses whose message is fit
to show to the user as is (it never contains a password or a key).
"""

from __future__ import annotations

from typing import Callable, Protocol, runtime_checkable

from common.hosterrors import (  # noqa: F401  (re-exported for drivers)
    DriverError,
    IncompatibleHost,
    NotLXD,
    ServerCertificateChanged,
    UnknownHostType,
    Unreachable,
    Untrusted,
    WrongTrustPassword,
)
from common.models import CloudInitData, ComposeRequest, DiscoveredHost, DiscoveredVM, HostTarget, ImageRef, Project

# progress(stage, percent) while an image is copied to a host: stage "fetching" or "importing".
CopyProgress = Callable[[str, int], None]


@runtime_checkable
class VMHostDriver(Protocol):
    """Every method takes the whole `target` (address, project, client identity, pinned
    server fingerprint), exactly as the region sent it."""

    def discover(self, target: HostTarget, password: str | None = None) -> DiscoveredHost:
        """Connect (trusting our certificate with `password` once if needed), make sure
        the target's project exists, and describe the host."""
        ...

    def discover_projects(self, target: HostTarget, password: str | None = None) -> list[Project]:
        """The host's projects (names and descriptions)."""
        ...

    def delete_vm(self, target: HostTarget, instance_name: str, root_disk_only: bool = False) -> list[str]:
        """Delete the VM `instance_name` of the target's project (force-stopping it first)
        and the storage volumes attached to it; return warnings (a VM that is already gone,
        a volume that could not be deleted).  Other failures raise DriverError.
        `root_disk_only`: the region knows of no disk but the root one (a hint a driver may
        use to skip looking for volumes first)."""
        ...

    def compose_vm(self, target: HostTarget, request: ComposeRequest) -> DiscoveredVM:
        """Create (never start) the VM `request` describes in the target's project and
        return it as created.  On any failure, first remove whatever this call created
        (never anything that existed before, such as an instance of the same name), then
        raise DriverError."""
        ...

    def power_state(self, target: HostTarget, instance_name: str) -> str:
        """"on", "off" or "unknown"; a VM that does not exist raises DriverError."""
        ...

    def power_on(self, target: HostTarget, instance_name: str) -> str:
        """Start the VM (nothing to do if it runs) and wait; the state afterwards.  A start
        that fails raises DriverError with the host's reason."""
        ...

    def power_off(self, target: HostTarget, instance_name: str) -> str:
        """Hard-stop the VM (nothing to do if it is stopped) and wait; the state afterwards."""
        ...

    def deploy_machine(self, target: HostTarget, instance_name: str, image: ImageRef, cloud_init: CloudInitData,
                       profiles: list[str], progress: CopyProgress | None = None) -> str:
        """Get the image onto the host if it lacks it, rebuild the instance's root disk from it
        (same devices, MACs, volumes, limits; `profiles` added), hand cloud-init its data and
        start it; the power state afterwards.  A refused start raises DriverError with the
        host's reason and leaves the rebuilt instance.  `progress(stage, percent)` is called
        (from the driver's thread, at most every few seconds) while the image is copied."""
        ...

    def erase_machine(self, target: HostTarget, instance_name: str, profiles: list[str]) -> None:
        """Stop the instance and empty its root disk; drop its cloud-init data and `profiles`."""
        ...

    def cloud_init_status(self, target: HostTarget, instance_name: str) -> tuple[str, str]:
        """("running" | "done" | "error" | "unknown", detail) of cloud-init in the instance."""
        ...
