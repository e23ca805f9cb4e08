"""Admins manage users (issue 11 item 12): create, read, delete (with their machines handed
over explicitly); non-admins may not; bad input is a 400 naming the field."""

from __future__ import annotations

import pytest
import pytest_twisted

from region.db import events, machines, users as user_rows
from region.db.machines import MachineQuery
from region.db.pool import run_sync
from region.services import errors, users
from region.services.context import Context
from region.services.users import NewUser
from tests.conftest import make_user, region_box
from tests.fixtures.http import Api
from tests.fixtures.services import service_region  # noqa: F401  (fixture)
from tests.test_access import allocate_thd
from tests.test_services_machines import add_host, svc  # noqa: F401  (fixture)


@pytest_twisted.ensureDeferred
async def test_create_checks_every_field_and_audits(service_region):  # noqa: F811
    admin = Context(service_region, service_region.user("admin", admin=True))
    with pytest.raises(errors.InvalidInput) as e:
        await users.create_user(admin, NewUser("bad name", "not-an-email", "short"))
    assert set(e.value.errors) == {"username", "email", "password"}
    with pytest.raises(errors.InvalidInput) as e:
        await users.create_user(admin, NewUser("carol\x00", "c@x\x00", "long enough\x00"))
    assert e.value.errors == {f: ["Null characters are not allowed."] for f in ("username", "email", "password")}
    with pytest.raises(errors.InvalidInput) as e:
        await users.create_user(admin, NewUser("", "", "long enough"))
    assert list(e.value.errors) == ["username"]

    carol = await users.create_user(admin, NewUser("carol", "carol@example.com", "long enough", is_superuser=True))
    assert (carol.username, carol.email, carol.is_superuser) == ("carol", "carol@example.com", True)
    with pytest.raises(errors.FieldError) as dup:
        await users.create_user(admin, NewUser("carol", "", "long enough"))
    assert dup.value.field == "username"
    audit = [(ev.type, ev.username, ev.description) for ev in run_sync(service_region.dsn, events.list_thd,
                                                                       object_type="user")]
    assert audit == [("USER_CREATED", "admin", "administrator carol created")]

    dave = Context(service_region, service_region.user("dave"))
    with pytest.raises(errors.Forbidden):
        await users.create_user(dave, NewUser("eve", "", "long enough"))
    with pytest.raises(errors.Forbidden):
        await users.delete_user(dave, "carol")


@pytest_twisted.ensureDeferred
async def test_delete_hands_machines_over_only_when_asked(svc):  # noqa: F811
    admin = Context(svc, svc.user("admin", admin=True))
    alice, bob = svc.user("alice"), svc.user("bob")
    await add_host(admin)
    vm1 = run_sync(svc.dsn, allocate_thd, "vm1", alice.id, "model-a", {"juju": "alice's"})

    with pytest.raises(errors.Refused, match=rf"alice cannot be deleted: they own 1 machine\(s\): vm1 \({vm1}\)"):
        await users.delete_user(admin, "alice")
    for heir, why in (("nobody", "No user is named 'nobody'."), ("alice", "Name another user")):
        with pytest.raises(errors.FieldError, match=why) as e:
            await users.delete_user(admin, "alice", transfer_to=heir)
        assert e.value.field == "transfer_resources_to"
    with pytest.raises(errors.Refused, match="cannot self-delete"):
        await users.delete_user(admin, "admin")
    with pytest.raises(errors.NotFound):
        await users.delete_user(admin, "nobody")
    assert [u.username for u in await users.list_users(admin)] == ["admin", "alice", "bob"], "nothing changed"

    await users.delete_user(admin, "alice", transfer_to="bob")
    held = run_sync(svc.dsn, machines.list_thd, MachineQuery(owner_id=bob.id))
    assert [(m.system_id, m.status) for m in held] == [(vm1, "allocated")]
    await users.delete_user(admin, "bob", transfer_to="admin")
    assert [u.username for u in await users.list_users(admin)] == ["admin"]
    gone = [(ev.type, ev.description) for ev in run_sync(svc.dsn, events.list_thd, object_type="user")]
    assert ("USER_DELETED", "user alice deleted") in gone
    assert ("USER_RESOURCES_TRANSFERRED", "1 machine(s) of alice transferred to bob") in gone


def test_http_users_for_admins_only(region, dsn, admin_api):
    alice = Api(region.api, make_user(dsn, region_box(region), "alice", admin=False))
    created = admin_api.post("users/", data={"username": "carol", "email": "carol@example.com",
                                             "password": "long enough", "is_superuser": "false"})
    assert created.status == 200, created.text
    assert created.json() == {"username": "carol", "email": "carol@example.com", "is_superuser": False,
                              "is_local": True, "resource_uri": "/MAAS/api/2.0/users/carol/"}
    assert admin_api.get("users/carol/").json()["username"] == "carol"
    assert run_sync(dsn, user_rows.list_users_thd)[-1].username == "carol"

    for data, field in (({"email": "x@y", "password": "long enough"}, "username"),
                        ({"username": "carol", "password": "long enough"}, "username"),
                        ({"username": "d", "email": "not an email", "password": "long enough"}, "email"),
                        ({"username": "d", "password": "short"}, "password"),
                        ({"username": "d"}, "password"),
                        ({"username": "d", "password": "long enough", "is_superuser": "maybe"}, "is_superuser")):
        refused = admin_api.post("users/", data=data)
        assert (refused.status, list(refused.json())) == (400, [field]), (data, refused.text)

    assert alice.post("users/", data={"username": "x", "password": "long enough"}).status == 403
    assert alice.delete("users/carol/").status == 403
    assert admin_api.delete("users/nobody/").status == 404
    assert admin_api.delete("users/admin/").status == 400
    unknown_heir = admin_api.delete("users/carol/", query={"transfer_resources_to": "nobody"})
    assert (unknown_heir.status, list(unknown_heir.json())) == (400, ["transfer_resources_to"])
    assert admin_api.delete("users/carol/").status == 204
    assert admin_api.get("users/carol/").status == 404
