"""Users and their OAuth 1.0a API tokens."""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import os
import secrets as _random
import string

import attrs
import psycopg2.errors

from region.db.errors import FieldError, NotFound
from region.db.pool import Statement
from region.db.prepared import Prepared
from region.secretbox import SecretBox

_ALPHANUM = string.ascii_letters + string.digits
# scrypt parameters: ~16 MiB and ~50 ms per check on the CI machine.
_N, _R, _P = 2**14, 8, 1


@attrs.frozen
class User:
    id: int
    username: str
    email: str
    is_superuser: bool
    is_active: bool


@attrs.frozen
class ApiToken:
    """One API key; `secret` is only filled when the caller may see it."""

    id: int
    user_id: int
    name: str
    consumer_key: str
    token_key: str
    secret: str = attrs.field(repr=False)
    created: datetime.datetime | None = None

    @property
    def apikey(self) -> str:
        return f"{self.consumer_key}:{self.token_key}:{self.secret}"


def hash_password(password: str) -> str:
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P)
    b64 = base64.b64encode
    return f"scrypt${_N}${_R}${_P}${b64(salt).decode()}${b64(digest).decode()}"


def check_password(stored: str, password: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    got = hashlib.scrypt(
        password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p)
    )
    return hmac.compare_digest(got, base64.b64decode(digest))


def _random_string(length: int) -> str:
    return "".join(_random.choice(_ALPHANUM) for _ in range(length))


_USER_COLUMNS = "id, username, email, is_superuser, is_active"


def create_user_thd(cur, username: str, password: str, email: str, *, is_superuser: bool) -> User:
    if not username or len(username) > 150 or any(c.isspace() for c in username):
        raise FieldError("username", "Enter a valid username: 1-150 characters, no spaces.")
    if not password:
        raise FieldError("password", "This field is required.")
    cur.execute("SAVEPOINT create_user")
    try:
        cur.execute(
            f"INSERT INTO users (username, email, password_hash, is_superuser)"
            f" VALUES (%s, %s, %s, %s) RETURNING {_USER_COLUMNS}",
            (username, email, hash_password(password), is_superuser),
        )
    except psycopg2.errors.UniqueViolation:
        cur.execute("ROLLBACK TO SAVEPOINT create_user")
        raise FieldError("username", "A user with that username already exists.") from None
    return User(*cur.fetchone())


def get_user_thd(cur, username: str) -> User:
    cur.execute(f"SELECT {_USER_COLUMNS} FROM users WHERE username = %s", (username,))
    row = cur.fetchone()
    if row is None:
        raise NotFound("user")
    return User(*row)


def delete_user_thd(cur, user_id: int) -> None:
    """The user and their API tokens (machines they still own would be left ownerless)."""
    cur.execute("DELETE FROM users WHERE id = %s", (user_id,))


def list_users_thd(cur) -> list[User]:
    cur.execute(f"SELECT {_USER_COLUMNS} FROM users ORDER BY id")
    return [User(*r) for r in cur.fetchall()]


def login_record_thd(cur, username: str) -> tuple[User, str] | None:
    """The active user named `username` and their stored password hash, or None."""
    cur.execute(f"SELECT {_USER_COLUMNS}, password_hash FROM users WHERE username = %s AND is_active", (username,))
    row = cur.fetchone()
    return None if row is None else (User(*row[:5]), row[5])


def record_login_thd(cur, user_id: int) -> None:
    cur.execute("UPDATE users SET last_login = now() WHERE id = %s", (user_id,))


def create_token_thd(cur, box: SecretBox, user_id: int, name: str = "") -> ApiToken:
    # MAAS key shape: 18 + 18 + 32 alphanumerics.
    consumer, key, secret = _random_string(18), _random_string(18), _random_string(32)
    cur.execute(
        "INSERT INTO api_tokens (user_id, name, consumer_key, token_key, token_secret_enc)"
        " VALUES (%s, %s, %s, %s, %s) RETURNING id, created",
        (user_id, name, consumer, key, box.encrypt(secret)),
    )
    token_id, created = cur.fetchone()
    return ApiToken(token_id, user_id, name, consumer, key, secret, created)


def list_tokens_thd(cur, box: SecretBox, user_id: int) -> list[ApiToken]:
    cur.execute(
        "SELECT id, user_id, name, consumer_key, token_key, token_secret_enc, created"
        " FROM api_tokens WHERE user_id = %s ORDER BY id",
        (user_id,),
    )
    return [ApiToken(i, u, n, c, k, box.decrypt(s), t) for i, u, n, c, k, s, t in cur.fetchall()]


def delete_token_thd(cur, user_id: int, token_key: str) -> None:
    cur.execute("DELETE FROM api_tokens WHERE user_id = %s AND token_key = %s", (user_id, token_key))
    if cur.rowcount == 0:
        raise NotFound("token")


def rename_token_thd(cur, user_id: int, token_key: str, name: str) -> None:
    cur.execute("UPDATE api_tokens SET name = %s WHERE user_id = %s AND token_key = %s", (name, user_id, token_key))
    if cur.rowcount == 0:
        raise NotFound("token")


@attrs.frozen
class TokenCheck:
    user: User
    token_secret: str
    nonce_is_new: bool  # False: the nonce was already recorded for this token (a replay)


_CHECK_TOKEN = Prepared(
    "check_api_token",
    "WITH token AS (SELECT u.id, u.username, u.email, u.is_superuser, u.is_active, t.token_secret_enc"
    "   FROM api_tokens t JOIN users u ON u.id = t.user_id"
    "   WHERE t.consumer_key = %s AND t.token_key = %s AND u.is_active),"
    " fresh AS (INSERT INTO oauth_nonces (token_key, nonce, expires_at)"
    "   SELECT %s, %s, now() + make_interval(secs => %s) FROM token"
    "   ON CONFLICT (token_key, nonce) DO NOTHING RETURNING 1)"
    " SELECT token.*, EXISTS (SELECT 1 FROM fresh) FROM token")


def check_token_statement(box: SecretBox, consumer_key: str, token_key: str, nonce: str,
                          keep_nonce_for: float) -> Statement[TokenCheck | None]:
    """The active user owning this key pair and the token secret, or None; the nonce recorded
    for `keep_nonce_for` seconds in the same statement (one round trip a request).  Run on its
    own, the nonce stays recorded: a caller that refuses the signature forgets it again
    (`nonces.forget_statement`)."""

    def parse(rows: list[tuple] | None) -> TokenCheck | None:
        if not rows:
            return None
        row = rows[0]
        return TokenCheck(User(*row[:5]), box.decrypt(row[5]), row[6])

    return Statement(_CHECK_TOKEN, (consumer_key, token_key, token_key, nonce, keep_nonce_for), parse)
