"""session/: GET who is logged in (and the CSRF token), POST log in, DELETE log out.

The cookie is HttpOnly (scripts never see the key), SameSite=Strict (no other site's page
sends it) and Secure over HTTPS.  The CSRF token comes only in this endpoint's JSON, which
another origin's page cannot read."""

from __future__ import annotations

import json
import urllib.parse

from twisted.web import server

from region.services import login, sessions
from region.services.context import Context
from region.services.errors import InvalidInput
from region.ui.auth import session_key
from region.ui.responses import serve, write_json

MAX_BODY = 8192
MAX_USERNAME = 150
MAX_PASSWORD = 1024


def _cookie(request: server.Request, value: str, max_age: int) -> bytes:
    secure = "; Secure" if request.isSecure() else ""
    return (f"{sessions.COOKIE_NAME}={value}; Path=/MAAS/; Max-Age={max_age}; HttpOnly; "
            f"SameSite=Strict{secure}").encode()


def read_credentials(request: server.Request) -> tuple[str, str]:
    """username and password from a JSON or urlencoded body; InvalidInput naming what is wrong."""
    request.content.seek(0)
    raw = request.content.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise InvalidInput(f"The login form is larger than {MAX_BODY} bytes.")
    ctype = (request.getHeader(b"content-type") or b"").decode("latin-1").split(";")[0].strip().lower()
    try:
        if ctype == "application/json":
            data = json.loads(raw.decode("utf-8"))
            data = data if isinstance(data, dict) else {}
        else:
            data = dict(urllib.parse.parse_qsl(raw.decode("utf-8"), strict_parsing=False))
    except (UnicodeDecodeError, ValueError):
        raise InvalidInput("The login form is not valid JSON or urlencoded UTF-8.") from None
    problems: dict[str, list[str]] = {}
    values = {}
    for field, limit in (("username", MAX_USERNAME), ("password", MAX_PASSWORD)):
        value = data.get(field)
        if not isinstance(value, str) or not value:
            problems[field] = ["This field is required."]
        elif len(value) > limit or "\0" in value:
            problems[field] = [f"Enter at most {limit} characters, without NUL."]
        values[field] = value
    if problems:
        raise InvalidInput(problems)
    return values["username"], values["password"]


class SessionEndpoint:
    def __init__(self, region) -> None:
        self.region = region

    def render(self, request: server.Request):
        return serve(request, {b"GET": self._whoami, b"POST": self._login, b"DELETE": self._logout})

    async def _whoami(self, request: server.Request) -> None:
        found = await sessions.lookup(Context(self.region), session_key(request))
        if found is None:
            write_json(request, 401, {"error": "Not logged in."})
            return
        write_json(request, 200, _session_json(found.user, found.csrf_token))

    async def _login(self, request: server.Request) -> None:
        username, password = read_credentials(request)
        address = getattr(request.getClientAddress(), "host", "")
        new = await sessions.login_session(Context(self.region),
                                           login.LoginAttempt(username, password, None, address))
        if new is None:
            write_json(request, 401, {"error": "Invalid username or password."})
            return
        request.setHeader(b"Set-Cookie", _cookie(request, new.key, new.lifetime))
        write_json(request, 200, _session_json(new.user, new.csrf_token))

    async def _logout(self, request: server.Request) -> None:
        token = (request.getHeader(sessions.CSRF_HEADER.encode()) or b"").decode("latin-1")
        await sessions.logout(Context(self.region), session_key(request), token)
        request.setHeader(b"Set-Cookie", _cookie(request, "", 0))
        write_json(request, 204, None)


def _session_json(user, csrf_token: str) -> dict:
    return {"username": user.username, "is_admin": user.is_superuser, "csrf_token": csrf_token}
