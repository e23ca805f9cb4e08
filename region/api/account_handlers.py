"""account/ (the logged-in user's API tokens) and /MAAS/accounts/authenticate/.

`authenticate/` is how python-libmaas `login(url, username=, password=)`
turns a password into an API key: it lives outside the API prefix, takes a
form (`username`, `password`, `consumer`) without OAuth, and hands back the
user's existing token for that consumer name, or a new one.
"""

from __future__ import annotations

from region.api.errors import BadRequest, Unauthorized
from region.api.handler import Call, Handler, operation, restful
from region.api.params import Form
from region.api.site import Response
from region.db import events, users
from region.db.errors import NotFound

ACCOUNTS_PREFIX = "/MAAS/accounts/"
_MAX_TOKEN_NAME = 255


def token_json(token: users.ApiToken) -> dict:
    """The shape of create_authorisation_token (and of authenticate/)."""
    return {"token_key": token.token_key, "token_secret": token.secret,
            "consumer_key": token.consumer_key, "name": token.name}


def _rename_token_thd(cur, user_id: int, token_key: str, name: str) -> None:
    cur.execute("UPDATE api_tokens SET name = %s WHERE user_id = %s AND token_key = %s", (name, user_id, token_key))
    if cur.rowcount == 0:
        raise NotFound("token")


class AccountHandler(Handler):
    """Manage the logged-in user's API tokens."""

    path = "account/"

    @operation("POST", "create_authorisation_token")
    async def create_authorisation_token(self, call: Call):
        """Create an API token (OAuth consumer and token) for the logged-in user.

        :param name: Optional. A name for the token.
        :type name: String
        """
        form = Form(call.params)
        name = form.text("name", max_length=_MAX_TOKEN_NAME) or ""
        form.check()
        region, user = call.region, call.user

        def create_thd(cur):
            token = users.create_token_thd(cur, region.box, user.id, name)
            events.record_thd(cur, "AUTHORISATION", "Created token.", level="AUDIT", username=user.username,
                              object_type="user", object_id=user.username)
            return token

        return token_json(await region.db.run(create_thd))

    @operation("GET", "list_authorisation_tokens")
    async def list_authorisation_tokens(self, call: Call):
        """List the logged-in user's API tokens as ``{name, token}``, the token being the whole key."""
        found = await call.region.db.run(users.list_tokens_thd, call.region.box, call.user.id)
        return [{"name": t.name, "token": t.apikey} for t in found]

    @operation("POST", "delete_authorisation_token")
    async def delete_authorisation_token(self, call: Call):
        """Delete one of the logged-in user's API tokens.

        :param token_key: Required. The token key (the middle part of the API key).
        :type token_key: String
        """
        form = Form(call.params)
        token_key = form.text("token_key", required=True)
        form.check()
        user = call.user

        def delete_thd(cur):
            users.delete_token_thd(cur, user.id, token_key)
            events.record_thd(cur, "AUTHORISATION", "Deleted token.", level="AUDIT", username=user.username,
                              object_type="user", object_id=user.username)

        await call.region.db.run(delete_thd)
        return Response(204)

    @operation("POST", "update_token_name")
    async def update_token_name(self, call: Call):
        """Rename one of the logged-in user's API tokens.

        :param token: Required. The whole API key, or only its token key.
        :type token: String
        :param name: Required. The new name.
        :type name: String
        """
        form = Form(call.params)
        token = form.text("token", required=True)
        name = form.text("name", required=True, max_length=_MAX_TOKEN_NAME)
        form.check()
        parts = token.split(":")
        token_key = parts[1] if len(parts) == 3 else token
        user = call.user

        def rename_thd(cur):
            _rename_token_thd(cur, user.id, token_key, name)
            events.record_thd(cur, "AUTHORISATION", "Modified consumer name of token.", level="AUDIT",
                              username=user.username, object_type="user", object_id=user.username)

        await call.region.db.run(rename_thd)
        return Response(200, "Accepted", "text/plain")


class AuthenticateHandler(Handler):
    """Exchange a username and password for an API key (python-libmaas ``login``)."""

    path = "authenticate/"

    @restful("POST", anonymous=True)
    async def create(self, call: Call):
        """Return the user's API token for ``consumer``, creating one when there is none.

        :param username: Required.
        :type username: String
        :param password: Required.
        :type password: String
        :param consumer: Optional. The token name to find or create (libmaas sends ``user@host``).
        :type consumer: String
        """
        username, password = call.params.get("username"), call.params.get("password")
        consumer = call.params.get("consumer")
        if not username or not password:
            raise BadRequest("username and password are required.")
        region = call.region

        def authenticate_thd(cur):
            user = users.authenticate_password_thd(cur, username, password)
            if user is None:
                return None
            existing = [t for t in users.list_tokens_thd(cur, region.box, user.id)
                        if consumer is None or t.name == consumer]
            if existing:
                token, what = existing[0], "Retrieved API (OAuth) token."
            else:
                token, what = users.create_token_thd(cur, region.box, user.id, consumer or ""), \
                    "Created API (OAuth) token."
            events.record_thd(cur, "AUTHORISATION", what, level="AUDIT", username=user.username,
                              object_type="user", object_id=user.username)
            return token

        token = await region.db.run(authenticate_thd)
        if token is None:
            raise Unauthorized("Invalid username or password.")
        return {"consumer_key": token.consumer_key, "token_key": token.token_key,
                "token_secret": token.secret, "name": token.name}
