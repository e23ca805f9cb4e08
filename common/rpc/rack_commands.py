"""Commands the rack serves (sent by the region).  Protocol version 1."""

from __future__ import annotations

from twisted.protocols import amp

from common import hosterrors
from common.models import CloudInitData, ComposeRequest, DiscoveredHost, DiscoveredVM, HostTarget, ImageRef
from common.rpc.arguments import AttrsArgument
from common.rpc.wire import RackHello


class Identify(amp.Command):
    """Ask a rack what it is; used after region restarts and in tests.  :since: 1"""

    arguments: list = []
    response = [(b"hello", AttrsArgument(RackHello))]


class Echo(amp.Command):
    """Region -> rack round trip with an opaque payload (liveness, bench).  :since: 1"""

    arguments = [(b"payload", amp.String())]
    response = [(b"payload", amp.String())]


class RackDeleted(amp.Command):
    """The rack was deleted: the region hangs up and will refuse its certificate from now
    on, so the rack should stop rather than reconnect.  The region does not wait for the
    answer.  :since: 1"""

    arguments: list = []
    response: list = []


# -- VM hosts -------------------------------------------------------------------------------
# The whole HostTarget (address, project, client key and certificate, pinned server
# fingerprint) travels with every call, so any rack can serve any host.  Errors keep their
# kind across the wire; DriverError must stay last so that its subclasses are matched first.

HOST_ERRORS = {
    hosterrors.Unreachable: b"HOST_UNREACHABLE",
    hosterrors.NotLXD: b"HOST_NOT_LXD",
    hosterrors.Untrusted: b"HOST_UNTRUSTED",
    hosterrors.WrongTrustPassword: b"HOST_WRONG_TRUST_PASSWORD",
    hosterrors.ServerCertificateChanged: b"HOST_CERTIFICATE_CHANGED",
    hosterrors.IncompatibleHost: b"HOST_INCOMPATIBLE",
    hosterrors.UnknownHostType: b"HOST_UNKNOWN_TYPE",
    hosterrors.DriverError: b"HOST_ACTION_FAILED",
}

# A host's target is the same for every job on it: its last encodings and decodings are kept
# (the key is already in memory on both sides: the region's secret cache, the rack's clients).
_HOST_TARGET = [(b"target", AttrsArgument(HostTarget, remember=256))]


class DiscoverHost(amp.Command):
    """Connect to a VM host, make sure the project exists, and describe it.

    `password` (an LXD trust password or token) is used once if the host does
    not trust the target's client certificate yet; racks never store or log it.
    `background` marks a periodic refresh: the rack runs it with its own capacity, apart
    from user work (an older rack ignores the flag).  :since: 1
    """

    arguments = _HOST_TARGET + [(b"password", amp.Unicode(optional=True)),
                                (b"background", amp.Boolean(optional=True))]
    response = [(b"host", AttrsArgument(DiscoveredHost))]
    errors = HOST_ERRORS


class DeleteVM(amp.Command):
    """Delete one VM (and its custom volumes) from a host; a missing VM is not an
    error.  Returns warnings (volumes left behind, VM already gone).  :since: 1
    `root_disk_only` (:since: 2): the region's record of the VM has its root disk and no
    other, so there are no custom volumes to look for: the rack may delete it without
    reading it first (a rack that does not know the flag ignores it)."""

    arguments = _HOST_TARGET + [(b"instance_name", amp.Unicode()), (b"root_disk_only", amp.Boolean(optional=True))]
    response = [(b"warnings", amp.ListOf(amp.Unicode()))]
    errors = HOST_ERRORS


class ComposeVM(amp.Command):
    """Create (never start) one VM on a host as `request` describes (placement is done);
    returns the VM as created (the rack chose any missing MACs; nothing is read back).  A
    failure leaves nothing behind: the rack removes what it created before answering with
    the error.
    Idempotent through `request.reservation`: an instance of the same name is an error and
    never touched, unless it carries that reservation key; then an earlier call made it and
    it is the answer.  :since: 1"""

    arguments = _HOST_TARGET + [(b"request", AttrsArgument(ComposeRequest))]
    response = [(b"vm", AttrsArgument(DiscoveredVM))]
    errors = HOST_ERRORS


class PowerVM(amp.Command):
    """Power one VM `on` (start), `off` (hard stop) or `query` it; answers the power state
    afterwards ("on", "off" or "unknown").  Turning on a running VM or off a stopped one
    changes nothing.  :since: 1"""

    arguments = _HOST_TARGET + [(b"instance_name", amp.Unicode()), (b"action", amp.Unicode())]
    response = [(b"state", amp.Unicode())]
    errors = HOST_ERRORS


# -- deploy ---------------------------------------------------------------------------------


class DeployMachine(amp.Command):
    """Rebuild an instance's root disk from `image` and start it with `cloud_init`.

    The host gets the image first if it lacks it (the rack fetches it from the region with the
    image's token and imports it).  The instance keeps its devices, MACs, volumes and limits;
    `profiles` are added to its profiles.  Answers the power state afterwards; LXD's refusal to
    start is a HOST_ACTION_FAILED with LXD's reason, the rebuilt instance left in place.  With a
    `progress_id` the rack reports the image copy with DeployProgress on the same connection.
    :since: 1"""

    arguments = _HOST_TARGET + [(b"instance_name", amp.Unicode()), (b"image", AttrsArgument(ImageRef)),
                                (b"cloud_init", AttrsArgument(CloudInitData)),
                                (b"profiles", amp.ListOf(amp.Unicode())),
                                (b"progress_id", amp.Unicode(optional=True))]
    response = [(b"state", amp.Unicode())]
    errors = HOST_ERRORS


class EraseMachine(amp.Command):
    """Stop an instance and empty its root disk (recreated without a source), dropping its
    cloud-init keys and the deploy's extra `profiles`; devices, MACs and volumes stay.  :since: 1"""

    arguments = _HOST_TARGET + [(b"instance_name", amp.Unicode()), (b"profiles", amp.ListOf(amp.Unicode()))]
    response: list = []
    errors = HOST_ERRORS


class CloudInitStatus(amp.Command):
    """`cloud-init status` inside a running container (through LXD): "running", "done",
    "error", or "unknown" when it cannot be asked (a VM, a stopped instance).  :since: 1"""

    arguments = _HOST_TARGET + [(b"instance_name", amp.Unicode())]
    response = [(b"status", amp.Unicode()), (b"detail", amp.Unicode())]
    errors = HOST_ERRORS
