"""VM hosts end to end: a real region (with its local rack), real PostgreSQL, real private LXD."""

from __future__ import annotations

import http.server
import socket
import subprocess
import threading
import time

import pytest

from common import tls
from region.db import secrets
from region.db.pool import run_sync
from tests.conftest import make_user, region_box
from tests.fixtures.daemons import http_get, wait_for
from tests.fixtures.http import Api
from tests.fixtures.lxd import lxc_json, unique
from tests.fixtures.postgres import pg_dump


def sql(dsn: str, query: str, *args):
    def q_thd(cur):
        cur.execute(query, args)
        return cur.fetchall() if cur.description else None

    return run_sync(dsn, q_thd)


@pytest.fixture
def api(lxd_api) -> Api:
    return lxd_api


def add_trusted_host(api, lxd_server, **extra) -> dict:
    """Register with the LXD trust password (the quickest way to a ready host)."""
    data = {"type": "lxd", "power_address": lxd_server.address, "name": unique("h"),
            "project": unique("p"), "password": lxd_server.trust_password, **extra}
    reply = api.post("vm-hosts/", data=data)
    assert reply.status == 200, reply.text
    host = reply.json()
    assert host["state"] == "ready", host["state_message"]
    return host


def test_generated_certificate_two_step_registration(api, lxd_server, lxd_region, dsn):
    project = unique("two-step")
    reply = api.post("vm-hosts/", data={"type": "lxd", "power_address": lxd_server.address,
                                        "name": "twostep", "project": project})
    assert reply.status == 200, reply.text
    host = reply.json()
    assert host["state"] == "awaiting-trust"
    hint = host["state_message"]
    url = lxd_region.url + "vmhost-certificate/twostep"
    assert f"curl -s {url} | lxc config trust add -" in hint
    assert "vmyard vm-host refresh twostep" in hint
    assert host["storage_pools"] == [] and host["server_fingerprint"] is None
    # Refreshing before trust: 503 with the same instructions, still awaiting trust.
    early = api.post(f"vm-hosts/{host['id']}/", data={"op": "refresh"})
    assert early.status == 503 and f"curl -s {url} | lxc config trust add -" in early.text
    # Run the LXD 5.0 form of the printed command against our private LXD.
    command = next(line.strip() for line in hint.splitlines() if "-o /tmp/vmyard.crt" in line)
    subprocess.run(["bash", "-c", command], env=lxd_server._env, check=True, timeout=60)
    cert = http_get(url)[1].decode()
    fingerprints = {c["fingerprint"] for c in lxc_json(lxd_server, "/1.0/certificates?recursion=1")}
    assert tls.cert_fingerprint(cert) in fingerprints

    ready = api.post(f"vm-hosts/{host['id']}/", data={"op": "refresh"})
    assert ready.status == 200, ready.text
    host = ready.json()
    assert host["state"] == "ready" and host["state_message"] == ""
    assert host["server_fingerprint"] == tls.cert_fingerprint(lxd_server.server_cert_pem)
    assert host["version"] and host["architectures"] and host["total"]["cores"] > 0
    # Storage pools exactly as LXD reports them.
    usage = lxc_json(lxd_server, "/1.0/storage-pools/default/resources")["space"]
    [pool] = host["storage_pools"]
    assert (pool["name"], pool["type"], pool["default"]) == ("default", "dir", True)
    assert pool["path"] == str(lxd_server.lxd_dir / "storage-pools" / "default")
    assert pool["total"] == usage["total"] and pool["lxd_available"] == pool["total"] - pool["lxd_used"]
    assert abs(pool["lxd_used"] - usage["used"]) < 64 * 1024 * 1024  # live figure; other tests write too
    assert host["total"]["local_storage"] == usage["total"]
    # The project was created; the host's NUMA nodes and projects are recorded.
    assert lxc_json(lxd_server, f"/1.0/projects/{project}")["name"] == project
    resources = api.get(f"vm-hosts/{host['id']}/", query={"op": "resources"}).json()
    lxd_resources = lxc_json(lxd_server, "/1.0/resources")
    assert sum(n["cores"]["total"] for n in resources["numa"]) == lxd_resources["cpu"]["total"]
    assert sum(n["memory"]["total"] for n in resources["numa"]) == lxd_resources["memory"]["total"] // 2**20
    assert {r[0] for r in sql(dsn, "SELECT name FROM vm_host_projects WHERE host_id = %s", host["id"])} \
        >= {"default", project}


def test_trust_password_and_token_are_used_once_and_never_stored(api, lxd_server, lxd_region, dsn):
    with_password = add_trusted_host(api, lxd_server)
    token = lxd_server.trust_token(unique("tok"))
    reply = api.post("pods/", data={"type": "lxd", "power_address": lxd_server.address, "name": unique("t"),
                                    "project": unique("p"), "trust_token": token})
    assert reply.status == 200 and reply.json()["state"] == "ready", reply.text
    # The token was single use: LXD no longer lists it.
    assert token not in lxd_server.lxc("config", "trust", "list-tokens", "--format", "csv")
    # The password also works through `password` on pods/ and update.
    params = api.get(f"vm-hosts/{with_password['id']}/", query={"op": "parameters"}).json()
    assert set(params) == {"power_address", "project", "certificate", "key"}
    dump = pg_dump(dsn)
    logs = lxd_region.output()
    for secret in (lxd_server.trust_password, token):
        assert secret not in dump
        assert secret not in logs
    # The per-host key is only in `secrets`, encrypted.
    assert params["key"].splitlines()[1] not in dump


@pytest.mark.parametrize("case", ["wrong-password", "unreachable", "not-lxd"])
def test_failed_first_discovery_stores_nothing(api, lxd_server, lxd_region, dsn, case, request):
    data = {"type": "lxd", "power_address": lxd_server.address, "name": unique("bad"), "project": unique("p")}
    if case == "wrong-password":
        data["password"] = "not-the-password"
        field, words = "password", "rejected the trust password"
    elif case == "unreachable":
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            data["power_address"] = f"127.0.0.1:{s.getsockname()[1]}"  # nothing listens there
        field, words = "power_address", "cannot reach"
    else:
        web = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
        threading.Thread(target=web.serve_forever, daemon=True).start()
        request.addfinalizer(web.shutdown)
        data["power_address"] = f"127.0.0.1:{web.server_address[1]}"  # a plain web server
        field, words = "power_address", "not an LXD API endpoint"
    before = sql(dsn, "SELECT count(*) FROM vm_hosts")[0][0]
    reply = api.post("vm-hosts/", data=data)
    assert reply.status == 400, reply.text
    assert words in " ".join(reply.json()[field])
    assert sql(dsn, "SELECT count(*) FROM vm_hosts")[0][0] == before
    assert "not-the-password" not in reply.text


def test_pinned_server_certificate_mismatch_keeps_data_until_trusted_again(api, lxd_server, dsn):
    host = add_trusted_host(api, lxd_server)
    real = host["server_fingerprint"]
    sql(dsn, "UPDATE vm_hosts SET server_fingerprint = %s WHERE id = %s", "ab" * 32, host["id"])
    reply = api.post(f"vm-hosts/{host['id']}/", data={"op": "refresh"})
    assert reply.status == 503
    assert "TLS certificate changed" in reply.text and real in reply.text and "trust-server" in reply.text
    after = api.get(f"vm-hosts/{host['id']}/").json()
    assert after["state"] == "error" and "certificate changed" in after["state_message"]
    # A failed refresh keeps the last known data.
    assert after["storage_pools"] == host["storage_pools"] or \
        [p["name"] for p in after["storage_pools"]] == [p["name"] for p in host["storage_pools"]]
    assert after["total"] == host["total"] and after["version"] == host["version"]
    # Pinning an explicit wrong fingerprint fails; the right one (or none: TOFU) restores it.
    wrong = api.post(f"vm-hosts/{host['id']}/", data={"op": "trust_server", "fingerprint": "cd" * 32})
    assert wrong.status == 503
    bad = api.post(f"vm-hosts/{host['id']}/", data={"op": "trust_server", "fingerprint": "xyz"})
    assert bad.status == 400 and "fingerprint" in bad.json()
    ok = api.post(f"vm-hosts/{host['id']}/", data={"op": "trust_server", "fingerprint": real.upper()})
    assert ok.status == 200, ok.text
    assert ok.json()["state"] == "ready" and ok.json()["server_fingerprint"] == real


def test_existing_vms_are_imported_untouched_and_decompose_deletes_them(api, lxd_server, dsn):
    project = unique("vms")
    lxd_server.lxc("project", "create", project)
    for name in ("old1", "old2"):
        lxd_server.lxc("init", "--empty", "--vm", name, "--project", project, "-s", "default",
                       "-c", "limits.cpu=2", "-c", "limits.memory=512MiB", "-c", "security.secureboot=false")
    before = {n: lxc_json(lxd_server, f"/1.0/instances/{n}?project={project}") for n in ("old1", "old2")}

    host = add_trusted_host(api, lxd_server, project=project)
    rows = sql(dsn, "SELECT instance_name, origin, cpu_count, memory, power_state, zone_id FROM machines"
                    " WHERE host_id = %s ORDER BY instance_name", host["id"])
    assert rows == [("old1", "discovered", 2, 512 * 2**20, "off", host["zone"]["id"]),
                    ("old2", "discovered", 2, 512 * 2**20, "off", host["zone"]["id"])]
    assert host["used"]["cores"] == 4 and host["used"]["memory"] == 1024
    for n in ("old1", "old2"):
        assert lxc_json(lxd_server, f"/1.0/instances/{n}?project={project}") == before[n]

    # A VM deleted behind our back disappears from the records on refresh.
    lxd_server.lxc("delete", "old2", "--project", project)
    assert api.post(f"vm-hosts/{host['id']}/", data={"op": "refresh"}).status == 200
    assert [r[0] for r in sql(dsn, "SELECT instance_name FROM machines WHERE host_id = %s", host["id"])] == ["old1"]

    reply = api.delete(f"vm-hosts/{host['id']}/", query={"decompose": "true"})
    assert reply.status == 204, reply.text
    assert lxc_json(lxd_server, f"/1.0/instances?project={project}") == []
    assert sql(dsn, "SELECT count(*) FROM machines")[0][0] == 0


def test_delete_without_decompose_leaves_vms(api, lxd_server, dsn):
    project = unique("keep")
    lxd_server.lxc("project", "create", project)
    lxd_server.lxc("init", "--empty", "--vm", "stay", "--project", project, "-s", "default", "-c", "security.secureboot=false")
    host = add_trusted_host(api, lxd_server, project=project)
    assert api.delete(f"vm-hosts/{host['id']}/").status == 204
    assert lxc_json(lxd_server, f"/1.0/instances/stay?project={project}")["name"] == "stay"
    assert sql(dsn, "SELECT count(*) FROM machines")[0][0] == 0
    lxd_server.lxc("delete", "stay", "--project", project)


def test_update_tags_parameters_and_permissions(api, lxd_server, lxd_region, dsn):
    host = add_trusted_host(api, lxd_server, tags="x")
    url = f"vm-hosts/{host['id']}/"
    assert api.post("zones/", data={"name": "lab"}).status == 200
    assert api.post("resourcepools/", data={"name": "gpu"}).status == 200
    reply = api.put(url, data={"name": "renamed", "zone": "lab", "pool": "gpu", "cpu_over_commit_ratio": "2.5",
                               "memory_over_commit_ratio": "0.5", "default_macvlan_mode": "vepa",
                               "default_storage_pool": "default", "tags": "a,b"})
    assert reply.status == 200, reply.text
    updated = reply.json()
    assert (updated["name"], updated["zone"]["name"], updated["pool"]["name"]) == ("renamed", "lab", "gpu")
    assert updated["cpu_over_commit_ratio"] == 2.5 and updated["memory_over_commit_ratio"] == 0.5
    assert updated["default_macvlan_mode"] == "vepa" and updated["tags"] == ["a", "b"]
    for bad, field in [({"cpu_over_commit_ratio": "11"}, "cpu_over_commit_ratio"),
                       ({"default_storage_pool": "nope"}, "default_storage_pool"),
                       ({"zone": "mars"}, "zone"), ({"type": "virsh"}, "type"),
                       ({"default_macvlan_mode": "weird"}, "default_macvlan_mode")]:
        reply = api.put(url, data=bad)
        assert reply.status == 400 and field in reply.json(), (bad, reply.text)
    assert api.get(url).json()["name"] == "renamed"  # nothing changed by the bad updates

    assert api.post(url, data={"op": "add_tag", "tag": "c"}).json()["tags"] == ["a", "b", "c"]
    assert api.post(url, data={"op": "add_tag", "tag": "c"}).json()["tags"] == ["a", "b", "c"]
    assert api.post(url, data={"op": "add_tag", "tag": "c,d"}).status == 400
    assert api.post(url, data={"op": "add_tag"}).text == "No provided tag!"
    assert api.post(url, data={"op": "remove_tag", "tag": "a"}).json()["tags"] == ["b", "c"]

    # Both certificate and key empty: a new pair, which LXD does not trust yet.
    old_cert = api.get(url, query={"op": "parameters"}).json()["certificate"]
    reply = api.put(url, data={"certificate": "", "key": ""})
    assert reply.status == 200 and reply.json()["state"] == "awaiting-trust"
    new_cert = http_get(lxd_region.url + "vmhost-certificate/renamed")[1].decode()
    assert new_cert != old_cert
    # ...until a password is given with the next update.
    reply = api.put(url, data={"password": lxd_server.trust_password})
    assert reply.json()["state"] == "ready", reply.text

    alice = Api(lxd_region.api, make_user(dsn, region_box(lxd_region), "alice", admin=False))
    assert alice.get(url).status == 200
    assert alice.get(url, query={"op": "resources"}).status == 200
    for call in (lambda: alice.get(url, query={"op": "parameters"}), lambda: alice.put(url, data={"name": "x"}),
                 lambda: alice.post(url, data={"op": "refresh"}), lambda: alice.delete(url)):
        assert call().status == 403


def test_any_rack_serves_any_host(start_region, start_rack, lxd_server, dsn, tmp_path):
    region = start_region("tworacks", extra=["--vm-host-refresh-interval", "0"])
    api = Api(region.api, make_user(dsn, region_box(region), "admin", admin=True))
    secret = tmp_path / "enrol.secret"
    secret.write_text(run_sync(dsn, secrets.get_thd, region_box(region), secrets.ENROLLMENT_SECRET) + "\n")
    first = start_rack(region, secret, name="rack-a")
    wait_for(lambda: len(api.get("rackcontrollers/").json()) == 1, 60, "rack a to connect", first.proc, first.log)
    host = add_trusted_host(api, lxd_server)
    first.stop()
    second = start_rack(region, secret, name="rack-b")  # enrolled after the host was added
    wait_for(lambda: any(r["system_id"] == second.system_id and r["status"] == "connected"
                         for r in api.get("rackcontrollers/").json()), 60, "rack b to connect",
             second.proc, second.log)
    reply = api.post(f"vm-hosts/{host['id']}/", data={"op": "refresh"})
    assert reply.status == 200, reply.text
    assert reply.json()["state"] == "ready"
    assert "discovering VM host" not in first.output().split("Received SIGTERM")[-1]  # rack a was not used
    assert second.system_id != first.system_id


def test_periodic_refresh_completes_registration(start_region, lxd_server, dsn):
    region = start_region("periodic", local_rack=True, extra=["--vm-host-refresh-interval", "1"])
    api = Api(region.api, make_user(dsn, region_box(region), "admin", admin=True))
    host = api.post("vm-hosts/", data={"type": "lxd", "power_address": lxd_server.address,
                                       "name": unique("auto"), "project": unique("p")}).json()
    assert host["state"] == "awaiting-trust"
    lxd_server.trust_add(http_get(region.url + "vmhost-certificate/" + host["name"])[1].decode(), unique("auto"))
    deadline = time.monotonic() + 30
    while api.get(f"vm-hosts/{host['id']}/").json()["state"] != "ready":
        assert time.monotonic() < deadline, "the periodic refresh did not complete the registration"
        time.sleep(0.5)
    refreshed = api.get(f"vm-hosts/{host['id']}/").json()
    assert refreshed["storage_pools"] and refreshed["last_refresh"]


def test_decompose_that_cannot_delete_a_vm_keeps_the_host_and_names_it(api, lxd_server, dsn):
    project = unique("protect")
    lxd_server.lxc("project", "create", project)
    lxd_server.lxc("init", "--empty", "--vm", "guarded", "--project", project, "-s", "default",
                   "-c", "security.secureboot=false", "-c", "security.protection.delete=true")
    lxd_server.lxc("init", "--empty", "--vm", "plain", "--project", project, "-s", "default",
                   "-c", "security.secureboot=false")
    host = add_trusted_host(api, lxd_server, project=project)
    reply = api.delete(f"vm-hosts/{host['id']}/", query={"decompose": "true"})
    assert reply.status == 503
    assert "guarded" in reply.text and "could not be deleted" in reply.text
    # The deletable VM is gone (in LXD and in the records); the host and the guarded VM stay.
    assert [i["name"] for i in lxc_json(lxd_server, f"/1.0/instances?recursion=1&project={project}")] == ["guarded"]
    assert [r[0] for r in sql(dsn, "SELECT instance_name FROM machines WHERE host_id = %s", host["id"])] == ["guarded"]
    assert api.get(f"vm-hosts/{host['id']}/").status == 200
    lxd_server.lxc("config", "unset", "guarded", "security.protection.delete", "--project", project)
    assert api.delete(f"vm-hosts/{host['id']}/", query={"decompose": "true"}).status == 204
    assert lxc_json(lxd_server, f"/1.0/instances?project={project}") == []


def test_pools_in_use_cannot_be_deleted_zones_hand_theirs_to_the_default(api, lxd_server, dsn):
    assert api.post("zones/", data={"name": "rack9"}).status == 200
    assert api.post("resourcepools/", data={"name": "team9"}).status == 200
    host = add_trusted_host(api, lxd_server, zone="rack9", pool="team9")
    made = api.post(f"vm-hosts/{host['id']}/", data={"op": "compose", "storage": "root:1", "pool": "team9"})
    assert made.status == 200, made.text
    pool = api.delete("resourcepool/team9/")
    assert pool.status == 400 and "1 VM host and 1 machine" in pool.text
    assert api.get(f"vm-hosts/{host['id']}/").json()["pool"]["name"] == "team9"  # nothing changed
    assert api.delete("zones/rack9/").status == 204  # as MAAS: its host and machine move to the default
    assert api.get(f"vm-hosts/{host['id']}/").json()["zone"]["name"] == "default"
    assert api.delete(f"machines/{made.json()['system_id']}/").status == 204
    assert api.delete(f"vm-hosts/{host['id']}/").status == 204
    assert api.delete("resourcepool/team9/").status == 204
