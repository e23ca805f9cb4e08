"""OAuth 1.0a PLAINTEXT authentication, as MAAS clients sign requests.

This module only reads the parameters; region/services/auth.py checks them
(signature, timestamp window, nonce).  Every MAAS client signs this way (maas
CLI, python-libmaas, gomaasapi).
"""

from __future__ import annotations

from oauthlib.oauth1.rfc5849.utils import parse_authorization_header, unescape

from region.api.errors import Unauthorized

REQUIRED = (
    "oauth_consumer_key",
    "oauth_token",
    "oauth_signature",
    "oauth_signature_method",
    "oauth_timestamp",
    "oauth_nonce",
)


def parse_oauth(header: str | None, query: dict[str, str]) -> dict[str, str] | None:
    """OAuth parameters from the Authorization header, else the query; None if absent."""
    if header and header.strip().lower().startswith("oauth "):
        try:
            params = {k: unescape(v) for k, v in parse_authorization_header(header.strip())}
        except (ValueError, TypeError) as e:
            raise Unauthorized(f"malformed OAuth header: {e}") from None
    else:
        params = {k: v for k, v in query.items() if k.startswith("oauth_")}
        if not params:
            return None
    missing = [k for k in REQUIRED if not params.get(k)]
    if missing:
        raise Unauthorized(f"missing OAuth parameters: {', '.join(missing)}")
    if params["oauth_signature_method"] != "PLAINTEXT":
        raise Unauthorized("only the PLAINTEXT signature method is supported")
    if not (params["oauth_timestamp"].isascii() and params["oauth_timestamp"].isdigit()
            and len(params["oauth_timestamp"]) <= 12):
        raise Unauthorized("oauth_timestamp must be an integer (seconds since 1970)")
    return params
