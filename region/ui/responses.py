"""How the UI's own endpoints answer: JSON bodies, and service errors as HTTP statuses."""

from __future__ import annotations

import json
from typing import Any, Callable, Coroutine

from twisted.internet import defer
from twisted.logger import Logger
from twisted.web import server

from region.db.pool import DATABASE_DOWN
from region.services import errors

log = Logger()


def write_json(request: server.Request, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
    if request._disconnected:
        return
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", b"application/json")
    request.setHeader(b"Cache-Control", b"no-store")
    for name, value in (headers or {}).items():
        request.setHeader(name.encode(), value.encode())
    if status == 204:
        request.setHeader(b"Content-Length", b"0")
    else:
        data = json.dumps(body).encode()
        request.setHeader(b"Content-Length", str(len(data)).encode())
        request.write(data)
    request.finish()


def serve(request: server.Request, handlers: dict[bytes, Callable[[server.Request], Coroutine]]) -> bytes | int:
    """Run the handler for the request's method (405 naming the allowed ones), its errors
    answered as the REST API would."""
    handler = handlers.get(request.method)
    if handler is None:
        request.setResponseCode(405)
        request.setHeader(b"Allow", b", ".join(handlers))
        return b""
    d = defer.Deferred.fromCoroutine(handler(request))
    d.addErrback(lambda f: write_error(request, f))
    return server.NOT_DONE_YET


def write_error(request: server.Request, failure) -> None:
    """A service error as the REST API would answer it; anything else a plain 500."""
    e = failure.value
    if isinstance(e, errors.InvalidInput):
        write_json(request, 400, e.errors)
    elif isinstance(e, errors.FieldError):
        write_json(request, 400, {e.field: [e.message]})
    elif isinstance(e, errors.NotAuthenticated):
        write_json(request, 401, {"error": str(e)})
    elif isinstance(e, errors.NotFound):
        write_json(request, 404, {"error": str(e)})
    elif isinstance(e, (errors.Conflict, errors.Refused)):
        write_json(request, 409 if isinstance(e, errors.Conflict) else 400, {"error": str(e)})
    elif isinstance(e, errors.Forbidden):
        write_json(request, 403, {"error": str(e)})
    elif isinstance(e, errors.Throttled):
        write_json(request, 429, {"error": str(e)}, {"Retry-After": str(e.retry_after)})
    elif isinstance(e, errors.Unavailable):
        write_json(request, 503, {"error": str(e)}, {"Retry-After": str(e.retry_after or 5)})
    elif isinstance(e, DATABASE_DOWN):
        write_json(request, 503, {"error": "The region's database is unavailable; try again shortly."},
                   {"Retry-After": "5"})
    else:
        log.failure("web UI request failed", failure)
        write_json(request, 500, {"error": "Internal server error; the region's log has the details."})
