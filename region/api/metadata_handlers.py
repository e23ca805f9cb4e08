"""POST /MAAS/metadata/status/<system_id>: cloud-init's webhook reporter on a deploying machine.

cloud-init posts one JSON event per stage (`{event_type, name, result, origin, timestamp,
description}`), signed with OAuth PLAINTEXT with the machine's own token (not a user's, so
this is not part of the API router, whose authentication is for users).  The body is small;
anything over MAX_EVENT_BODY is refused.
"""

from __future__ import annotations

import json

from twisted.internet import defer
from twisted.logger import Logger
from twisted.web import resource, server

from common.logsafe import loggable
from region.api.auth import parse_oauth
from region.api.errors import Unauthorized
from region.api.plain_text import finish_text
from region.db.pool import DATABASE_DOWN
from region.services import deploy
from region.services.auth import OAuthCredentials
from region.services.context import Context
from region.services.errors import NotAuthenticated

log = Logger()

METADATA_PREFIX = "/MAAS/metadata/"
STATUS_PREFIX = METADATA_PREFIX + "status/"
MAX_EVENT_BODY = 64 * 1024


class BadEvent(ValueError):
    pass


def parse_event(body: bytes) -> deploy.StatusEvent:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise BadEvent("The body must be a JSON object (a cloud-init reporting event).") from None
    if not isinstance(data, dict):
        raise BadEvent("The body must be a JSON object (a cloud-init reporting event).")
    fields = {}
    for name in ("event_type", "name", "result", "description"):
        value = data.get(name)
        if value is not None and not isinstance(value, str):
            raise BadEvent(f"{name} must be a string.")
        fields[name] = value
    if not fields["event_type"] or not fields["name"]:
        raise BadEvent("event_type and name are required.")
    return deploy.StatusEvent(fields["event_type"], fields["name"], fields["result"], fields["description"] or "")


class MetadataResource(resource.Resource):
    isLeaf = True

    def __init__(self, region) -> None:
        super().__init__()
        self.region = region

    def render_POST(self, request: server.Request):
        d = defer.ensureDeferred(self._status(request))
        d.addErrback(self._crash, request)
        return server.NOT_DONE_YET

    async def _status(self, request: server.Request) -> None:
        path = request.path.decode("utf-8", errors="replace")
        system_id = path[len(STATUS_PREFIX):].strip("/") if path.startswith(STATUS_PREFIX) else ""
        if not system_id or "/" in system_id:
            return finish_text(request, 404, "Unknown metadata endpoint.")
        header = request.getHeader(b"authorization")
        try:
            oauth = parse_oauth(header.decode("latin-1") if header else None, {})
        except Unauthorized as e:
            return finish_text(request, 401, str(e))
        if oauth is None:
            return finish_text(request, 401, "The machine's OAuth credentials are required.")
        request.content.seek(0)
        body = request.content.read(MAX_EVENT_BODY + 1)
        if len(body) > MAX_EVENT_BODY:
            return finish_text(request, 413, f"An event is at most {MAX_EVENT_BODY} bytes.")
        try:
            event = parse_event(body)
        except BadEvent as e:
            return finish_text(request, 400, str(e))
        creds = OAuthCredentials(oauth["oauth_consumer_key"], oauth["oauth_token"], oauth["oauth_signature"],
                                 int(oauth["oauth_timestamp"]), oauth["oauth_nonce"])
        try:
            await deploy.report_status(Context(self.region), system_id, creds, event)
        except NotAuthenticated as e:
            return finish_text(request, 401, str(e))
        except DATABASE_DOWN:
            return finish_text(request, 503, "The region's database is unavailable; try again shortly.")
        finish_text(request, 200, "OK")

    def _crash(self, failure, request: server.Request) -> None:
        log.failure("metadata status report for {path} failed", failure, path=loggable(request.path))
        if not request.finished:
            finish_text(request, 500, "Internal server error; the region's log has the details.")
