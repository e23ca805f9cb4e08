"""The HTTP side of the region: routing, auth, body parsing, rendering."""

from __future__ import annotations

import json
import secrets
import time
import urllib.parse
from typing import Any

import attrs
from twisted.internet import defer
from twisted.logger import Logger
from twisted.web import resource, server

from common import hosterrors
from common.logsafe import loggable
from region.api import auth
from region.api.errors import (
    ServiceUnavailable,
    ApiError,
    BadRequest,
    Conflict,
    Forbidden,
    MethodNotAllowed,
    NotFound,
    Rendered,
    TooManyRequests,
    Unauthorized,
)
from region.api.handler import Call, Handler
from region.api.params import MAX_FORM_BODY, Params, is_form, parse_body, parse_query
from region.api.streaming import StreamedJSON
from region.api.web import INLINE_PARSE_LIMIT, parse_pool
from region.db.pool import DATABASE_DOWN, query_counter
from region.services import auth as authn
from region.services import errors as svcerrors
from region.ui.auth import session_user
from region.rpc import NoRackConnected

log = Logger()

API_PREFIX = "/MAAS/api/2.0/"
UNMATCHED = "unmatched"  # the metrics' endpoint label for a path no handler serves


@attrs.frozen
class Response:
    """A handler result that is not plain JSON with 200."""

    status: int = 200
    body: Any = None  # JSON-able, or bytes/str for text
    content_type: str | None = None


def render_result(result: Any) -> Rendered:
    if isinstance(result, Response):
        if result.status == 204:
            # MAAS clients call .endswith() on the content type even for 204.
            return Rendered(204, b"", result.content_type or "text/plain")
        if isinstance(result.body, (bytes, str)):
            body = result.body.encode() if isinstance(result.body, str) else result.body
            return Rendered(result.status, body, result.content_type or "text/plain; charset=utf-8")
        return Rendered(result.status, json.dumps(result.body).encode(), result.content_type or "application/json")
    return Rendered(200, json.dumps(result).encode(), "application/json")


def _domain_error(e: Exception) -> ApiError:
    """The HTTP form of an error raised by a service (or the db layer beneath it)."""
    if isinstance(e, svcerrors.NotFound):
        return NotFound(str(e))
    if isinstance(e, svcerrors.FieldError):
        return BadRequest.field(e.field, e.message)
    if isinstance(e, svcerrors.InvalidInput):
        return BadRequest(e.errors)
    if isinstance(e, svcerrors.Forbidden):
        return Forbidden(str(e))
    if isinstance(e, svcerrors.Conflict):
        return Conflict(str(e))
    if isinstance(e, svcerrors.Unavailable):
        return ServiceUnavailable(str(e), retry_after=e.retry_after)
    if isinstance(e, svcerrors.Throttled):
        return TooManyRequests(str(e), retry_after=e.retry_after)
    return BadRequest(str(e))  # Refused


_DOMAIN_ERRORS = (svcerrors.NotFound, svcerrors.FieldError, svcerrors.Refused, svcerrors.InvalidInput,
                  svcerrors.Forbidden, svcerrors.Conflict, svcerrors.Unavailable, svcerrors.Throttled)


class RouterResource(resource.Resource):
    """Dispatches every request under a prefix to a Handler by path pattern."""

    isLeaf = True

    def __init__(self, region, handlers: list[type[Handler]], prefix: str) -> None:
        super().__init__()
        self.region = region
        self.prefix = prefix
        self.handlers = [(h.pattern(), h(region)) for h in handlers]
        self.metrics = getattr(region, "metrics", None)  # None where a test routes without a region

    def render(self, request: server.Request) -> Any:
        d = defer.Deferred.fromCoroutine(self._handle_measured(request))
        d.addCallback(self._write, request)
        d.addErrback(self._crash, request)
        return server.NOT_DONE_YET

    async def _handle_measured(self, request: server.Request) -> Rendered:
        """`_handle`, timed and with its SQL statements counted, per route template and status."""
        if self.metrics is None:
            return await self._handle(request)
        queries = [0]
        query_counter.set(queries)  # this coroutine's own context: concurrent requests count apart
        started = time.monotonic()
        status = 500
        try:
            rendered = await self._handle(request)
            status = rendered.status
            return rendered
        finally:
            self.metrics.observe_request(getattr(request, "route", UNMATCHED), request.method.decode("latin-1"),
                                         status, time.monotonic() - started, queries[0])

    def _write(self, rendered: Rendered, request: server.Request) -> None:
        if isinstance(rendered, StreamedJSON):
            rendered.send(request)  # even to a client that went away: it frees what it holds
            return
        if request._disconnected:
            return
        request.setResponseCode(rendered.status)
        request.setHeader(b"Content-Type", rendered.content_type.encode())
        for k, v in rendered.headers:
            request.setHeader(k.encode(), v.encode())
        request.setHeader(b"Content-Length", str(len(rendered.body)).encode())
        if request.method != b"HEAD":
            request.write(rendered.body)
        request.finish()

    def _crash(self, failure, request: server.Request) -> None:
        # The client learns only that it failed and how to find it in the log: a traceback
        # or exception text can quote SQL or other users' data.
        request_id = secrets.token_hex(8)
        log.failure("unhandled error in {method} {path} (request {request_id})", failure,
                    method=request.method.decode("latin-1"), path=loggable(request.path),
                    request_id=request_id)
        self._write(Rendered(500, f"Internal server error (request {request_id}); the region's log "
                                  f"has the details.".encode(), "text/plain; charset=utf-8",
                             (("X-Request-Id", request_id),)), request)

    async def _handle(self, request: server.Request) -> Rendered:
        try:
            result = await self._dispatch(request)
            return result if isinstance(result, StreamedJSON) else render_result(result)
        except ApiError as e:
            return e.render()
        except _DOMAIN_ERRORS as e:
            return _domain_error(e).render()
        except NoRackConnected:
            return ServiceUnavailable("No rack controller is connected, so the VM host cannot be reached; "
                                      "start or reconnect a rack and try again.", retry_after=10).render()
        except hosterrors.DriverError as e:  # as MAAS's PodProblem: 503 with the reason
            return ServiceUnavailable(str(e)).render()
        except DATABASE_DOWN:
            log.warn("database unavailable during {path}", path=loggable(request.path))
            return ServiceUnavailable("The region's database is unavailable; try again shortly.",
                                      retry_after=5).render()

    async def _dispatch(self, request: server.Request) -> Any:
        path = request.path.decode("utf-8", errors="replace")
        relative = path[len(self.prefix):] if path.startswith(self.prefix) else None
        if relative is None:
            raise NotFound(f"Unknown API endpoint: {path}")
        for pattern, handler in self.handlers:
            m = pattern.match(relative)
            if m:
                break
        else:
            raise NotFound(f"Unknown API endpoint: {path}")
        request.route = self.prefix + handler.path

        method = request.method.decode("latin-1")
        if not handler.has_method(method):
            raise MethodNotAllowed(f"Method {method} is not allowed here.")
        params = Params()
        parse_query(request.uri.split(b"?", 1)[1] if b"?" in request.uri else b"", params)
        # Credentials come from the header or the query, never the body: a request that is
        # neither signed nor aimed at an anonymous action is refused before its body is read.
        user = await self._authenticate(request, params)
        if user is None and not handler.has_anonymous_action(method):
            raise Unauthorized("Authentication credentials were not provided.")
        await self._add_body(request, params, getattr(handler, "max_form_body", MAX_FORM_BODY))
        op = params.get("op") or None  # an empty op means no op (gomaasapi sends "op=")
        action = handler.find_action(method, op)
        if action is None:
            if op:
                raise BadRequest(f"Unrecognised signature: method={method} op={op}")
            raise MethodNotAllowed(f"Method {method} is not allowed here.")
        if user is None and not action.anonymous:
            raise Unauthorized("Authentication credentials were not provided.")
        if action.admin_only and not (user and user.is_superuser):
            raise Forbidden("You must be an administrator to do this.")
        call = Call(
            region=self.region,
            user=user,
            params=params,
            path_args={name: _path_arg(value) for name, value in m.groupdict().items()},
            host=(request.getHeader(b"host") or b"localhost").decode("latin-1"),
            scheme="https" if request.isSecure() else "http",
            client=getattr(request.getClientAddress(), "host", ""),
            body=request.content,
            declared_length=(request.getHeader(b"content-length") or b"").decode("latin-1") or None,
        )
        return await getattr(handler, action.func_name)(call)

    async def _add_body(self, request: server.Request, params: Params, limit: int) -> None:
        if request.method not in (b"POST", b"PUT", b"DELETE") or request.content is None:
            return
        ctype = (request.getHeader(b"content-type") or b"").decode("latin-1")
        if not is_form(ctype):  # a raw body (an image chunk): the handler reads it itself
            return
        request.content.seek(0)
        body = request.content.read(limit + 1)
        if len(body) <= INLINE_PARSE_LIMIT:
            parse_body(ctype, body, params, limit)
        else:  # bounded work, but not on the reactor thread
            await parse_pool().run(parse_body, ctype, body, params, limit)

    async def _authenticate(self, request: server.Request, params: Params):
        header = request.getHeader(b"authorization")
        oauth = auth.parse_oauth(
            header.decode("latin-1") if header else None,
            {k: params.get(k) or "" for k in params.keys()},
        )
        if oauth is None:
            return await session_user(self.region, request)
        creds = authn.OAuthCredentials(oauth["oauth_consumer_key"], oauth["oauth_token"],
                                       oauth["oauth_signature"], int(oauth["oauth_timestamp"]),
                                       oauth["oauth_nonce"])
        try:
            return await authn.authenticate(self.region, creds)
        except svcerrors.NotAuthenticated as e:
            raise Unauthorized(str(e)) from None


def _path_arg(raw: str) -> str:
    """A path segment percent-decoded; one no object can be named by (control characters, NUL,
    broken UTF-8) matches nothing, so it is a 404 before any lookup."""
    try:
        value = urllib.parse.unquote(raw, errors="strict")
    except UnicodeDecodeError:
        raise NotFound(f"No object is named {loggable(raw)}.") from None
    if not value.isprintable():
        raise NotFound(f"No object is named {loggable(value)}.")
    return value
