"""Where MAAS's own API tests and vmyard used to differ (issue 13, "MAAS fidelity"), over a real region.

The VM host and its machine are inserted through region/db (no LXD is needed to read them back);
what needs a real host (storage pools, compose) is in tests/test_compose_lxd.py.
"""

from __future__ import annotations

import shutil
import socket

import psycopg2
import pytest

from common import tls
from region.db import hosts, machines, migrate, named, reservations
from region.db.pool import run_sync
from tests.conftest import region_box
from tests.fixtures.daemons import http_get
from tests.fixtures.lxd import unique
from tests.test_vmhosts_lxd import add_trusted_host

GB = 1000**3
RENUMBERING = 16  # the migration that makes the default resource pool id 0


@pytest.fixture
def host_with_machine(region, dsn, admin_api):
    """A VM host with one ready machine, both in a zone "lab"; their ids and the machine's system_id."""
    box = region_box(region)
    zone = admin_api.post("zones/", data={"name": "lab"}).json()

    def populate_thd(cur):
        pool = named.get_default_thd(cur, named.RESOURCE_POOLS)
        host = hosts.create_thd(cur, box, hosts.NewHost("lxd1", "lxd", "10.0.0.1:8443", "vmyard", "CERT", "KEY",
                                                        zone["id"], pool.id, [], 1.0, 1.0, None))
        reservations.reserve_thd(cur, machines.NewMachine(
            "vm1", host.id, "vmyard", "amd64/generic", 1, 1024**3, [], False, [], zone["id"], pool.id, None,
            False, [], [], []))
        cur.execute("UPDATE machines SET status = 'ready' WHERE hostname = 'vm1' RETURNING system_id")
        return host.id, cur.fetchone()[0]

    host_id, system_id = run_sync(dsn, populate_thd)
    return host_id, system_id


def test_deleting_a_zone_moves_its_hosts_and_machines_to_the_default_and_is_idempotent(admin_api,
                                                                                      host_with_machine):
    host_id, system_id = host_with_machine
    assert admin_api.get(f"machines/{system_id}/").json()["zone"]["name"] == "lab"
    for _ in range(2):  # MAAS's ZoneHandler.delete answers 204 for a zone that is already gone
        deleted = admin_api.delete("zones/lab/")
        assert deleted.status == 204, deleted.text
    assert admin_api.get(f"machines/{system_id}/").json()["zone"]["name"] == "default"
    assert admin_api.get(f"vm-hosts/{host_id}/").json()["zone"]["name"] == "default"
    assert admin_api.get("zones/lab/").status == 404


def test_a_resource_pool_in_use_is_still_refused(admin_api, host_with_machine, dsn):
    """MAAS refuses to delete a pool that holds machines ("Pool has machines in it")."""
    pool = admin_api.post("resourcepools/", data={"name": "gpu"}).json()
    run_sync(dsn, lambda cur: cur.execute("UPDATE machines SET pool_id = %s", (pool["id"],)))
    assert admin_api.delete(f"resourcepool/{pool['id']}/").status == 400
    assert admin_api.get(f"resourcepool/{pool['id']}/").status == 200


def test_zone_list_is_sorted_by_name_ignoring_case(admin_api):
    for name in ("b-row", "Annex", "c-row", "attic"):
        assert admin_api.post("zones/", data={"name": name}).status == 200
    assert [z["name"] for z in admin_api.get("zones/").json()] == ["Annex", "attic", "b-row", "c-row", "default"]


def test_machine_pod_uri_and_domain(admin_api, user_api, host_with_machine):
    host_id, system_id = host_with_machine
    machine = admin_api.get(f"machines/{system_id}/").json()
    assert machine["pod"]["resource_uri"] == f"/MAAS/api/2.0/pods/{host_id}/"
    assert admin_api.get(machine["pod"]["resource_uri"].removeprefix("/MAAS/api/2.0/")).status == 200
    default = {"id": 0, "name": "maas", "ttl": None, "authoritative": True, "resource_record_count": 0,
               "is_default": True, "resource_uri": "/MAAS/api/2.0/domains/0/"}
    assert machine["domain"] == default
    assert machine["fqdn"] == f"{machine['hostname']}.{machine['domain']['name']}" == "vm1.maas"
    assert user_api.get("domains/").json() == [default]
    assert user_api.get("domains/0/").json() == default
    assert user_api.get("domains/maas/").json() == default
    missing = user_api.get("domains/7/")
    assert missing.status == 404 and "No domain matches the given query." in missing.text
    assert admin_api.put("domains/0/", data={"ttl": "30"}).status == 405


def test_generated_certificate_cn_without_a_name_is_the_controller_alone(lxd_region, lxd_api, lxd_server):
    """MAAS's get_maas_client_cn(None): the bare controller name when the request names no host."""
    project = unique("cn")
    reply = lxd_api.post("vm-hosts/", data={"type": "lxd", "power_address": lxd_server.address, "project": project})
    assert reply.status == 200, reply.text
    host = reply.json()
    cert = tls.load_cert(http_get(f"{lxd_region.url}vmhost-certificate/{host['name']}")[1].decode())
    assert cert.subject.rfc4514_string() == f"CN={socket.gethostname()[:32]}"
    # Both empty on update: a new pair, named after the host as MAAS's form keeps the stored name.
    assert lxd_api.put(f"vm-hosts/{host['id']}/", data={"certificate": "", "key": ""}).status == 200
    renewed = tls.load_cert(http_get(f"{lxd_region.url}vmhost-certificate/{host['name']}")[1].decode())
    assert renewed.subject.rfc4514_string() == f"CN={host['name']}@{socket.gethostname()[:32]}"


def test_power_pass_is_the_lxd_trust_password(lxd_api, lxd_server):
    """python-libmaas's pods.create() sends the secret only as power_pass."""
    created = lxd_api.post("pods/", data={"type": "lxd", "power_address": lxd_server.address, "name": unique("pp"),
                                          "project": unique("pp"), "power_pass": lxd_server.trust_password})
    assert created.status == 200 and created.json()["state"] == "ready", created.text
    untrusted = lxd_api.post("vm-hosts/", data={"type": "lxd", "power_address": lxd_server.address,
                                                "name": unique("pp"), "project": unique("pp")}).json()
    assert untrusted["state"] == "awaiting-trust"
    updated = lxd_api.put(f"pods/{untrusted['id']}/", data={"power_pass": lxd_server.trust_password})
    assert updated.status == 200 and updated.json()["state"] == "ready", updated.text


def test_storage_pool_used_is_what_vm_disks_take(lxd_api, lxd_server):
    """MAAS: a pool's `used` is the sum of the tracked VMs' disks on it (0 on a fresh host) and
    `available = total - used`; the host's `local_storage` follows the same rule over every pool."""
    host = add_trusted_host(lxd_api, lxd_server)
    [pool] = host["storage_pools"]
    assert (pool["used"], pool["available"]) == (0, pool["total"])
    assert pool["lxd_available"] == pool["total"] - pool["lxd_used"] and pool["lxd_used"] > 0
    assert host["total"]["local_storage"] == pool["total"] and host["used"]["local_storage"] == 0
    composed = lxd_api.post(f"vm-hosts/{host['id']}/", data={"op": "compose", "storage": "root:1,data:2"})
    assert composed.status == 200, composed.text
    after = lxd_api.get(f"vm-hosts/{host['id']}/").json()
    [pool] = after["storage_pools"]
    assert (pool["used"], pool["available"]) == (3 * GB, pool["total"] - 3 * GB)
    assert after["used"]["local_storage"] == 3 * GB
    assert after["available"]["local_storage"] == after["total"]["local_storage"] - 3 * GB
    assert lxd_api.delete(f"machines/{composed.json()['system_id']}/").status == 204


def test_compose_beyond_the_physical_host_is_a_400_whatever_the_ratio(lxd_api, lxd_server):
    """MAAS's ComposeMachineForm caps cores and memory at the host's own (max_value); a 400 per field."""
    host = add_trusted_host(lxd_api, lxd_server, cpu_over_commit_ratio="10", memory_over_commit_ratio="10")
    cores, memory = host["total"]["cores"], host["total"]["memory"]
    reply = lxd_api.post(f"vm-hosts/{host['id']}/", data={"op": "compose", "cores": str(cores + 1),
                                                         "memory": str(memory + 1), "storage": "root:1"})
    assert reply.status == 400, reply.text
    assert reply.json() == {"cores": [f"Ensure this value is less than or equal to {cores}."],
                            "memory": [f"Ensure this value is less than or equal to {memory}."]}
    assert lxd_api.get("machines/").json() == []


def test_default_resource_pool_is_id_0_and_new_pools_are_numbered_above(admin_api, host_with_machine):
    host_id, system_id = host_with_machine
    default = admin_api.get("resourcepool/0/").json()
    assert default == {"id": 0, "name": "default", "description": "Default pool",
                       "resource_uri": "/MAAS/api/2.0/resourcepool/0/"}
    assert admin_api.get(f"machines/{system_id}/").json()["pool"] == default
    assert admin_api.get(f"vm-hosts/{host_id}/").json()["pool"] == default
    assert admin_api.post("resourcepools/", data={"name": "gpu"}).json()["id"] > 0


def test_renumbering_migration_carries_existing_references(pg_cluster, tmp_path):
    """A database made before 0016, with a host and a machine in the default pool (then id 1)."""
    dsn = pg_cluster.new_database(migrated=False)
    for path in sorted(migrate.MIGRATIONS_DIR.glob("*.sql"))[:RENUMBERING - 1]:
        shutil.copy(path, tmp_path)
    conn = psycopg2.connect(dsn)
    try:
        migrate.migrate_connection(conn, tmp_path)
    finally:
        conn.close()

    def populate_thd(cur):
        cur.execute("INSERT INTO vm_hosts (name, type, power_address, zone_id, pool_id)"
                    " VALUES ('h', 'lxd', '10.0.0.1', 1, 1) RETURNING id")
        cur.execute("INSERT INTO machines (system_id, hostname, host_id, project, instance_name, origin, cpu_count,"
                    " memory, zone_id, pool_id) VALUES ('abc123', 'vm', %s, 'p', 'vm', 'composed', 1, 1, 1, 1)",
                    (cur.fetchone()[0],))

    run_sync(dsn, populate_thd)
    assert migrate.migrate(dsn) == list(range(RENUMBERING, migrate.head_version() + 1))

    def references_thd(cur):
        cur.execute("SELECT (SELECT pool_id FROM vm_hosts), (SELECT pool_id FROM machines),"
                    " (SELECT id FROM resource_pools WHERE is_default)")
        return cur.fetchone()

    assert run_sync(dsn, references_thd) == (0, 0, 0)
