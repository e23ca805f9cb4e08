"""Web UI sessions: a password login makes a server-side session; the browser holds only its key.

- The key (the cookie) is 32 random bytes; PostgreSQL stores its SHA-256, so a copy of the
  table logs nobody in.  Each session has its own CSRF token, which the UI sends in a header
  on every write (region/api/site.py checks it).
- Passwords are checked by `login.verify`, so the UI shares the API's throttle and hash pool.
- A session ends at logout or after SESSION_LIFETIME, whichever comes first.
"""

from __future__ import annotations

import hashlib
import secrets

import attrs

from region.db import sessions, users
from region.db.sessions import SessionUser
from region.services import login
from region.services.context import Context
from region.services.errors import Forbidden

SESSION_LIFETIME = 12 * 3600  # seconds; a working day, then the password again
COOKIE_NAME = "vmyard_session"
CSRF_HEADER = "X-CSRFToken"  # the header name Django (and so MAAS's UI) uses


@attrs.frozen
class NewSession:
    key: str = attrs.field(repr=False)  # goes in the cookie, never stored
    csrf_token: str = attrs.field(repr=False)
    user: users.User
    lifetime: int


def key_hash(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


async def login_session(ctx: Context, attempt: login.LoginAttempt) -> NewSession | None:
    """A new session for the user when the password is right, else None (throttled as API logins)."""
    user = await login.verify(ctx, attempt)
    if user is None:
        return None
    new = NewSession(secrets.token_urlsafe(32), secrets.token_urlsafe(32), user, SESSION_LIFETIME)

    def create_thd(cur):
        sessions.purge_expired_thd(cur)
        sessions.create_thd(cur, key_hash(new.key), user.id, new.csrf_token, new.lifetime)
        users.record_login_thd(cur, user.id)
        attrs.evolve(ctx, actor=user).audit_thd(cur, "AUTHORISATION", "Logged in to the web UI.", "user",
                                                user.username)

    await ctx.db.run(create_thd)
    return new


async def lookup(ctx: Context, key: str) -> SessionUser | None:
    """The session's user and CSRF token; None when the key is unknown or the session expired."""
    if not key or len(key) > 128:
        return None
    return await ctx.db.run(sessions.lookup_thd, key_hash(key))


def csrf_matches(session: SessionUser, token: str | None) -> bool:
    return token is not None and secrets.compare_digest(session.csrf_token.encode(), token.encode())


async def logout(ctx: Context, key: str, csrf_token: str) -> None:
    """End the session `key` names; its CSRF token must come with it (Forbidden otherwise), so no
    other site can log the user out.  An unknown or expired key has nothing left to end."""
    if not key or len(key) > 128:
        return

    def delete_thd(cur):
        found = sessions.lookup_thd(cur, key_hash(key))
        if found is None:
            return
        if not csrf_matches(found, csrf_token):
            raise Forbidden(f"CSRF token missing or incorrect: send the session's token in the {CSRF_HEADER} header.")
        sessions.delete_thd(cur, key_hash(key))
        attrs.evolve(ctx, actor=found.user).audit_thd(cur, "AUTHORISATION", "Logged out of the web UI.", "user",
                                                      found.user.username)

    await ctx.db.run(delete_thd)
