"""version/, users/, rackcontrollers/."""

from __future__ import annotations

from common.version import MAAS_COMPAT_VERSION, VERSION
from region.api.handler import Call, Handler, operation, restful
from region.api.network_forms import boolean
from region.api.params import Form
from region.api.site import API_PREFIX, Response
from region.db.racks import Rack
from region.db.users import User
from region.services import racks, users
from region.services.users import MAX_EMAIL_LENGTH, NewUser

CAPABILITIES = [
    "networks-management",
    "static-ipaddresses",
    "ipv6-deployment-ubuntu",
    "devices-management",
    "storage-deployment-ubuntu",
    "network-deployment-ubuntu",
    "bridging-interface-ubuntu",
    "bridging-automatic-ubuntu",
    "authenticate-api",
]


class VersionHandler(Handler):
    """Information about this server."""

    path = "version/"

    @restful("GET", anonymous=True)
    async def read(self, call: Call):
        """Read version and capabilities."""
        return {
            "capabilities": CAPABILITIES,
            "version": MAAS_COMPAT_VERSION,
            "subversion": f"vmyard-{VERSION}",
        }


def user_json(user: User) -> dict:
    return {
        "username": user.username,
        "email": user.email,
        "is_superuser": user.is_superuser,
        "is_local": True,
        "resource_uri": f"{API_PREFIX}users/{user.username}/",
    }


class UsersHandler(Handler):
    """Manage users."""

    path = "users/"

    @operation("GET", "whoami")
    async def whoami(self, call: Call):
        """Returns the currently logged in user."""
        return user_json(call.user)

    @restful("GET")
    async def read(self, call: Call):
        """List users."""
        return [user_json(u) for u in await users.list_users(call.ctx)]

    @restful("POST", admin_only=True)
    async def create(self, call: Call):
        """Create a user.

        :param username: Required. 1-150 letters, digits and @/./+/-/_ characters.
        :type username: String
        :param email: Optional. The user's email address.
        :type email: String
        :param password: Required. At least 8 characters; stored hashed.
        :type password: String
        :param is_superuser: Optional. Whether the user is an administrator (default false).
        :type is_superuser: Boolean
        """
        form = Form(call.params)
        username = form.text("username", required=True, max_length=150)
        email = form.text("email", max_length=MAX_EMAIL_LENGTH) or ""
        password = form.text("password", required=True)
        is_superuser = boolean(form, "is_superuser")
        form.check()
        return user_json(await users.create_user(call.ctx, NewUser(username, email, password, bool(is_superuser))))


class UserHandler(Handler):
    """One user, by username (where a user's `resource_uri` points)."""

    path = "users/{username}/"

    @restful("GET")
    async def read(self, call: Call):
        """Read a user."""
        return user_json(await users.get_user(call.ctx, call.path_args["username"]))

    @restful("DELETE", admin_only=True)
    async def delete(self, call: Call):
        """Delete a user and their API keys.  A user who owns machines is deleted only with
        ``transfer_resources_to`` (400 naming the machines otherwise).

        :param transfer_resources_to: Optional. The username that takes over the user's machines.
        :type transfer_resources_to: String
        """
        await users.delete_user(call.ctx, call.path_args["username"],
                                call.params.get("transfer_resources_to") or None)
        return Response(204)


def rack_json(rack: Rack) -> dict:
    return {
        "id": rack.id,
        "system_id": rack.system_id,
        "hostname": rack.hostname,
        "fqdn": rack.hostname,
        "node_type": 2,
        "node_type_name": "Rack controller",
        "status": "connected" if rack.connected else "disconnected",
        "connections": rack.connections,
        "last_seen": rack.last_seen.isoformat() if rack.last_seen else None,
        "version": rack.version,
        "resource_uri": f"{API_PREFIX}rackcontrollers/{rack.system_id}/",
    }


class RackControllersHandler(Handler):
    """Rack controllers enrolled with this region."""

    path = "rackcontrollers/"

    @restful("GET")
    async def read(self, call: Call):
        """List rack controllers with their connection status."""
        return [rack_json(r) for r in await racks.list_all(call.ctx)]


class RackControllerHandler(Handler):
    """One rack controller."""

    path = "rackcontrollers/{system_id}/"

    @restful("GET")
    async def read(self, call: Call):
        """Read a rack controller."""
        return rack_json(await racks.get(call.ctx, call.path_args["system_id"]))

    @restful("DELETE", admin_only=True)
    async def delete(self, call: Call):
        """Delete a rack controller: its certificate stops working at once."""
        await racks.delete(call.ctx, call.path_args["system_id"])
        return Response(204)
