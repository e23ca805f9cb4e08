"""The VM host services against the real schema, without daemons (a fake rack gateway)."""

from __future__ import annotations

import attrs
import pytest
import pytest_twisted

from common import hosterrors
from region.db import events, named
from region.db.pool import run_sync
from region.services import errors, vmhost_ops, vmhosts
from region.services.lookups import CHOICE, named_choice_thd
from region.services.vmhosts import HostFields
from tests.fixtures.fake_racks import FakeRackGateway, discovered_host, discovered_vm
from tests.fixtures.services import service_region  # noqa: F401  (fixture)


def fields(**given) -> HostFields:
    """A create request for an LXD host at 10.0.0.1; `given` overrides (update: only those given)."""
    base = dict(type="lxd", power_address="10.0.0.1:8443", name="lxd1", project="default", zone=None,
                pool=None, tags=None, cpu_over_commit_ratio=None, memory_over_commit_ratio=None,
                default_macvlan_mode=None, default_storage_pool=None, certificate="CERT", key="KEY",
                password=None)
    return HostFields(**{**base, **given})


def changes(**given) -> HostFields:
    """An update request: only `given` is set."""
    return HostFields(**{a.name: given.get(a.name) for a in attrs.fields(HostFields)})


def audit(dsn: str) -> list[tuple[str, str, str]]:
    return sorted((e.type, e.username, e.description) for e in run_sync(dsn, events.list_thd, object_type="vm-host")
                  if e.level == "AUDIT")


@pytest.fixture
def svc(service_region):  # noqa: F811  (the fixture above)
    service_region.hosts = FakeRackGateway(
        found=discovered_host(discovered_vm("vm1"), pools=("default", "fast")), db=service_region.db)
    return service_region


@pytest_twisted.ensureDeferred
async def test_create_stores_the_discovered_host_with_an_audit_event(svc):
    ctx = svc.as_user("admin")
    view = await vmhosts.create_host(ctx, fields(tags=["a"]))
    assert (view.host.name, view.host.state, view.host.tags) == ("lxd1", "ready", ["a"])
    assert (view.zone.is_default, view.pool.is_default) == (True, True)
    assert view.usage.vms == 1  # vm1, imported by the same transaction
    assert audit(svc.dsn) == [("VM_HOST_CREATED", "admin", "VM host lxd1 added")]

    with pytest.raises(errors.FieldError) as clash:
        await vmhosts.create_host(ctx, fields(power_address="10.0.0.2:8443"))
    assert clash.value.field == "name"
    with pytest.raises(errors.InvalidInput, match="VM host lxd1 with type and parameters already exist"):
        await vmhosts.create_host(ctx, fields(name="other"))
    with pytest.raises(errors.FieldError) as unknown:
        await vmhosts.create_host(ctx, fields(name="other", power_address="10.0.0.3", zone="mars"))
    assert (unknown.value.field, unknown.value.message) == ("zone", CHOICE)
    assert [v.host.name for v in await vmhosts.list_hosts(ctx)] == ["lxd1"]


@pytest_twisted.ensureDeferred
async def test_create_keeps_an_untrusting_host_but_nothing_unreachable(svc):
    ctx = svc.as_user("admin")
    svc.hosts.found = hosterrors.Unreachable("no route to host")
    with pytest.raises(errors.FieldError) as e:
        await vmhosts.create_host(ctx, fields())
    assert (e.value.field, e.value.message) == ("power_address", "no route to host")
    assert await vmhosts.list_hosts(ctx) == []

    svc.hosts.found = hosterrors.Untrusted("not trusted")
    view = await vmhosts.create_host(ctx, fields())
    assert view.host.state == "awaiting-trust"
    assert "curl -s http://region.test/MAAS/vmhost-certificate/lxd1" in view.host.state_message
    with pytest.raises(errors.HostNotReady) as e:  # until LXD trusts us
        await vmhost_ops.refresh(ctx, view.host.id, None)
    assert str(e.value) == view.host.state_message


@pytest_twisted.ensureDeferred
async def test_update_validates_the_default_storage_pool_and_records_an_audit_event(svc):
    ctx = svc.as_user("admin")
    host = (await vmhosts.create_host(ctx, fields())).host
    with pytest.raises(errors.FieldError) as e:
        await vmhosts.update_host(ctx, host.id, lambda current: changes(default_storage_pool="nope"))
    assert e.value.field == "default_storage_pool"

    fast = next(p for p in host.storage_pools if p.name == "fast")
    view = await vmhosts.update_host(ctx, str(host.id),
                                     lambda current: changes(default_storage_pool=str(fast.id), tags=["x"]))
    assert (view.host.default_storage_pool, view.host.tags) == ("fast", ["x"])
    assert svc.hosts.jobs == [("discover", "10.0.0.1:8443")]  # no connection field: no rediscovery
    assert audit(svc.dsn) == [("VM_HOST_CREATED", "admin", "VM host lxd1 added"),
                                 ("VM_HOST_UPDATED", "admin", "VM host lxd1 updated: default_storage_pool, tags")]


@pytest_twisted.ensureDeferred
async def test_tags_and_parameters(svc):
    ctx = svc.as_user("admin")
    host_id = (await vmhosts.create_host(ctx, fields())).host.id
    with pytest.raises(errors.InvalidInput, match='Tag may not contain a ","'):
        await vmhost_ops.add_tag(ctx, host_id, "a,b")
    await vmhost_ops.add_tag(ctx, host_id, "a")
    assert (await vmhost_ops.add_tag(ctx, host_id, "b")).host.tags == ["a", "b"]
    assert (await vmhost_ops.remove_tag(ctx, host_id, "a")).host.tags == ["b"]
    params = await vmhost_ops.parameters(ctx, host_id)
    assert (params.power_address, params.certificate, params.key) == ("10.0.0.1:8443", "CERT", "KEY")
    assert "KEY" not in repr(params)


def test_named_choice_lookup(service_region):  # noqa: F811  (the fixture above)
    def lookups_thd(cur):
        lab = named.create_thd(cur, named.ZONES, "lab", "")
        found = [named_choice_thd(cur, named.ZONES, "zone", key) for key in (None, "lab", str(lab.id), lab.id)]
        assert [z.name for z in found] == ["default", "lab", "lab", "lab"]
        for echo, message in ((False, CHOICE),
                              (True, "Select a valid choice. mars is not one of the available choices.")):
            with pytest.raises(errors.FieldError) as e:
                named_choice_thd(cur, named.RESOURCE_POOLS, "pool", "mars", echo_value=echo)
            assert (e.value.field, e.value.message) == ("pool", message)

    run_sync(service_region.dsn, lookups_thd)
