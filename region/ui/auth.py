"""Who a browser request comes from: the session cookie, and for writes the CSRF header."""

from __future__ import annotations

from twisted.web import server

from region.db.users import User
from region.services import sessions
from region.services.context import Context
from region.services.errors import Forbidden


def session_key(request: server.Request) -> str:
    return (request.getCookie(sessions.COOKIE_NAME.encode()) or b"").decode("latin-1")


async def session_user(region, request: server.Request) -> User | None:
    """The session's user (None: no session, or it ended).  A write must also carry the session's
    CSRF token in a header, since a cookie alone is sent by any page the browser visits: Forbidden
    otherwise."""
    key = session_key(request)
    if not key:
        return None
    found = await sessions.lookup(Context(region), key)
    if found is None:
        return None
    if request.method not in (b"GET", b"HEAD"):
        token = request.getHeader(sessions.CSRF_HEADER.encode())
        if not sessions.csrf_matches(found, token.decode("latin-1") if token else None):
            raise Forbidden("CSRF token missing or incorrect: send the session's token in the "
                            f"{sessions.CSRF_HEADER} header.")
    return found.user
