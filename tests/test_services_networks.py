"""The network services (crud Tables with catalogs, subnet operations) against the real schema,
without daemons."""

from __future__ import annotations

import pytest
import pytest_twisted

from region.db import events
from region.db.pool import run_sync
from region.services import crud, errors, subnets
from region.services.networks import FABRIC_VLANS, FABRICS, SPACES, VLANS, FabricFields, SpaceFields, VlanFields
from region.services.subnets import IP_RANGES, SUBNETS, RangeFields, SubnetFields, VlanRef
from tests.fixtures.services import service_region  # noqa: F401  (fixture)


def audit(service_region, object_type: str) -> list[tuple[str, str, str, str]]:
    return sorted((e.type, e.description, e.username, e.object_id) for e in
                  run_sync(service_region.dsn, events.list_thd, object_type=object_type))


@pytest_twisted.ensureDeferred
async def test_fabric_crud_records_audit_events_and_carries_the_catalog(service_region):
    ctx = service_region.as_user("admin")
    made = await crud.create(ctx, FABRICS, FabricFields(name="storage", class_type="10g"))
    fabric = made.row
    assert (fabric.name, fabric.class_type, fabric.description) == ("storage", "10g", "")
    assert [v.vid for v in made.catalog.vlans_of(fabric.id)] == [0], "the untagged VLAN comes with it"
    renamed = await crud.update(ctx, FABRICS, "storage", FabricFields(name="san", class_type=""))
    assert (renamed.row.id, renamed.row.name, renamed.row.class_type) == (fabric.id, "san", None)
    assert [f.row.name for f in await crud.list_all(ctx, FABRICS)] == ["fabric-0", "san"]
    await crud.delete(ctx, FABRICS, fabric.id)
    with pytest.raises(errors.NotFound):
        await crud.get(ctx, FABRICS, fabric.id)
    assert audit(service_region, "fabric") == [("FABRIC_CREATED", "fabric storage created", "admin", str(fabric.id)),
                                               ("FABRIC_DELETED", "fabric san deleted", "admin", str(fabric.id)),
                                               ("FABRIC_UPDATED", "fabric san updated", "admin", str(fabric.id))]


@pytest_twisted.ensureDeferred
async def test_vlans_by_fabric_and_vid_with_a_space_and_their_events(service_region):
    ctx = service_region.as_user("admin")
    space = (await crud.create(ctx, SPACES, SpaceFields(name="dmz"))).row
    await crud.create(ctx, FABRICS, FabricFields(name="lab"))
    vlan = (await crud.create(ctx, FABRIC_VLANS, VlanFields(fabric="lab", vid=100, space="dmz"))).row
    assert (vlan.vid, vlan.name, vlan.space_id) == (100, "100", space.id)
    assert [v.row.vid for v in await crud.list_all(ctx, FABRIC_VLANS, fabric="lab")] == [0, 100]
    moved = await crud.update(ctx, FABRIC_VLANS, ("lab", "100"), VlanFields(vid=200, space="undefined"))
    assert (moved.row.id, moved.row.vid, moved.row.name, moved.row.space_id) == (vlan.id, 200, "200", None)
    with pytest.raises(errors.FieldError) as bad_space:
        await crud.update(ctx, VLANS, vlan.id, VlanFields(space="nosuch"))
    assert bad_space.value.field == "space"
    await crud.delete(ctx, VLANS, vlan.id)
    fabric_id = vlan.fabric_id
    assert audit(service_region, "vlan") == [
        ("VLAN_CREATED", f"VLAN 100 created on fabric {fabric_id}", "admin", str(vlan.id)),
        ("VLAN_DELETED", f"VLAN 200 deleted from fabric {fabric_id}", "admin", str(vlan.id)),
        ("VLAN_UPDATED", f"VLAN 200 updated on fabric {fabric_id}", "admin", str(vlan.id))]


@pytest_twisted.ensureDeferred
async def test_what_is_in_use_cannot_be_deleted_and_a_refusal_records_nothing(service_region):
    ctx = service_region.as_user("admin")
    await crud.create(ctx, FABRICS, FabricFields(name="lab"))
    await crud.create(ctx, FABRIC_VLANS, VlanFields(fabric="lab", vid=12))
    subnet = (await crud.create(ctx, SUBNETS, SubnetFields(VlanRef(fabric="lab", vid="12"), cidr="10.12.0.0/24",
                                                           gateway_ip="10.12.0.1"))).row
    with pytest.raises(errors.Refused, match="10.12.0.0/24"):
        await crud.delete(ctx, FABRICS, "lab")
    with pytest.raises(errors.Refused, match="10.12.0.0/24"):
        await crud.delete(ctx, FABRIC_VLANS, ("lab", "12"))
    with pytest.raises(errors.Refused, match="default fabric"):
        await crud.delete(ctx, FABRICS, 0)
    assert [e[0] for e in audit(service_region, "fabric")] == ["FABRIC_CREATED"]
    assert [e[0] for e in audit(service_region, "vlan")] == ["VLAN_CREATED"]
    assert [f.row.name for f in await crud.list_all(ctx, FABRICS)] == ["fabric-0", "lab"]

    found = await crud.create(ctx, IP_RANGES, RangeFields(type_="reserved", start_ip="10.12.0.10",
                                                          end_ip="10.12.0.19", comment="lab kit"))
    assert (found.row.subnet_id, found.row.type, found.catalog.subnets[0].id) == (subnet.id, "reserved", subnet.id)
    reserved = await subnets.reserved_ranges(ctx, "10.12.0.0/24")
    assert [(r.start, r.end, r.num_addresses, r.purposes) for r in reserved] == [
        ("10.12.0.1", "10.12.0.1", 1, ("gateway-ip",)), ("10.12.0.10", "10.12.0.19", 10, ("reserved",))]
    assert audit(service_region, "iprange") == [
        ("IPRANGE_CREATED", "reserved range 10.12.0.10-10.12.0.19 created", "admin", str(found.row.id))]


@pytest_twisted.ensureDeferred
async def test_subnet_and_range_fields_name_what_they_cannot_find(service_region):
    ctx = service_region.as_user("admin")
    with pytest.raises(errors.FieldError) as no_vlan:
        await crud.create(ctx, SUBNETS, SubnetFields(VlanRef(vlan="9999"), cidr="10.9.0.0/24"))
    assert no_vlan.value.field == "vlan"
    made = (await crud.create(ctx, SUBNETS, SubnetFields(cidr="10.9.0.0/24"))).row
    with pytest.raises(errors.FieldError) as no_subnet:
        await crud.create(ctx, IP_RANGES, RangeFields(type_="reserved", start_ip="10.99.0.1", end_ip="10.99.0.2"))
    assert (no_subnet.value.field, no_subnet.value.message) == ("subnet", "No subnet contains 10.99.0.1; give one.")
    assert audit(service_region, "subnet") == [("SUBNET_CREATED", "subnet 10.9.0.0/24 created", "admin",
                                                str(made.id))]
