"""Listings at scale, against the real schema: vm-hosts/ and machines/ cost a constant number of
queries whatever the number of hosts and machines, every machines/ filter selects in SQL what
filtering the full listing would, and the batch loaders give the same JSON as loading host by
host (how the region read them before).  Timings live in `bench/scale.py`, not here."""

from __future__ import annotations

import json

import pytest

from common.models import DiscoveredVM, VMDisk, VMInterface
from region.api.machine_json import listing_chunks, render_views
from region.api.vmhost_json import host_json
from region.db import allocations, hosts, machine_sync, machines, named, networks, reservations, seed, users
from region.db.machines import MachineQuery
from region.db.pool import run_sync, statement_thd
from region.services import machines as machine_service
from region.services import vmhosts
from region.services.machines import MachineView, MachineViews
from tests.fixtures.services import service_region  # noqa: F401  (fixture)

MIB = 1024 * 1024
UNUSED_PORT = 9  # discard: nothing answers, and nothing here connects anyway


class CountingCursor:
    """Counts the statements a transaction function runs."""

    def __init__(self, cur) -> None:
        self._cur = cur
        self.count = 0

    def execute(self, *args):
        self.count += 1
        return self._cur.execute(*args)

    def executemany(self, *args):
        self.count += 1
        return self._cur.executemany(*args)

    def __getattr__(self, name):
        return getattr(self._cur, name)


def counted(dsn: str, fn_thd, *args, **kwargs):
    """(what fn_thd returned, how many statements it ran), in one transaction."""
    def run_thd(cur):
        counting = CountingCursor(cur)
        return fn_thd(counting, *args, **kwargs), counting.count

    return run_sync(dsn, run_thd)


def add_hosts(dsn: str, hosts_count: int, per_host: int = 2) -> seed.Seeded:
    return run_sync(dsn, seed.seed_thd, hosts=hosts_count, machines_per_host=per_host, port=UNUSED_PORT)


@pytest.fixture
def admin_ctx(service_region):  # noqa: F811  (the fixture above)
    return service_region.as_user("admin")


def test_host_and_machine_listings_cost_the_same_queries_for_5_and_50_hosts(service_region, admin_ctx):  # noqa: F811
    dsn = service_region.dsn
    add_hosts(dsn, 5)
    hosts_few, few_host_queries = counted(dsn, vmhosts.views_thd)
    machines_few, few_machine_queries = counted(dsn, machine_service.visible_views_thd, admin_ctx, MachineQuery())
    add_hosts(dsn, 45)
    hosts_many, many_host_queries = counted(dsn, vmhosts.views_thd)
    machines_many, many_machine_queries = counted(dsn, machine_service.visible_views_thd, admin_ctx, MachineQuery())

    assert (len(hosts_few), len(hosts_many)) == (5, 50)
    assert (len(machines_few.machines), len(machines_many.machines)) == (10, 100)
    assert few_host_queries == many_host_queries <= 5
    assert few_machine_queries == many_machine_queries <= 5
    # One machine or one host: the same few queries, not one per host in the site.
    one_machine = machines_many.machines[-1].machine.system_id
    _, get_queries = counted(dsn, machine_service.visible_views_thd, admin_ctx, MachineQuery(system_ids=(one_machine,)))
    _, host_queries = counted(dsn, vmhosts.view_thd, hosts_many[-1].host.id)
    assert get_queries <= 5 and host_queries <= 5


def _mixed_site(service_region) -> dict:  # noqa: F811
    """Six seeded hosts with four machines each, then: owners, statuses, an allocation with an
    agent name and owner data, a second resource pool, and a host whose tracked project changed
    (its machines no longer count as its usage)."""
    dsn = service_region.dsn
    add_hosts(dsn, 6, per_host=4)

    def vary_thd(cur):
        alice = users.create_user_thd(cur, "alice", "pw-alice", "alice@example.com", is_superuser=False)
        bob = users.create_user_thd(cur, "bob", "pw-bob", "bob@example.com", is_superuser=False)
        gold = named.create_thd(cur, named.RESOURCE_POOLS, "gold", "")
        listed = machines.list_thd(cur)
        for i, m in enumerate(listed):
            changes = {}
            if i % 3 == 1:
                changes["owner_id"] = alice.id
            if i % 5 == 2:
                changes.update(owner_id=bob.id, status="deployed")
            if i % 4 == 3:
                changes["pool_id"] = gold.id
            machines.update_thd(cur, m.id, changes)
        ready = [m for m in machines.list_thd(cur) if m.status == "ready" and m.owner_id is None]
        assert allocations.claim_thd(cur, ready[0].id, alice.id, "juju-model-1")
        allocations.update_owner_data_thd(cur, ready[0].id, {"owner": "juju"})
        host = hosts.list_thd(cur)[1]
        hosts.update_thd(cur, service_region.box, host.id, {"project": "other"})
        return {"alice": alice, "bob": bob}

    return run_sync(dsn, vary_thd)


def test_every_filter_selects_what_filtering_the_full_listing_does(service_region, admin_ctx):  # noqa: F811
    _mixed_site(service_region)
    dsn = service_region.dsn
    full = run_sync(dsn, machine_service.visible_views_thd, admin_ctx, MachineQuery()).machines
    some = full[3].machine
    mac = some.interfaces[1].mac
    cases = {
        MachineQuery(system_ids=(full[0].machine.system_id, some.system_id)):
            lambda v: v.machine.system_id in (full[0].machine.system_id, some.system_id),
        MachineQuery(hostnames=(some.hostname, "no-such-host")): lambda v: v.machine.hostname == some.hostname,
        MachineQuery(mac_addresses=(mac.upper(),)): lambda v: any(n.mac == mac for n in v.machine.interfaces),
        MachineQuery(zone=seed.SEED_ZONE): lambda v: v.zone.name == seed.SEED_ZONE,
        MachineQuery(zone="default"): lambda v: v.zone.name == "default",
        MachineQuery(pool="gold"): lambda v: v.pool.name == "gold",
        MachineQuery(agent_name="juju-model-1"): lambda v: v.allocation.agent_name == "juju-model-1",
        MachineQuery(agent_name=seed.SEED_AGENT): lambda v: v.allocation.agent_name == seed.SEED_AGENT,
        MachineQuery(statuses=("deployed", "allocated")): lambda v: v.machine.status in ("deployed", "allocated"),
        MachineQuery(owners=("bob",)): lambda v: v.owner == "bob",
        MachineQuery(zone=seed.SEED_ZONE, owners=("alice",)):
            lambda v: v.zone.name == seed.SEED_ZONE and v.owner == "alice",
    }
    for query, wanted in cases.items():
        selected = run_sync(dsn, machine_service.visible_views_thd, admin_ctx, query).machines
        expected = [v.machine.system_id for v in full if wanted(v)]
        assert expected, f"the mixed site has machines for {query}"
        assert [v.machine.system_id for v in selected] == expected, query
    # A non-admin sees the unowned machines and their own, filters and all.
    alice_ctx = machine_service.Context(service_region, run_sync(dsn, users.get_user_thd, "alice"))
    seen = run_sync(dsn, machine_service.visible_views_thd, alice_ctx, MachineQuery(zone="default")).machines
    assert [v.machine.system_id for v in seen] == [
        v.machine.system_id for v in full if v.zone.name == "default" and v.owner in (None, "alice")]


def _views_host_by_host_thd(cur) -> MachineViews:
    """Machine views loaded as the region did before the batch loaders: every host, each
    host's interfaces and the network catalog per host, every zone, pool and user."""
    found = machines.list_thd(cur)
    by_host = {h.id: h for h in hosts.list_thd(cur)}
    interfaces = {h: networks.host_interface_networks_thd(cur, h) for h in {m.host_id for m in found}}
    zones = {z.id: z for z in named.list_thd(cur, named.ZONES)}
    pools = {p.id: p for p in named.list_thd(cur, named.RESOURCE_POOLS)}
    owners = {u.id: u.username for u in users.list_users_thd(cur)}
    extras = allocations.extras_thd(cur, [m.id for m in found])
    return MachineViews([MachineView(m, by_host[m.host_id], zones[m.zone_id], pools[m.pool_id],
                                     owners.get(m.owner_id), interfaces[m.host_id], extras[m.id]) for m in found],
                        networks.catalog_thd(cur))


def test_batch_loaded_json_equals_host_by_host_json(service_region, admin_ctx):  # noqa: F811
    _mixed_site(service_region)
    dsn = service_region.dsn
    batch = run_sync(dsn, machine_service.visible_views_thd, admin_ctx, MachineQuery())
    rendered = render_views(batch)
    assert rendered == render_views(run_sync(dsn, _views_host_by_host_thd))
    assert json.loads(b"".join(listing_chunks(batch))) == rendered  # the streamed form is the same document
    assert b"".join(listing_chunks(MachineViews([], batch.catalog))) == b"[]"
    first = rendered[0]
    assert first["boot_interface"] == first["interface_set"][0] and first["interface_set"][0]["vlan"]
    assert first["boot_disk"] == first["blockdevice_set"][0] and first["ip_addresses"]

    # Hosts: the SQL sums equal summing each host's VMs of its tracked project.
    views = run_sync(dsn, vmhosts.views_thd)
    moved = 0
    for view in views:
        shown = host_json(view, "vm-hosts", admin=True)
        vms = [m for m in run_sync(dsn, machines.list_for_host_thd, view.host.id) if m.project == view.host.project]
        moved += not vms
        disks = [d for m in vms for d in m.disks]
        assert shown["used"] == {"cores": sum(m.cpu_count for m in vms), "memory": sum(m.memory for m in vms) // MIB,
                                 "local_storage": sum(d.size for d in disks)}
        assert {p["name"]: p["used"] for p in shown["storage_pools"]} == {
            p.name: sum(d.size for d in disks if d.pool == p.name) for p in view.host.storage_pools}
        assert shown["available"]["cores"] == view.host.cores - shown["used"]["cores"]
    assert moved == 1, "the host whose project changed counts none of its machines"


_AGGREGATES = (
    "SELECT host_id, project, count(*), sum(cpu_count), sum(memory) FROM machines GROUP BY 1, 2",
    "SELECT m.host_id, m.project, d.storage_pool, sum(d.size) FROM machine_disks d"
    " JOIN machines m ON m.id = d.machine_id GROUP BY 1, 2, 3",
)
_KEPT = (
    "SELECT host_id, project, vms, cores, memory FROM vm_host_vm_totals WHERE vms <> 0",
    "SELECT host_id, project, storage_pool, size FROM vm_host_disk_totals WHERE size <> 0",
)


def _kept_and_summed_thd(cur) -> list[tuple[set, set]]:
    """(kept totals, totals summed from every VM and disk) per table, zero rows left out."""
    pairs = []
    for kept, summed in zip(_KEPT, _AGGREGATES):
        cur.execute(kept)
        kept_rows = set(cur.fetchall())
        cur.execute(summed)
        pairs.append((kept_rows, {r for r in cur.fetchall() if r[-1] != 0}))
    return pairs


def _assert_totals_kept(dsn: str) -> None:
    for kept, summed in run_sync(dsn, _kept_and_summed_thd):
        assert kept == summed and kept


def test_kept_host_totals_equal_the_aggregate_after_compose_delete_and_refresh_import(service_region):  # noqa: F811
    dsn = service_region.dsn
    add_hosts(dsn, 3, per_host=3)
    _assert_totals_kept(dsn)  # the seed's inserts

    def compose_thd(cur):
        host, other = hosts.list_thd(cur)[:2]
        listed = machines.list_for_host_thd(cur, host.id)
        zone, pool = listed[0].zone_id, listed[0].pool_id
        new, _ = reservations.reserve_thd(cur, machines.NewMachine(
            "kept-1", host.id, host.project, "amd64/generic", 3, 2 * MIB, [], False, [], zone, pool, None, False,
            [], [VMDisk("root", 5 * MIB, host.storage_pools[0].name), VMDisk("scratch", MIB)], []))
        for statement in reservations.finish_compose_statements(new, DiscoveredVM(
                "kept-1", host.project, "amd64/generic", "on", 3, 2 * MIB, disks=[VMDisk("root", 7 * MIB)])):
            statement_thd(cur, statement)
        # A resize and a move to another project (no region path does both; the triggers must).
        cur.execute("UPDATE machines SET cpu_count = 9, memory = %s WHERE id = %s", (9 * MIB, listed[0].id))
        cur.execute("UPDATE machines SET project = 'elsewhere' WHERE id = %s", (listed[2].id,))
        machines.delete_thd(cur, listed[1].id)
        return host, other

    host, other = run_sync(dsn, compose_thd)
    _assert_totals_kept(dsn)

    def refresh_import_thd(cur):
        known = [m for m in machines.list_for_host_thd(cur, host.id) if m.instance_name != "kept-1"]
        found = [DiscoveredVM(m.instance_name, m.project, m.architecture, "off", m.cpu_count + 1, m.memory,
                              disks=[VMDisk("root", 3 * MIB, host.storage_pools[-1].name)]) for m in known[1:]]
        found.append(DiscoveredVM("kept-new", host.project, "amd64/generic", "on", 2, MIB,
                                  disks=[VMDisk("root", MIB, host.storage_pools[0].name)]))
        machine_sync.sync_discovered_thd(cur, hosts.get_thd(cur, host.id), found)

    run_sync(dsn, refresh_import_thd)
    _assert_totals_kept(dsn)
    run_sync(dsn, hosts.delete_thd, other.id)  # its machines and disks go by cascade
    _assert_totals_kept(dsn)


def test_a_refresh_that_finds_nothing_new_writes_nothing_and_keeps_disk_ids(service_region):  # noqa: F811
    """A periodic refresh reports every VM; rows whose facts are unchanged keep their version
    (xmin: what the machine JSON cache is keyed on) and a resized disk keeps its id (clients
    address `blockdevices/{id}/`), while `updated` moves only for the machine that changed."""
    dsn = service_region.dsn
    add_hosts(dsn, 1, per_host=2)

    def versions_thd(cur):
        cur.execute("SELECT m.id, m.xmin::text, m.updated, array_agg(d.id || '.' || d.xmin ORDER BY d.id),"
                    " (SELECT array_agg(i.id || '.' || i.xmin ORDER BY i.id) FROM machine_interfaces i"
                    "  WHERE i.machine_id = m.id)"
                    " FROM machines m JOIN machine_disks d ON d.machine_id = m.id GROUP BY m.id ORDER BY m.id")
        return {r[0]: r[1:] for r in cur.fetchall()}

    def refresh_thd(cur, resize: int | None = None):
        host = hosts.list_thd(cur)[0]
        found = []
        for m in machines.list_for_host_thd(cur, host.id):
            disks = [VMDisk(d.name, d.size * (2 if m.id == resize else 1), d.pool) for d in m.disks]
            found.append(DiscoveredVM(m.instance_name, m.project, m.architecture, m.power_state, m.cpu_count,
                                      m.memory, pinned_cores=list(m.pinned_cores),
                                      hugepages_backed=m.hugepages_backed, instance_type=m.instance_type,
                                      disks=disks, interfaces=[_discovered_nic(n) for n in m.interfaces]))
        result = machine_sync.sync_discovered_thd(cur, host, found)
        assert (result.added, result.removed) == ([], [])

    before = run_sync(dsn, versions_thd)
    run_sync(dsn, refresh_thd)
    assert run_sync(dsn, versions_thd) == before  # not one row written
    changed_id = min(before)
    run_sync(dsn, refresh_thd, changed_id)
    after = run_sync(dsn, versions_thd)
    for machine_id, (xmin, updated, disks, nics) in after.items():
        old_xmin, old_updated, old_disks, old_nics = before[machine_id]
        assert nics == old_nics
        assert [d.split(".")[0] for d in disks] == [d.split(".")[0] for d in old_disks]  # ids kept
        if machine_id == changed_id:
            assert disks != old_disks and updated > old_updated
        else:
            assert (xmin, updated, disks) == (old_xmin, old_updated, old_disks)


def _discovered_nic(nic: machines.MachineNic) -> VMInterface:
    return VMInterface(nic.name, nic.mac, nic.attach_type, nic.attach_name, nic.vid, nic.boot)


def test_listings_over_http_are_streamed_whole_and_filters_are_checked(admin_api, dsn):
    """Through a real region: the streamed listings are complete documents, equal to the
    objects read one by one, HEAD sends no body, and a bad filter is a 400 naming it."""
    add_hosts(dsn, 3, per_host=2)
    listed = admin_api.get("machines/")
    assert (listed.status, listed.content_type) == (200, "application/json")
    machines_json = listed.json()
    assert listed.headers.get("transfer-encoding") == "chunked" and len(machines_json) == 6  # never whole in memory
    assert [admin_api.get(f"machines/{m['system_id']}/").json() for m in machines_json] == machines_json
    one = machines_json[4]
    assert admin_api.get("machines/", query={"id": [one["system_id"]]}).json() == [one]
    assert admin_api.get("machines/", query={"status": "Ready", "zone": seed.SEED_ZONE}).json() == [
        m for m in machines_json if m["status_name"] == "Ready" and m["zone"]["name"] == seed.SEED_ZONE]
    assert admin_api.get("machines/", query={"domain": "maas"}).json() == machines_json
    assert admin_api.get("machines/", query={"domain": "elsewhere"}).json() == []
    bad = admin_api.get("machines/", query={"status": "sleeping"})
    assert (bad.status, bad.json()) == (400, {"status": ["'sleeping' is not a machine status."]})
    head = admin_api.request("HEAD", "machines/")
    assert (head.status, head.body, head.content_type) == (200, b"", "application/json")

    hosts_json = admin_api.get("vm-hosts/").json()
    assert [h["name"] for h in hosts_json] == ["seed-host-0", "seed-host-1", "seed-host-2"]
    assert [admin_api.get(f"pods/{h['id']}/").json() for h in hosts_json] == admin_api.get("pods/").json()
    assert hosts_json[0]["used"] == {"cores": 4, "memory": 8192, "local_storage": 2 * 30 * seed.GIB}


OWNER_DATA = {"k\u0001": "tab\tquote\"", "ü": ""}


def _varied_machines_thd(cur) -> None:
    """Beyond the seed's sameness: owners, statuses, tags, owner data with characters JSON must
    escape, a deployed series, a machine without NICs, one without disks, a NIC with several
    links (no address, no subnet), one on a VLAN of its own, a disconnected one, another zone."""
    alice = users.create_user_thd(cur, "alice", "pw-alice", "alice@example.com", is_superuser=False)
    gold = named.create_thd(cur, named.RESOURCE_POOLS, "gold", "a \"quoted\" pool")
    listed = machines.list_thd(cur)
    cur.execute("INSERT INTO vlans (fabric_id, vid, name, mtu) VALUES (0, 42, 'v42', 9000) RETURNING id")
    vlan42 = cur.fetchone()[0]
    cur.execute("INSERT INTO subnets (name, cidr, vlan_id) VALUES ('s42', '192.168.42.0/24', %s) RETURNING id",
                (vlan42,))
    subnet42 = cur.fetchone()[0]
    machines.update_thd(cur, listed[0].id, {"owner_id": alice.id, "status": "deployed", "tags": ["db", "é\n"]})
    cur.execute("UPDATE machines SET distro_series = 'jammy', agent_name = 'model-1', owner_data = %s WHERE id = %s",
                (json.dumps(OWNER_DATA), listed[0].id))
    machines.update_thd(cur, listed[1].id, {"pool_id": gold.id, "status": "allocated", "owner_id": alice.id})
    cur.execute("DELETE FROM machine_interfaces WHERE machine_id = %s", (listed[2].id,))
    cur.execute("DELETE FROM machine_disks WHERE machine_id = %s", (listed[3].id,))
    nic = listed[4].interfaces[0].id
    cur.execute("INSERT INTO static_ips (subnet_id, ip, machine_interface_id, mode) VALUES"
                " (%s, '192.168.42.7', %s, 'static'), (%s, NULL, %s, 'auto'), (NULL, NULL, %s, 'link_up')",
                (subnet42, nic, subnet42, nic, nic))
    cur.execute("UPDATE machine_interfaces SET vlan_id = %s WHERE id = %s", (vlan42, listed[5].interfaces[1].id))
    cur.execute("UPDATE machine_interfaces SET disconnected = true WHERE id = %s", (listed[6].interfaces[0].id,))


def test_full_listing_equals_every_machine_read_alone(admin_api, dsn):
    """Over HTTP on varied data: the streamed listing (shared parts serialised once) holds, for
    every machine, exactly the object `machines/X/` renders on its own, in id order."""
    add_hosts(dsn, 4, per_host=3)
    run_sync(dsn, _varied_machines_thd)
    listed = admin_api.get("machines/").json()
    alone = [admin_api.get(f"machines/{m['system_id']}/").json() for m in listed]
    assert listed == alone and len(listed) == 12
    assert [m["virtualmachine_id"] for m in listed] == sorted(m["virtualmachine_id"] for m in listed)
    assert (listed[0]["owner"], listed[0]["status_name"], listed[0]["osystem"]) == ("alice", "Deployed", "ubuntu")
    assert (listed[1]["pool"]["name"], listed[1]["status_name"]) == ("gold", "Allocated")
    assert (listed[2]["interface_set"], listed[2]["boot_interface"], listed[2]["ip_addresses"]) == ([], None, [])
    assert (listed[3]["blockdevice_set"], listed[3]["boot_disk"], listed[3]["storage"]) == ([], None, 0.0)
    assert listed[0]["owner_data"] == OWNER_DATA and listed[0]["tag_names"] == ["db", "é\n"]
    assert [len(n["links"]) for n in listed[4]["interface_set"]] == [4, 0]
    assert listed[5]["interface_set"][1]["vlan"]["vid"] == 42 and listed[6]["interface_set"][0]["vlan"] is None
