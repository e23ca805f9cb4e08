"""Commands the region serves (sent by racks).  Protocol version 1.

Each command names the protocol version that introduced it (`since`) and lists
its errors explicitly; see docs/rpc.md.
"""

from __future__ import annotations

from twisted.protocols import amp

from common.rpc.arguments import AttrsArgument
from common.rpc.wire import RackHello, RegionEndpoint, RegionHello


class UnknownRack(Exception):
    """The rack's certificate is not (or no longer) enrolled."""


class RegisterRack(amp.Command):
    """First call on every connection: identifies the rack to the region.

    The rack's identity comes from its TLS client certificate; the arguments
    only carry what may change between connections.
    :since: 1
    """

    arguments = [(b"hello", AttrsArgument(RackHello))]
    response = [(b"region", AttrsArgument(RegionHello))]
    errors = {UnknownRack: b"UNKNOWN_RACK"}


class Ping(amp.Command):
    """Round trip with an opaque payload; liveness and benchmarks.  :since: 1"""

    arguments = [(b"payload", amp.String())]
    response = [(b"payload", amp.String())]
    requiresAnswer = True


class ListRegions(amp.Command):
    """Every live region's RPC endpoint (as in `RegionHello.regions`); racks ask now and
    then to connect to regions started after them.  :since: 1"""

    arguments: list = []
    response = [(b"regions", AttrsArgument(list[RegionEndpoint]))]


class DeployProgress(amp.Command):
    """How far a rack is in copying an image to a VM host for a deploy (`DeployMachine`'s
    `progress_id`): `stage` is "fetching" (from the region) or "importing" (into LXD), `percent`
    0-100.  Sent at most every few seconds; unanswered.  :since: 1"""

    arguments = [(b"progress_id", amp.Unicode()), (b"stage", amp.Unicode()), (b"percent", amp.Integer())]
    response: list = []
    requiresAnswer = False
