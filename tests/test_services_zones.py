"""The zones/pools service against the real schema, without daemons."""

from __future__ import annotations

import pytest
import pytest_twisted

from region.db import events
from region.db.pool import run_sync
from region.services import crud, errors
from region.services.zones import RESOURCE_POOLS, ZONES, NamedChanges, NamedSpec
from tests.fixtures.services import service_region  # noqa: F401  (fixture)


@pytest_twisted.ensureDeferred
async def test_create_update_delete_records_audit_events(service_region):
    ctx = service_region.as_user("admin")
    zone = await crud.create(ctx, ZONES, NamedSpec("lab", "Lab row"))
    assert (zone.name, zone.description) == ("lab", "Lab row")
    renamed = await crud.update(ctx, ZONES, "lab", NamedChanges(name="lab2"))
    assert (renamed.id, renamed.name, renamed.description) == (zone.id, "lab2", "Lab row")
    await crud.delete(ctx, ZONES, zone.id)
    with pytest.raises(errors.NotFound):
        await crud.get(ctx, ZONES, zone.id)
    audit = [(e.type, e.username, e.object_id) for e in
             run_sync(service_region.dsn, events.list_thd, object_type="zone")]
    assert sorted(audit) == sorted([("ZONES_CREATED", "admin", str(zone.id)),
                                    ("ZONES_UPDATED", "admin", str(zone.id)),
                                    ("ZONES_DELETED", "admin", str(zone.id))])


@pytest_twisted.ensureDeferred
async def test_default_pool_cannot_be_deleted_and_names_clash(service_region):
    ctx = service_region.as_user("admin")
    default = [p for p in await crud.list_all(ctx, RESOURCE_POOLS) if p.is_default][0]
    with pytest.raises(errors.Refused):
        await crud.delete(ctx, RESOURCE_POOLS, default.id)
    await crud.create(ctx, RESOURCE_POOLS, NamedSpec("gpu"))
    with pytest.raises(errors.FieldError) as e:
        await crud.create(ctx, RESOURCE_POOLS, NamedSpec("gpu"))
    assert e.value.field == "name"
    assert [p.name for p in await crud.list_all(ctx, RESOURCE_POOLS)].count("gpu") == 1
