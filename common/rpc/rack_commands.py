"""Commands the rack serves (sent by the region).  Protocol version 1."""

from __future__ import annotations

from twisted.protocols import amp

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
