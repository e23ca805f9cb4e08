"""The interface every VM-host driver implements on the rack.

Methods are synchronous and blocking: the rack runs them in a bounded thread
pool, never on the reactor.  Every network call inside must carry an explicit
timeout.  Errors are raised as `DriverError` subclasses whose message is fit
to show to the user as is (it never contains a password or a key).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from common.models import DiscoveredHost, HostCredentials, Project


class DriverError(Exception):
    """A VM-host operation failed; str(error) is the user-facing reason."""


class Unreachable(DriverError):
    """Nothing answered at the address (refused, timed out, DNS failure)."""


class NotLXD(DriverError):
    """Something answered, but it is not an LXD API endpoint."""


class Untrusted(DriverError):
    """Our client certificate is not trusted and no password/token was given."""


class WrongTrustPassword(DriverError):
    """A trust password or token was given but the server rejected it."""


class ServerCertificateChanged(DriverError):
    """The server's certificate is not the one pinned for this host."""

    def __init__(self, expected: str, got: str):
        self.expected = expected
        self.got = got
        super().__init__(
            f"the VM host's TLS certificate changed: expected SHA-256 fingerprint {expected}, "
            f"got {got}. If the host was reinstalled or its certificate renewed on purpose, "
            f"update the pinned fingerprint; otherwise something is intercepting the connection."
        )


class IncompatibleHost(DriverError):
    """The host lacks an API feature we need."""


@runtime_checkable
class VMHostDriver(Protocol):
    def discover(self, address: str, creds: HostCredentials, project: str,
                 password: str | None = None) -> DiscoveredHost:
        """Connect (trusting our certificate with `password` once if needed), make sure
        `project` exists, and describe the host."""
        ...

    def discover_projects(self, address: str, creds: HostCredentials,
                          password: str | None = None) -> list[Project]:
        """The host's projects (names and descriptions)."""
        ...
