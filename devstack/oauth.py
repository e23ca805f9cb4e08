"""OAuth 1 PLAINTEXT signing, as MAAS clients do it."""

from __future__ import annotations

from oauthlib import oauth1


def plaintext_header(apikey: str, url: str, method: str = "GET") -> str:
    """The Authorization header for `apikey` ("consumer:token:secret")."""
    consumer, token, secret = apikey.split(":")
    client = oauth1.Client(consumer, client_secret="", resource_owner_key=token, resource_owner_secret=secret,
                           signature_method=oauth1.SIGNATURE_PLAINTEXT, realm="OAuth")
    return client.sign(url, method)[1]["Authorization"]
