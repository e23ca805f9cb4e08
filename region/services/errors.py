"""Errors a service raises; the HTTP layer maps each to one status code.

The db layer's `NotFound` (404), `FieldError` and `Refused` (400) are re-exported so
that callers of a service need only this module.
"""

from __future__ import annotations

from region.db.errors import FieldError, NotFound, Refused

__all__ = ["Conflict", "FieldError", "Forbidden", "HostNotReady", "InvalidInput", "NotAuthenticated", "NotFound",
           "Refused", "Throttled", "Unavailable"]


class InvalidInput(ValueError):
    """400: {field: [messages]} for several fields at once, or one plain message."""

    def __init__(self, errors: dict[str, list[str]] | str) -> None:
        super().__init__(errors if isinstance(errors, str) else "; ".join(
            f"{k}: {' '.join(v)}" for k, v in errors.items()))
        self.errors = errors

    @classmethod
    def field(cls, name: str, message: str) -> "InvalidInput":
        return cls({name: [message]})


class NotAuthenticated(Exception):
    """401: the credentials are missing, wrong, expired or replayed."""


class Forbidden(Exception):
    """403: the actor may not do this to this object."""


class Conflict(Exception):
    """409: the request is valid but the current state refuses it (e.g. no room on a host)."""


class Throttled(Exception):
    """429: too many attempts from this client; it may try again after `retry_after` seconds."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unavailable(Exception):
    """503: something the request needs is down for now; `retry_after` seconds, if known."""

    def __init__(self, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class HostNotReady(Unavailable):
    """503: the VM host is awaiting trust or in error, so it cannot take this job now."""
