"""vm-hosts/ registration on the region side: identities, certificate URL, validation."""

from __future__ import annotations

import psycopg2
import pytest
from cryptography.hazmat.primitives import serialization

from common import tls
from region.vmhost_address import lxd_address_problem
from region.db import hosts, named
from region.db.pool import run_sync
from tests.conftest import region_box
from tests.fixtures.daemons import http_get

EXPECTED_KEYS = {  # the MAAS keys plus vmyard's state
    "id", "name", "type", "version", "tags", "architectures", "capabilities", "total", "used",
    "available", "zone", "pool", "cpu_over_commit_ratio", "memory_over_commit_ratio",
    "default_macvlan_mode", "storage_pools", "host", "resource_uri", "state", "state_message",
}


def _count_hosts(dsn) -> tuple[int, int]:
    conn = psycopg2.connect(dsn)
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM vm_hosts")
        hosts = cur.fetchone()[0]
        cur.execute("SELECT count(*) FROM secrets WHERE name LIKE 'vm-host-key:%'")
        keys = cur.fetchone()[0]
    conn.close()
    return hosts, keys


def test_generated_identity_and_anonymous_certificate_url(lxd_region, lxd_api, lxd_server, dsn):
    region, admin_api = lxd_region, lxd_api
    reply = admin_api.post("vm-hosts/", data={"type": "lxd", "power_address": lxd_server.address,
                                              "name": "lab1", "project": "lab", "tags": "a,b"})
    assert reply.status == 200, reply.text
    host = reply.json()
    assert EXPECTED_KEYS <= set(host)
    assert host["state"] == "awaiting-trust"
    assert host["tags"] == ["a", "b"]
    assert host["cpu_over_commit_ratio"] == 1.0 and isinstance(host["cpu_over_commit_ratio"], float)
    assert host["zone"]["name"] == "default" and host["pool"]["name"] == "default"
    assert host["resource_uri"] == f"/MAAS/api/2.0/vm-hosts/{host['id']}/"
    assert admin_api.get(f"pods/{host['id']}/").json()["resource_uri"] == f"/MAAS/api/2.0/pods/{host['id']}/"

    status, body = http_get(region.url + "vmhost-certificate/lab1")
    assert status == 200
    cert = tls.load_cert(body.decode())
    assert "lab1@" in cert.subject.rfc4514_string()
    assert http_get(region.url + "vmhost-certificate/nope")[0] == 404
    # The private key is stored encrypted, never in the row.
    assert _count_hosts(dsn) == (1, 1)
    assert admin_api.delete(f"vm-hosts/{host['id']}/").status == 204
    assert _count_hosts(dsn) == (0, 0)


def test_bring_your_own_pair(lxd_api, lxd_server):
    admin_api = lxd_api
    pair = tls.make_self_signed("byo", kind="ec")
    lxd_server.trust_add(pair.cert_pem, "byo-test")
    reply = admin_api.post("vm-hosts/", data={"type": "lxd", "power_address": lxd_server.address, "name": "byo",
                                              "project": "byo", "certificate": pair.cert_pem, "key": pair.key_pem})
    assert reply.status == 200, reply.text
    assert reply.json()["state"] == "ready"  # LXD already trusted the imported certificate


@pytest.mark.parametrize("case,field,message", [
    ("passphrase", "key", "passphrase"),
    ("mismatch", "key", "does not match"),
    ("garbage", "certificate", "not a PEM certificate"),
    ("only-cert", "key", "together"),
])
def test_bad_certificates_are_400_and_store_nothing(admin_api, dsn, case, field, message):
    pair = tls.make_self_signed("x", kind="ec")
    key = pair.key_pem
    cert = pair.cert_pem
    if case == "passphrase":
        key = tls.load_key(pair.key_pem).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"pw")).decode()
    elif case == "mismatch":
        key = tls.make_self_signed("y", kind="ec").key_pem
    elif case == "garbage":
        cert = "-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n"
    data = {"type": "lxd", "power_address": "127.0.0.1:1", "certificate": cert}
    if case != "only-cert":
        data["key"] = key
    reply = admin_api.post("vm-hosts/", data=data)
    assert reply.status == 400
    errors = reply.json()
    assert field in errors and message in " ".join(errors[field])
    assert _count_hosts(dsn) == (0, 0)


@pytest.mark.parametrize("value,message", [("10.5", "less than or equal to 10"),
                                           ("-1", "greater than or equal to 0"), ("lots", "number")])
def test_overcommit_bounds(admin_api, value, message):
    reply = admin_api.post("vm-hosts/", data={"type": "lxd", "power_address": "h:1",
                                              "cpu_over_commit_ratio": value})
    assert reply.status == 400
    assert message in reply.json()["cpu_over_commit_ratio"][0]


def test_required_fields_unknown_zone_and_duplicates(lxd_api, lxd_server):
    admin_api = lxd_api
    missing = admin_api.post("vm-hosts/", data={})
    assert missing.status == 400 and set(missing.json()) == {"type", "power_address"}
    assert admin_api.post("vm-hosts/", data={"type": "xen", "power_address": "h"}).status == 400
    zone = admin_api.post("vm-hosts/", data={"type": "lxd", "power_address": "h:1", "zone": "mars"})
    assert zone.status == 400 and "zone" in zone.json()
    first = {"type": "lxd", "power_address": lxd_server.address, "name": "d", "project": "dup"}
    assert admin_api.post("vm-hosts/", data=first).status == 200
    dup = admin_api.post("vm-hosts/", data={**first, "project": "other"})
    assert dup.status == 400 and "name" in dup.json()
    same = admin_api.post("vm-hosts/", data={**first, "name": "d2"})
    assert same.status == 400 and "already exist" in same.text


def test_non_admin_cannot_add_hosts(user_api):
    assert user_api.post("vm-hosts/", data={"type": "lxd", "power_address": "h:1"}).status == 403
    assert user_api.get("vm-hosts/").json() == []


@pytest.mark.parametrize("address", ["h", "h:8443", "https://h:8443/", "10.0.0.1:1", "lxd.example.com:65535",
                                     "[::1]", "[::1]:8443", "[fe80::1%eth0]:8443"])
def test_lxd_addresses_accepted(address):
    assert lxd_address_problem(address) is None


@pytest.mark.parametrize("address,message", [
    ("127.0.0.1:99999", "port from 1 to 65535"), ("h:0", "port from 1 to 65535"), ("h:", "port from 1 to 65535"),
    ("h:x", "port from 1 to 65535"), ("::1", "IPv6 address in brackets"), ("[::1", "Close"),
    ("[zz]:1", "IPv6 address between the brackets"), ("[::1]x", "[address]:port"), ("http://h", "https"),
    ("u@h:1", "host and port only"), (":8443", "host name or IP address"), ("a b:1", "host name or IP address")])
def test_lxd_addresses_refused(address, message):
    assert message in lxd_address_problem(address)


def test_bad_power_address_is_a_400_on_create_and_update(region, admin_api, dsn):
    def host_thd(cur):
        zone, pool = named.get_default_thd(cur, named.ZONES), named.get_default_thd(cur, named.RESOURCE_POOLS)
        return hosts.create_thd(cur, region_box(region), hosts.NewHost(
            "lxd1", "lxd", "10.0.0.1:8443", "default", "CERT", "KEY", zone.id, pool.id, [], 1.0, 1.0, None)).id

    host_id = run_sync(dsn, host_thd)
    created = admin_api.post("vm-hosts/", data={"type": "lxd", "power_address": "127.0.0.1:99999"})
    updated = admin_api.put(f"vm-hosts/{host_id}/", data={"power_address": "[::1]:0"})
    for reply in (created, updated):
        assert (reply.status, list(reply.json())) == (400, ["power_address"]), reply.text
        assert "port from 1 to 65535" in reply.json()["power_address"][0]
    assert admin_api.get(f"vm-hosts/{host_id}/").json()["power_address"] == "10.0.0.1:8443"
