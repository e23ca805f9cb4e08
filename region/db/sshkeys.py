"""Users' SSH public keys (validated by region/services/sshkeys.py before they get here)."""

from __future__ import annotations

import datetime

import attrs
import psycopg2.errors

from region.db.errors import FieldError, NotFound


@attrs.frozen
class SSHKey:
    id: int
    user_id: int
    key: str  # "type base64 [comment]"
    fingerprint: str  # "SHA256:…", as ssh-keygen -l prints it
    created: datetime.datetime


_COLUMNS = "id, user_id, key, fingerprint, created"
_MAX_ID = 2**31 - 1  # a serial


def _key_id(key_id: int | str) -> int:
    """The id as a number; anything that cannot be a key's id is NotFound."""
    text = str(key_id)
    if not (text.isascii() and text.isdigit() and len(text) <= 10) or not 0 < int(text) <= _MAX_ID:
        raise NotFound("SSHKey")
    return int(text)


def list_for_user_thd(cur, user_id: int) -> list[SSHKey]:
    """Oldest first."""
    cur.execute(f"SELECT {_COLUMNS} FROM sshkeys WHERE user_id = %s ORDER BY id", (user_id,))
    return [SSHKey(*row) for row in cur.fetchall()]


def get_thd(cur, user_id: int, key_id: int | str) -> SSHKey:
    """One of the user's keys; another user's key is NotFound, as a missing one is."""
    cur.execute(f"SELECT {_COLUMNS} FROM sshkeys WHERE id = %s AND user_id = %s", (_key_id(key_id), user_id))
    row = cur.fetchone()
    if row is None:
        raise NotFound("SSHKey")
    return SSHKey(*row)


def add_thd(cur, user_id: int, key: str, fingerprint: str) -> SSHKey:
    cur.execute("SAVEPOINT sshkey_add")
    try:
        cur.execute(f"INSERT INTO sshkeys (user_id, key, fingerprint) VALUES (%s, %s, %s) RETURNING {_COLUMNS}",
                    (user_id, key, fingerprint))
    except psycopg2.errors.UniqueViolation:
        cur.execute("ROLLBACK TO SAVEPOINT sshkey_add")
        raise FieldError("key", "This key has already been added for this user.") from None
    return SSHKey(*cur.fetchone())


def delete_thd(cur, user_id: int, key_id: int | str) -> SSHKey:
    cur.execute(f"DELETE FROM sshkeys WHERE id = %s AND user_id = %s RETURNING {_COLUMNS}",
                (_key_id(key_id), user_id))
    row = cur.fetchone()
    if row is None:
        raise NotFound("SSHKey")
    return SSHKey(*row)
