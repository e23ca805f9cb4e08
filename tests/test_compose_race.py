"""Exact accounting under concurrency: reservations against real PostgreSQL."""

from __future__ import annotations

import concurrent.futures

import attrs
import pytest

from common import tls
from region.db import hosts, machines, named
from region.db.errors import FieldError
from region.db.pool import run_sync
from region.netconstraints import parse_interfaces
from region.secretbox import SecretBox
from region.services import compose
from region.services.compose_request import ComposeAsk, StorageAsk
from region.services.errors import Conflict

GIB = 1024**3


def make_ready_host(dsn: str, tmp_path, *, cores: int, cpu_ratio: float, memory: int = 64 * GIB) -> int:
    box = SecretBox.load_or_create(tmp_path / "key")
    pair = tls.make_self_signed("race", kind="ec")

    def make_thd(cur):
        zone, pool = named.get_default_thd(cur, named.ZONES), named.get_default_thd(cur, named.RESOURCE_POOLS)
        new = hosts.NewHost("race", "lxd", "10.0.0.1", "default", pair.cert_pem, pair.key_pem, zone.id, pool.id,
                            [], cpu_ratio, 1.0, None)
        host_id = hosts.create_thd(cur, box, new).id
        cur.execute("UPDATE vm_hosts SET state = 'ready', cores = %s, memory = %s,"
                    " architectures = '{amd64/generic}', capabilities = '{composable}' WHERE id = %s",
                    (cores, memory, host_id))
        cur.execute("INSERT INTO vm_host_storage_pools (host_id, name, type, path, total, used)"
                    " VALUES (%s, 'default', 'dir', '/x', %s, 0)", (host_id, 1000 * GIB))
        return host_id

    return run_sync(dsn, make_thd)


def ask(hostname: str | None = None, cores: int = 1) -> ComposeAsk:
    return ComposeAsk(cores=cores, memory=GIB, pinned_cores=(), hugepages_backed=False,
                      architecture="amd64/generic", hostname=hostname, zone=None, pool=None,
                      storage=(StorageAsk("root", GIB),), interfaces=())


def test_hundred_concurrent_reservations_against_room_for_fifty(dsn, tmp_path):
    host_id = make_ready_host(dsn, tmp_path, cores=5, cpu_ratio=10.0)  # 5 × 10 = 50 vCPUs

    def attempt(i: int) -> str:
        try:
            run_sync(dsn, compose.reserve_thd, host_id, ask(f"race-{i}"), None, False)
            return "ok"
        except Conflict as e:
            assert "needs 1 cores, host has 0 free of 5×10" in str(e)
            return "refused"

    with concurrent.futures.ThreadPoolExecutor(max_workers=32) as pool:
        outcomes = list(pool.map(attempt, range(100)))
    assert outcomes.count("ok") == 50 and outcomes.count("refused") == 50

    def count_thd(cur):
        cur.execute("SELECT count(*), sum(cpu_count) FROM machines WHERE host_id = %s", (host_id,))
        return cur.fetchone()

    assert run_sync(dsn, count_thd) == (50, 50)


def test_duplicate_hostnames_and_unknown_zone_are_field_errors(dsn, tmp_path):
    host_id = make_ready_host(dsn, tmp_path, cores=4, cpu_ratio=1.0)
    run_sync(dsn, compose.reserve_thd, host_id, ask("db1"), None, False)
    with pytest.raises(FieldError) as e:
        run_sync(dsn, compose.reserve_thd, host_id, ask("db1"), None, False)
    assert e.value.field == "hostname" and 'Node with hostname "db1" already exists.' in e.value.message
    with pytest.raises(FieldError) as e:
        run_sync(dsn, compose.reserve_thd, host_id, attrs.evolve(ask("db2"), zone="mars"), None,
                 False)
    assert e.value.field == "zone"


def test_sriov_nics_take_a_vf_each_and_refuse_when_none_is_free(dsn, tmp_path):
    host_id = make_ready_host(dsn, tmp_path, cores=8, cpu_ratio=1.0)

    def add_pf_thd(cur):
        cur.execute("SELECT id FROM vlans WHERE vid = 0 ORDER BY id LIMIT 1")
        vlan_id = cur.fetchone()[0]
        cur.execute("INSERT INTO vm_host_interfaces (host_id, name, type, mac, sriov_max_vfs, vlan_id)"
                    " VALUES (%s, 'enp5s0f0', 'physical', '00:11:22:33:44:55', 2, %s)", (host_id, vlan_id))

    run_sync(dsn, add_pf_thd)
    with_nic = attrs.evolve(ask(), interfaces=tuple(parse_interfaces("eth0:vid=0")))
    for name in ("vf1", "vf2"):
        machine, request = run_sync(dsn, compose.reserve_thd, host_id, attrs.evolve(with_nic, hostname=name),
                                    None, False)
        assert [(n.nictype, n.parent) for n in request.nics] == [("sriov", "enp5s0f0")]
    with pytest.raises(Conflict, match="interface enp5s0f0 has 0 free SR-IOV VFs of 2; 1 needed"):
        run_sync(dsn, compose.reserve_thd, host_id, attrs.evolve(with_nic, hostname="vf3"), None, False)
    # Freeing one VM frees its VF.
    run_sync(dsn, machines.delete_thd, machine.id)
    run_sync(dsn, compose.reserve_thd, host_id, attrs.evolve(with_nic, hostname="vf3"), None, False)
