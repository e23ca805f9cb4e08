"""The compose and delete records as written and read in as few statements as possible, against
real PostgreSQL: what they return must equal what a full read of the database gives."""

from __future__ import annotations

import json

import attrs
import pytest
import pytest_twisted
from twisted.internet import reactor

from common.models import DiscoveredVM, VMDisk, VMInterface
from region.db import host_inventory, host_load, host_targets, hosts, machines, reservations, secrets
from region.db.errors import FieldError, NotFound
from region.db.pool import Database, run_sync, statement_thd
from region.secretbox import SecretBox
from region.services import compose
from region.vmhosts import HostManager, host_target
from tests.test_compose_race import GIB, ask, make_ready_host


def _new_machine(host: hosts.VMHost, hostname: str | None, nics=()) -> machines.NewMachine:
    return machines.NewMachine(
        hostname, host.id, host.project, "amd64/generic", 1, GIB, [], False, [], host.zone_id, host.pool_id,
        None, False, [], [VMDisk("root", GIB, "default"), VMDisk("data", 2 * GIB, "default")], list(nics))


def test_generated_names_are_drawn_again_after_a_clash(dsn, tmp_path, monkeypatch):
    host_id = make_ready_host(dsn, tmp_path, cores=4, cpu_ratio=1.0)
    first, _ = run_sync(dsn, compose.reserve_thd, host_id, ask(), None, False)
    # The next draws: a free hostname with the taken system id, then a free pair.
    draws = iter(["aaaaaa", first.system_id, "bbbbbb", "cccccc"])
    monkeypatch.setattr(reservations, "new_system_id", lambda: next(draws))
    second, request = run_sync(dsn, compose.reserve_thd, host_id, ask(), None, False)
    assert (second.hostname, second.system_id, request.instance_name) == ("vm-bbbbbb", "cccccc", "vm-bbbbbb")
    assert first.hostname.startswith("vm-") and first.hostname != second.hostname


def test_a_hostname_naming_an_instance_already_recorded_on_the_host_is_a_field_error(dsn, tmp_path):
    host_id = make_ready_host(dsn, tmp_path, cores=4, cpu_ratio=1.0)
    made, _ = run_sync(dsn, compose.reserve_thd, host_id, ask("web"), None, False)

    def rename_thd(cur):  # as discovery names an imported VM whose instance name is taken as a hostname
        cur.execute("UPDATE machines SET hostname = 'web-race' WHERE id = %s", (made.id,))

    run_sync(dsn, rename_thd)
    with pytest.raises(FieldError) as e:
        run_sync(dsn, compose.reserve_thd, host_id, ask("web"), None, False)
    assert e.value.field == "hostname" and "An instance named web is already recorded" in e.value.message
    assert run_sync(dsn, lambda cur: len(machines.list_for_host_thd(cur, host_id))) == 1


@pytest_twisted.ensureDeferred
async def test_finish_compose_returns_what_a_full_read_returns(dsn, tmp_path):
    """As the compose service records a VM: the statements on the reactor, then the NICs read."""
    host_id = make_ready_host(dsn, tmp_path, cores=4, cpu_ratio=1.0)
    db = Database(dsn, reactor, max_connections=1)
    db.start()
    try:
        for resized, nics in [(False, [machines.NewNic("eth0", "bridge", "br0", 0)]),
                              (True, [machines.NewNic("eth0", "bridge", "br0", 0)]), (True, [])]:
            host = run_sync(dsn, hosts.get_thd, host_id)
            reserved, _ = run_sync(dsn, reservations.reserve_thd, _new_machine(host, None, nics))
            vm = DiscoveredVM(reserved.instance_name, host.project, "amd64/generic", "off", 1, GIB,
                              disks=[VMDisk("root", 3 * GIB if resized else GIB), VMDisk("data", 2 * GIB)],
                              interfaces=[VMInterface("eth0", "00:16:3e:00:00:01", "bridge", "br0")] if nics else [])
            done = await db.statements(*reservations.finish_compose_statements(reserved, vm))
            if nics:
                done = await db.run(machines.with_nics_thd, done)
            assert done == run_sync(dsn, machines.get_thd, done.system_id)
            assert done.status == "ready" and [n.mac for n in done.interfaces] == (["00:16:3e:00:00:01"] if nics else [])
            assert [d.size for d in done.disks] == [3 * GIB if resized else GIB, 2 * GIB]
        run_sync(dsn, machines.delete_thd, reserved.id)
        with pytest.raises(NotFound):
            await db.statements(*reservations.finish_compose_statements(reserved, vm))
    finally:
        db.close()


def test_machine_target_is_the_hosts_target_and_the_machines_row(dsn, tmp_path):
    host_id = make_ready_host(dsn, tmp_path, cores=4, cpu_ratio=1.0)
    manager = HostManager(None, SecretBox.load_or_create(tmp_path / "key"), None, None, "test", "http://region/")
    made, _ = run_sync(dsn, compose.reserve_thd, host_id, ask("db1"), None, False)

    def machine_target_thd(cur, system_id):
        machine, reach = statement_thd(cur, host_targets.machine_and_reach_statement(manager.box, system_id))
        return machine, host_target(reach)

    def read_thd(cur):
        full = machines.get_thd(cur, made.system_id)
        return (full, manager.target_thd(cur, hosts.get_thd(cur, host_id)), machine_target_thd(cur, made.system_id))

    full, target, (machine, machine_target) = run_sync(dsn, read_thd)
    assert machine_target == target and target.key_pem.startswith("-----BEGIN")
    assert machine == attrs.evolve(full, interfaces=[]) and full.disks
    with pytest.raises(NotFound):
        run_sync(dsn, machine_target_thd, "nosuch")


def test_host_load_reads_the_numa_nodes_and_every_vm(dsn, tmp_path):
    host_id = make_ready_host(dsn, tmp_path, cores=4, cpu_ratio=1.0)
    made, _ = run_sync(dsn, compose.reserve_thd, host_id, ask("db1", cores=2), None, False)

    def read_thd(cur):
        cur.execute("INSERT INTO vm_host_numa_nodes (host_id, index, cores, memory, hugepages) VALUES"
                    " (%s, 0, '{0,1}', %s, %s), (%s, 1, '{2,3}', %s, '[]')",
                    (host_id, 8 * GIB, json.dumps([{"page_size": 2 * 1024**2, "total": 10, "free": 4}]),
                     host_id, 8 * GIB))
        return host_load.host_load_thd(cur, host_id), host_inventory.numa_nodes_thd(cur, host_id)

    load, numa = run_sync(dsn, read_thd)
    assert load.numa_nodes == numa and numa[0].hugepages[0].total == 10
    assert load.vms == [host_load.VMLoad(2, GIB, [], False, list(made.numa_nodes), [("default", GIB)])]


def test_the_placement_lock_reads_committed_reservations(dsn, tmp_path):
    """Its isolation level is set in the lock's own round trip, and takes effect; the host's
    key comes with the lock, still encrypted."""
    box = SecretBox.load_or_create(tmp_path / "key")
    host_id = make_ready_host(dsn, tmp_path, cores=4, cpu_ratio=1.0)

    def store_key_thd(cur):
        secrets.put_thd(cur, box, hosts.key_secret_name(host_id), "the key")
        cur.execute("UPDATE vm_hosts SET key_secret = %s WHERE id = %s", (hosts.key_secret_name(host_id), host_id))

    run_sync(dsn, store_key_thd)

    def lock_thd(cur):
        locked = hosts.lock_for_placement_thd(cur, host_id)
        cur.execute("SHOW transaction_isolation")
        return (locked.host.id, cur.fetchone()[0], [p.name for p in locked.host.storage_pools],
                box.decrypt(locked.key), locked.load == host_load.host_load_thd(cur, host_id))

    assert run_sync(dsn, lock_thd) == (host_id, "read committed", ["default"], "the key", True)
    with pytest.raises(NotFound):
        run_sync(dsn, hosts.lock_for_placement_thd, "12a")
    with pytest.raises(NotFound):
        run_sync(dsn, hosts.lock_for_placement_thd, 999999)
