"""OAuth nonces seen inside the timestamp window (replay protection across regions)."""

from __future__ import annotations

from region.db.pool import Statement


def remember_thd(cur, token_key: str, nonce: str, keep_for: float) -> bool:
    """Record the nonce for `keep_for` seconds; False when it was already recorded (a replay)."""
    cur.execute(
        "INSERT INTO oauth_nonces (token_key, nonce, expires_at)"
        " VALUES (%s, %s, now() + make_interval(secs => %s))"
        " ON CONFLICT (token_key, nonce) DO NOTHING",
        (token_key, nonce, keep_for),
    )
    return cur.rowcount == 1


def forget_statement(token_key: str, nonce: str) -> Statement[None]:
    """Forget a nonce recorded for a request that was then refused."""
    return Statement("DELETE FROM oauth_nonces WHERE token_key = %s AND nonce = %s", (token_key, nonce))


def purge_expired_statement(limit: int = 10000) -> Statement[None]:
    """Forget nonces whose window has passed (bounded, so one statement never runs long)."""
    return Statement(
        "DELETE FROM oauth_nonces WHERE ctid = ANY(ARRAY("
        " SELECT ctid FROM oauth_nonces WHERE expires_at < now() LIMIT %s))",
        (limit,))
