"""account/prefs/sshkeys/ (MAAS 2.0 shapes, alias sshkeys/): the logged-in user's SSH keys."""

from __future__ import annotations

from region.api.handler import Call, Handler, operation, restful
from region.api.params import Form
from region.api.site import API_PREFIX, Response
from region.db.sshkeys import SSHKey
from region.services import sshkeys as sshkey_service

# An RSA key of 16384 bits is ~2,800 characters; room for a long comment too.
_MAX_KEY_LENGTH = 16384


def sshkey_json(key: SSHKey) -> dict:
    # MAAS's keysource names where an imported key came from (lp:, gh:); keys here are added by hand.
    return {"id": key.id, "key": key.key, "keysource": "",
            "resource_uri": f"{API_PREFIX}account/prefs/sshkeys/{key.id}/"}


class SSHKeysHandler(Handler):
    """Manage the logged-in user's SSH keys."""

    path = "account/prefs/sshkeys/"

    @restful("GET")
    async def read(self, call: Call):
        """List the logged-in user's SSH keys, oldest first."""
        return [sshkey_json(k) for k in await sshkey_service.list_keys(call.ctx)]

    @restful("POST")
    async def create(self, call: Call):
        """Add an SSH public key to the logged-in user's account.

        :param key: Required. One OpenSSH public key line, ``TYPE BASE64 [COMMENT]``, TYPE being
            ssh-ed25519, ecdsa-sha2-nistp256/384/521 or ssh-rsa (at least 2048 bits).
        :type key: String
        """
        form = Form(call.params)
        text = form.text("key", required=True, max_length=_MAX_KEY_LENGTH)
        form.check()
        return Response(201, sshkey_json(await sshkey_service.add_key(call.ctx, text)))

    @operation("POST", "add")
    async def add(self, call: Call):
        """Add an SSH public key (the same as a plain POST).

        :param key: Required. One OpenSSH public key line.
        :type key: String
        """
        return await self.create(call)


class SSHKeyHandler(Handler):
    """Manage one of the logged-in user's SSH keys; other users' keys are not found."""

    path = "account/prefs/sshkeys/{id}/"

    @restful("GET")
    async def read(self, call: Call):
        """Read an SSH key."""
        return sshkey_json(await sshkey_service.get_key(call.ctx, call.path_args["id"]))

    @restful("DELETE")
    async def delete(self, call: Call):
        """Delete an SSH key."""
        await sshkey_service.delete_key(call.ctx, call.path_args["id"])
        return Response(204)


class SSHKeysAliasHandler(SSHKeysHandler):
    """Manage the logged-in user's SSH keys (alias: sshkeys/)."""

    path = "sshkeys/"


class SSHKeyAliasHandler(SSHKeyHandler):
    """Manage one of the logged-in user's SSH keys (alias: sshkeys/{id}/)."""

    path = "sshkeys/{id}/"
