"""The cache of rendered machine JSON (region/api/listing_cache.py) against the real schema:
after every kind of write that changes what a machine shows, the cached `machines/`,
`machines/?id=X` and `machines/X/` equal a fresh render, and exactly the machines whose
objects may have changed are rendered again (the others are reused)."""

from __future__ import annotations

import argparse
import json
import threading

import attrs
import pytest
import pytest_twisted

from common.config import ConfigError
from common.models import DiscoveredVM, VMDisk
from region import config
from region.api import listing_cache
from region.api.listing_cache import ENTRY_OVERHEAD, CachedListing, MachineJSONCache, cached_listing
from region.api.machine_json import listing_chunks, render_views
from region.db import (allocations, deploys, hosts, interfaces, ipam, machine_sync, machines, named, networks,
                       seed, subnets, tags, users)
from region.db.machines import MachineQuery
from region.db.pool import run_sync
from region.services import machines as machine_service
from tests.fixtures.services import service_region  # noqa: F401  (fixture)
from tests.test_listing_queries import UNUSED_PORT, _varied_machines_thd, add_hosts

GIB = 1024**3


class RecordingListing(CachedListing):
    """Says which machines the cache lacked."""

    missed: list[int] | None = None

    def missing(self, found, *, complete: bool) -> list[int]:
        self.missed = super().missing(found, complete=complete)
        return self.missed


async def cached_body(ctx, cache: MachineJSONCache, query: MachineQuery = MachineQuery()) -> tuple[bytes, list[int]]:
    """(the listing made with `cache`, the ids of the machines it rendered)."""
    reuse = RecordingListing(cache)
    views = await machine_service.list_machines(ctx, query, reuse=reuse)
    return b"".join(reuse.chunks(views)), reuse.missed


async def fresh_body(ctx, query: MachineQuery = MachineQuery()) -> bytes:
    return b"".join(listing_chunks(await machine_service.list_machines(ctx, query)))


def _site(cur) -> dict:
    """What the writes below touch: the machines and hosts (in id order), a second VLAN and its
    subnet, and a non-admin user."""
    listed = machines.list_thd(cur)
    cur.execute("SELECT id FROM vlans WHERE vid = 42")
    vlan42 = cur.fetchone()[0]
    return {"m": listed, "hosts": hosts.list_thd(cur), "vlan42": vlan42,
            "subnet42": subnets.get_subnet_thd(cur, "192.168.42.0/24").id,
            "alice": next(u for u in users.list_users_thd(cur) if u.email == "alice@example.com")}


def _of_host(s: dict, host_index: int) -> set[int]:
    return {m.id for m in s["m"] if m.host_id == s["hosts"][host_index].id}


def _refresh_host_thd(cur, s: dict) -> None:
    """A periodic refresh of host 2 reporting its VMs with a grown disk (the real import path)."""
    host = hosts.get_thd(cur, s["hosts"][2].id)
    found = [DiscoveredVM(m.instance_name, m.project, m.architecture, m.power_state, m.cpu_count, m.memory,
                          disks=[VMDisk("root", 11 * GIB, "default")])
             for m in machines.list_for_host_thd(cur, host.id)]
    machine_sync.sync_discovered_thd(cur, host, found)


def _link_static_ip_thd(cur, s: dict) -> None:
    nic = s["m"][7].interfaces[1].id
    ipam.allocate_ip_thd(cur, s["subnet42"], None, nic)  # a static IP
    ipam.fill_link_ip_thd(cur, interfaces.add_link_thd(cur, nic, "auto", s["subnet42"]), s["subnet42"])  # at deploy


def _tag_thd(cur, s: dict) -> None:
    tags.create_thd(cur, "gpu")
    tags.update_nodes_thd(cur, "gpu", [s["m"][8].system_id], [])


def _claim_thd(cur, s: dict) -> None:
    assert allocations.claim_thd(cur, s["m"][10].id, s["alice"].id, "model-1")


def _deploy_thd(cur, s: dict) -> None:
    assert deploys.set_status_thd(cur, s["m"][9].system_id, "deploying", "Deploying",  # the seed allocated it
                                  expect=("allocated",))


# (what is written, the machines whose objects it may change: rendered again, the others reused;
# whether the listing changes).  Each write runs after the ones before it.
WRITES = [
    ("hostname", lambda cur, s: machines.update_thd(cur, s["m"][0].id, {"hostname": "renamed"}),
     lambda s: {s["m"][0].id}, True),
    ("zone", lambda cur, s: machines.update_thd(
        cur, s["m"][4].id, {"zone_id": named.get_default_thd(cur, named.ZONES).id}), lambda s: {s["m"][4].id}, True),
    ("pool", lambda cur, s: machines.update_thd(cur, s["m"][2].id, {"pool_id": named.get_thd(
        cur, named.RESOURCE_POOLS, "gold").id}), lambda s: {s["m"][2].id}, True),
    ("allocate", _claim_thd, lambda s: {s["m"][10].id}, True),
    ("owner data", lambda cur, s: allocations.update_owner_data_thd(cur, s["m"][10].id, {"a": "b"}),
     lambda s: {s["m"][10].id}, True),
    ("release", lambda cur, s: allocations.release_thd(cur, s["m"][10].id), lambda s: {s["m"][10].id}, True),
    ("deploy", _deploy_thd, lambda s: {s["m"][9].id}, True),
    ("deployed", lambda cur, s: deploys.set_status_thd(cur, s["m"][9].system_id, "deployed", "",
                                                       expect=("deploying",)), lambda s: {s["m"][9].id}, True),
    ("power state", lambda cur, s: machines.set_power_state_thd(cur, s["m"][5].id, "on"),
     lambda s: {s["m"][5].id}, True),
    ("tag", _tag_thd, lambda s: {s["m"][8].id}, True),
    ("static IP link", _link_static_ip_thd, lambda s: {s["m"][7].id}, True),
    ("link removed", lambda cur, s: interfaces.delete_links_thd(cur, s["m"][7].interfaces[0].id),
     lambda s: {s["m"][7].id}, True),
    ("NIC VLAN", lambda cur, s: interfaces.set_vlan_thd(cur, s["m"][6].interfaces[1].id, s["vlan42"]),
     lambda s: {s["m"][6].id}, True),
    ("disk resized", lambda cur, s: cur.execute("UPDATE machine_disks SET size = size * 2 WHERE id = %s",
                                                (s["m"][10].disks[0].id,)), lambda s: {s["m"][10].id}, True),
    ("host written, nothing shown changed", lambda cur, s: hosts.update_thd(
        cur, None, s["hosts"][1].id, {"cpu_over_commit_ratio": 3.0}), lambda s: set(), False),
    ("host renamed", lambda cur, s: hosts.update_thd(cur, None, s["hosts"][1].id, {"name": "renamed-host"}),
     lambda s: _of_host(s, 1), True),
    ("host interface VLAN", lambda cur, s: networks.link_host_interface_thd(
        cur, s["hosts"][0].id, "eth1", s["vlan42"], None), lambda s: _of_host(s, 0), True),
    ("host interface NUMA node (refresh)", lambda cur, s: cur.execute(
        "UPDATE vm_host_interfaces SET numa_node = 1 - numa_node WHERE host_id = %s", (s["hosts"][3].id,)),
     lambda s: _of_host(s, 3), True),
    ("host CPU speed (refresh)", lambda cur, s: cur.execute(
        "UPDATE vm_hosts SET cpu_speed = 3100 WHERE id = %s", (s["hosts"][3].id,)), lambda s: _of_host(s, 3), True),
    ("refresh import", _refresh_host_thd, lambda s: _of_host(s, 2), True),
    ("subnet renamed", lambda cur, s: subnets.update_subnet_thd(cur, s["subnet42"], {"name": "renamed-subnet"}),
     lambda s: "all", True),
    ("VLAN MTU", lambda cur, s: networks.update_vlan_thd(cur, s["vlan42"], {"mtu": 8000}), lambda s: "all", True),
    ("zone renamed", lambda cur, s: named.update_thd(cur, named.ZONES, "default", name="renamed-zone",
                                                     description=None),
     lambda s: {m.id for m in machines.list_thd(s["cur"]) if m.zone_id == named.get_default_thd(
         s["cur"], named.ZONES).id}, True),
    ("pool renamed", lambda cur, s: named.update_thd(cur, named.RESOURCE_POOLS, "gold", name="platinum",
                                                     description=None),
     lambda s: {m.id for m in machines.list_thd(s["cur"]) if m.pool_id == named.get_thd(
         s["cur"], named.RESOURCE_POOLS, "platinum").id}, True),
    ("zone added", lambda cur, s: named.create_thd(cur, named.ZONES, "new-zone", ""), lambda s: set(), False),
    ("username changed", lambda cur, s: cur.execute("UPDATE users SET username = 'alicia' WHERE id = %s",
                                                    (s["alice"].id,)),
     lambda s: {m.id for m in machines.list_thd(s["cur"]) if m.owner_id == s["alice"].id}, True),
    ("composed", lambda cur, s: seed.seed_thd(cur, hosts=1, machines_per_host=2, port=UNUSED_PORT),
     lambda s: {m.id for m in machines.list_thd(s["cur"])} - {m.id for m in s["m"]}, True),
    ("deleted", lambda cur, s: machines.delete_thd(cur, s["m"][4].id), lambda s: set(), True),
]


@pytest_twisted.ensureDeferred
async def test_cached_listings_equal_fresh_ones_after_every_kind_of_write(service_region):  # noqa: F811
    """One cache across every write of WRITES, through the real db layer: after each, the full
    listing, `?id=X` and `machines/X/` of each machine rendered again equal a fresh render."""
    dsn = service_region.dsn
    add_hosts(dsn, 4, per_host=3)
    run_sync(dsn, _varied_machines_thd)
    admin = service_region.as_user("admin")
    cache = MachineJSONCache(64 * 1024 * 1024)
    before, missed = await cached_body(admin, cache)
    assert before == await fresh_body(admin) and len(missed) == 12 and len(cache) == 12
    assert (await cached_body(admin, cache)) == (before, [])
    for name, write_thd, changed, shows_change in WRITES:
        site = run_sync(dsn, _site)
        run_sync(dsn, write_thd, site)

        def expected_thd(cur):
            return changed({**site, "cur": cur})

        expected = run_sync(dsn, expected_thd)
        body, missed = await cached_body(admin, cache)
        assert body == await fresh_body(admin), name
        assert (body != before) == shows_change, name
        listed = json.loads(body)
        assert set(missed) == ({m["virtualmachine_id"] for m in listed} if expected == "all" else expected), name
        assert len(cache) == len(listed), name  # a deleted machine's entry is gone
        for machine_id in (set(missed) or {listed[0]["virtualmachine_id"]}):
            system_id = next(m["system_id"] for m in listed if m["virtualmachine_id"] == machine_id)
            one = MachineQuery(system_ids=(system_id,))
            alone, _ = await cached_body(admin, cache, one)
            assert alone == await fresh_body(admin, one), name
            read = render_views(await machine_service.get_machine(admin, system_id))
            assert json.loads(alone) == read, name
        before = body

    # A non-admin's listing (the unowned machines and theirs) reuses the admin's entries.
    def give_to_bob_thd(cur):
        bob = users.create_user_thd(cur, "bob", "pw-bob", "bob@example.com", is_superuser=False)
        machines.update_thd(cur, machines.list_thd(cur)[0].id, {"owner_id": bob.id})

    run_sync(dsn, give_to_bob_thd)
    before, missed = await cached_body(admin, cache)
    assert before == await fresh_body(admin) and len(missed) == 1
    alicia = machine_service.Context(service_region, run_sync(dsn, users.get_user_thd, "alicia"))
    body, missed = await cached_body(alicia, cache)
    assert body == await fresh_body(alicia) and missed == [] and len(json.loads(body)) == len(json.loads(before)) - 1


@pytest_twisted.ensureDeferred
async def test_two_listings_at_once_and_a_bound_smaller_than_the_site(service_region):  # noqa: F811
    """Two listings rendering the same machines at once (their chunks interleaved, as the
    render pool's two threads may) both give the fresh document and leave one entry a machine;
    a cache bounded below the site's size keeps within its bound and still answers right."""
    dsn = service_region.dsn
    add_hosts(dsn, 3, per_host=50)  # 150 machines: two chunks
    admin = service_region.as_user("admin")
    fresh = await fresh_body(admin)
    cache = MachineJSONCache(64 * 1024 * 1024)
    first, second = RecordingListing(cache), RecordingListing(cache)
    first_views = await machine_service.list_machines(admin, MachineQuery(), reuse=first)
    second_views = await machine_service.list_machines(admin, MachineQuery(), reuse=second)
    assert len(first.missed) == len(second.missed) == 150
    made: tuple[list[bytes], list[bytes]] = ([], [])
    chunks = (first.chunks(first_views), second.chunks(second_views))
    threads = [threading.Thread(target=lambda i=i: made[i].extend(chunks[i])) for i in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert b"".join(made[0]) == b"".join(made[1]) == fresh
    assert len(cache) == 150 and (await cached_body(admin, cache)) == (fresh, [])

    listed = json.loads(fresh)
    small = MachineJSONCache(40 * (len(fresh) // len(listed) + ENTRY_OVERHEAD))  # ~40 machines
    body, missed = await cached_body(admin, small)
    kept = len(small)
    assert body == fresh and len(missed) == 150 and 30 <= kept < 150 and small.size <= small.limit
    body, missed = await cached_body(admin, small)  # the last ones listed are kept
    assert body == fresh and missed == [m["virtualmachine_id"] for m in listed[:150 - kept]]
    assert small.size <= small.limit


def test_the_setting_bounds_the_regions_cache_and_zero_turns_it_off(service_region, tmp_path):  # noqa: F811
    """`machine_json_cache_bytes` from the region's TOML file; one cache per region database."""
    toml = tmp_path / "regiond.toml"
    parser = argparse.ArgumentParser()
    config.add_arguments(parser)
    toml.write_text("machine_json_cache_bytes = 1048576\n")
    assert config.from_arguments(parser.parse_args(["--config", str(toml)])).machine_json_cache_bytes == 1048576
    toml.write_text("machine_json_cache_bytes = -1\n")
    with pytest.raises(ConfigError):
        config.from_arguments(parser.parse_args(["--config", str(toml)]))

    service_region.config = attrs.evolve(service_region.config, machine_json_cache_bytes=1048576)
    admin = service_region.as_user("admin")
    first, second = cached_listing(admin), cached_listing(admin)
    assert first._cache is second._cache and first._cache.limit == 1048576
    service_region.config = attrs.evolve(service_region.config, machine_json_cache_bytes=0)
    assert cached_listing(admin) is None


@pytest_twisted.ensureDeferred
async def test_a_region_warms_its_cache_so_its_first_listing_renders_nothing(service_region):  # noqa: F811
    """`warm` (run once a region has started) renders every machine into the region's cache:
    the first listing then reuses them all and is the fresh document; a second warm-up finds
    nothing to do; with the cache off it does nothing."""
    dsn = service_region.dsn
    add_hosts(dsn, 3, per_host=50)  # 150 machines: more than one chunk
    admin = service_region.as_user("admin")
    assert await listing_cache.warm(service_region) == 150
    cache = cached_listing(admin)._cache
    assert len(cache) == 150
    assert await cached_body(admin, cache) == (await fresh_body(admin), [])
    assert await listing_cache.warm(service_region) == 0
    service_region.config = attrs.evolve(service_region.config, machine_json_cache_bytes=0)
    assert await listing_cache.warm(service_region) == 0
