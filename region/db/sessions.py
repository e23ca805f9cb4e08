"""Web UI sessions (ui_sessions): the cookie's key is stored only as its SHA-256."""

from __future__ import annotations

import attrs

from region.db.users import User

_USER_COLUMNS = "u.id, u.username, u.email, u.is_superuser, u.is_active"


@attrs.frozen
class SessionUser:
    """The user a live session belongs to and the CSRF token its writes must carry."""

    user: User
    csrf_token: str = attrs.field(repr=False)


def create_thd(cur, key_hash: bytes, user_id: int, csrf_token: str, lifetime_seconds: int) -> None:
    cur.execute(
        "INSERT INTO ui_sessions (key_hash, user_id, csrf_token, expires)"
        " VALUES (%s, %s, %s, now() + make_interval(secs => %s))",
        (key_hash, user_id, csrf_token, lifetime_seconds),
    )


def lookup_thd(cur, key_hash: bytes) -> SessionUser | None:
    """The session's active user, or None when it is unknown, expired or the user is inactive."""
    cur.execute(
        f"SELECT {_USER_COLUMNS}, s.csrf_token FROM ui_sessions s JOIN users u ON u.id = s.user_id"
        " WHERE s.key_hash = %s AND s.expires > now() AND u.is_active",
        (key_hash,),
    )
    row = cur.fetchone()
    return None if row is None else SessionUser(User(*row[:5]), row[5])


def delete_thd(cur, key_hash: bytes) -> bool:
    cur.execute("DELETE FROM ui_sessions WHERE key_hash = %s", (key_hash,))
    return cur.rowcount > 0


def purge_expired_thd(cur) -> None:
    cur.execute("DELETE FROM ui_sessions WHERE expires <= now()")
