"""Errors of VM-host operations, shared by rack drivers, AMP and the region.

Each class is also an AMP error (see common/rpc/rack_commands.py), so it must
be constructible from its message alone: AMP rebuilds a remote error as
``cls(message)``.  ``str(error)`` is the user-facing reason; it never contains
a password, token or key.
"""

from __future__ import annotations


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

    expected: str | None = None
    got: str | None = None

    @classmethod
    def between(cls, expected: str, got: str) -> "ServerCertificateChanged":
        error = cls(
            f"the VM host's TLS certificate changed: expected SHA-256 fingerprint {expected}, "
            f"got {got}. If the host was reinstalled or its certificate renewed on purpose, "
            f"accept the new one with `vmyard vm-host trust-server NAME` (API: op=trust_server); "
            f"otherwise something is intercepting the connection."
        )
        error.expected, error.got = expected, got
        return error


class IncompatibleHost(DriverError):
    """The host lacks an API feature we need."""


class UnknownHostType(DriverError):
    """The rack has no driver for this host type."""
