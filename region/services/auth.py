"""Who is calling: OAuth 1.0a PLAINTEXT credentials checked against the stored tokens.

Every MAAS client signs with PLAINTEXT and an empty consumer secret, so a valid signature
is exactly "&" + token_secret.  A timestamp more than `OAUTH_WINDOW` seconds from now is
refused (as MAAS does), and a nonce is accepted once per token inside that window; nonces
live in PostgreSQL so that every region agrees.
"""

from __future__ import annotations

import hmac
import itertools
import time

import attrs

from region.db import nonces, users
from region.services.errors import NotAuthenticated

OAUTH_WINDOW = 300
_PURGE_EVERY = 500  # requests between purges of expired nonces, per process
_calls = itertools.count(1)


@attrs.frozen
class OAuthCredentials:
    consumer_key: str
    token_key: str
    signature: str = attrs.field(repr=False)
    timestamp: int
    nonce: str


def signature_matches(signature: str, token_secret: str) -> bool:
    return hmac.compare_digest(signature.encode(), f"&{token_secret}".encode())


async def authenticate(region, creds: OAuthCredentials, now: float | None = None) -> users.User:
    """The user these credentials belong to; NotAuthenticated when they are not valid now."""
    now = time.time() if now is None else now
    if abs(now - creds.timestamp) > OAUTH_WINDOW:
        raise NotAuthenticated(f"oauth_timestamp is more than {OAUTH_WINDOW} seconds away from the "
                               "server's time: check the client's clock.")
    purge = next(_calls) % _PURGE_EVERY == 0
    # One statement on the reactor: every API request pays for this, so it takes no thread.
    found = await region.db.statement(users.check_token_statement(
        region.box, creds.consumer_key, creds.token_key, creds.nonce, 2 * OAUTH_WINDOW))
    if found is None:
        raise NotAuthenticated("Invalid access token or signature.")
    if not signature_matches(creds.signature, found.token_secret):
        if found.nonce_is_new:  # recorded by the check: a refused request leaves nothing behind
            await region.db.statement(nonces.forget_statement(creds.token_key, creds.nonce))
        raise NotAuthenticated("Invalid access token or signature.")
    if not found.nonce_is_new:
        raise NotAuthenticated("This oauth_nonce was already used: the request looks like a replay.")
    if purge:
        await region.db.statement(nonces.purge_expired_statement())
    return found.user
