"""compose-check/<host id>: POST the compose form's fields as JSON; 200 {"fits": true} when a
compose would fit now, else the error the compose itself would give (400 naming the field, 409
with every shortfall, 503 when the host is not ready)."""

from __future__ import annotations

import json

from twisted.web import server

from region.services import compose_check
from region.services.compose_request import ComposeFields
from region.services.context import Context
from region.services.errors import InvalidInput, NotAuthenticated
from region.ui.auth import session_user
from region.ui.responses import serve, write_json

MAX_BODY = 16384
TEXT_FIELDS = ("cores", "memory", "hugepages_backed", "architecture", "hostname", "zone", "pool", "storage",
               "interfaces", "instance_type")


def compose_fields(raw: bytes) -> ComposeFields:
    """The form's fields (strings; pinned_cores comma-separated), as op=compose would read them."""
    if len(raw) > MAX_BODY:
        raise InvalidInput(f"The compose form is larger than {MAX_BODY} bytes.")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise InvalidInput("The compose form is not valid JSON.") from None
    if not isinstance(data, dict):
        raise InvalidInput("The compose form must be a JSON object.")
    wrong = [k for k, v in data.items() if k in (*TEXT_FIELDS, "pinned_cores") and not isinstance(v, str)]
    if wrong:
        raise InvalidInput({k: ["Send this field as a string."] for k in wrong})
    pinned = tuple(c.strip() for c in data.get("pinned_cores", "").split(",") if c.strip())
    return ComposeFields(pinned_cores=pinned, **{k: data.get(k) or None for k in TEXT_FIELDS})


class ComposeCheckEndpoint:
    def __init__(self, region) -> None:
        self.region = region

    def render(self, request: server.Request, host_id: str):
        return serve(request, {b"POST": lambda r: self._check(r, host_id)})

    async def _check(self, request: server.Request, host_id: str) -> None:
        user = await session_user(self.region, request)
        if user is None:
            raise NotAuthenticated("Not logged in.")
        request.content.seek(0)
        fields = compose_fields(request.content.read(MAX_BODY + 1))
        await compose_check.check(Context(self.region, user), host_id, fields)
        write_json(request, 200, {"fits": True})
