"""API errors and how each renders, in the forms MAAS clients expect."""

from __future__ import annotations

import json

import attrs


@attrs.frozen
class Rendered:
    status: int
    body: bytes
    content_type: str
    headers: tuple[tuple[str, str], ...] = ()


class ApiError(Exception):
    status = 500

    def render(self) -> Rendered:
        return Rendered(self.status, str(self).encode("utf-8"), "text/plain; charset=utf-8")


class BadRequest(ApiError):
    """400: either {"field": ["message", …]} as JSON, or a plain message."""

    status = 400

    def __init__(self, errors: dict[str, list[str]] | str) -> None:
        super().__init__(errors if isinstance(errors, str) else json.dumps(errors))
        self.errors = errors

    @classmethod
    def field(cls, name: str, message: str) -> "BadRequest":
        return cls({name: [message]})

    def render(self) -> Rendered:
        if isinstance(self.errors, str):
            return super().render()
        return Rendered(400, json.dumps(self.errors).encode(), "application/json")


class Unauthorized(ApiError):
    status = 401

    def render(self) -> Rendered:
        r = super().render()
        return attrs.evolve(r, body=b"Authorization Error: " + r.body,
                            headers=(("WWW-Authenticate", 'OAuth realm="OAuth"'),))


class Forbidden(ApiError):
    status = 403


class NotFound(ApiError):
    status = 404


class MethodNotAllowed(ApiError):
    status = 405


class Conflict(ApiError):
    status = 409


class _TryAgainLater(ApiError):
    """An error that tells the client when to try again (Retry-After), if known."""

    def __init__(self, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def render(self) -> Rendered:
        r = super().render()
        if self.retry_after is None:
            return r
        return attrs.evolve(r, headers=(("Retry-After", str(self.retry_after)),))


class TooManyRequests(_TryAgainLater):
    status = 429


class ServiceUnavailable(_TryAgainLater):
    status = 503
