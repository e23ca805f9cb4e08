"""account/ (the logged-in user's API tokens) and /MAAS/accounts/authenticate/.

`authenticate/` is how python-libmaas `login(url, username=, password=)`
turns a password into an API key: it lives outside the API prefix, takes a
form (`username`, `password`, `consumer`) without OAuth, and hands back the
user's existing token for that consumer name, or a new one.  Failed attempts are
throttled (429 with Retry-After; region/services/login.py).
"""

from __future__ import annotations

from region.api.errors import BadRequest, Unauthorized
from region.api.handler import Call, Handler, operation, restful
from region.api.params import Form
from region.api.site import Response
from region.db.users import ApiToken
from region.services import login, users

ACCOUNTS_PREFIX = "/MAAS/accounts/"
_MAX_TOKEN_NAME = 255
_MAX_USERNAME = 150  # as users are made (region/db/users.py)
_MAX_PASSWORD = 1024


def token_json(token: ApiToken) -> dict:
    """The shape of create_authorisation_token (and of authenticate/)."""
    return {"token_key": token.token_key, "token_secret": token.secret,
            "consumer_key": token.consumer_key, "name": token.name}


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
        return token_json(await users.create_token(call.ctx, name))

    @operation("GET", "list_authorisation_tokens")
    async def list_authorisation_tokens(self, call: Call):
        """List the logged-in user's API tokens as ``{name, token}``, the token being the whole key."""
        return [{"name": t.name, "token": t.apikey} for t in await users.list_tokens(call.ctx)]

    @operation("POST", "delete_authorisation_token")
    async def delete_authorisation_token(self, call: Call):
        """Delete one of the logged-in user's API tokens.

        :param token_key: Required. The token key (the middle part of the API key).
        :type token_key: String
        """
        form = Form(call.params)
        token_key = form.text("token_key", required=True)
        form.check()
        await users.delete_token(call.ctx, token_key)
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
        await users.rename_token(call.ctx, token, name)
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
        if not username or not password:
            raise BadRequest("username and password are required.")
        form = Form(call.params)
        form.text("username", max_length=_MAX_USERNAME)
        form.text("password", max_length=_MAX_PASSWORD)
        consumer = form.text("consumer", max_length=_MAX_TOKEN_NAME)
        form.check()
        token = await login.authenticate(call.ctx, login.LoginAttempt(username, password, consumer, call.client))
        if token is None:
            raise Unauthorized("Invalid username or password.")
        return token_json(token)
