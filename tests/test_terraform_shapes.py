"""The requests terraform-provider-maas sends (through gomaasclient/gomaasapi), replayed byte for byte
against a real region and LXD, with the reply types Terraform's Go structs decode checked.

Shapes (shared/spec/clients.md §3): the OAuth header has its pairs in random order with
url.QueryEscape'd values; a POST always carries `?op=` in the URL (empty for create) and an
urlencoded body; a GET's query is sorted by key; PUT bodies are urlencoded; a DELETE has no body
and `Content-Length: 0`.  Any non-2xx reply is an error to Terraform.
"""

from __future__ import annotations

import http.client
import random
import secrets
import time
import urllib.parse

import attrs

from tests.conftest import make_user, region_box
from tests.fixtures.daemons import http_get
from tests.fixtures.http import Reply
from tests.fixtures.lxd import lxc_json, lxc_missing, unique
from tests.test_compose_lxd import bridges  # noqa: F401  (fixture)


@attrs.define
class GoClient:
    """What gomaasapi's Client puts on the wire."""

    base: str  # http://127.0.0.1:PORT/MAAS/api/2.0/
    apikey: str

    def _auth(self) -> str:
        consumer, token, secret = self.apikey.split(":")
        pairs = {"realm": "MAAS API", "oauth_consumer_key": consumer, "oauth_token": token,
                 "oauth_signature_method": "PLAINTEXT", "oauth_signature": f"&{secret}",
                 "oauth_timestamp": str(int(time.time())), "oauth_nonce": secrets.token_hex(16),
                 "oauth_version": "1.0"}
        items = [f'{k}="{urllib.parse.quote_plus(v)}"' for k, v in pairs.items()]
        random.shuffle(items)  # a Go map's order
        return "OAuth " + ", ".join(items)

    def _send(self, method: str, path_and_query: str, body: bytes | None, headers: dict[str, str]) -> Reply:
        url = urllib.parse.urlsplit(self.base)
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=120)
        try:
            conn.request(method, url.path + path_and_query, body=body,
                         headers={"Authorization": self._auth(), "User-Agent": "Go-http-client/1.1", **headers})
            r = conn.getresponse()
            return Reply(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
        finally:
            conn.close()

    def get(self, path: str, op: str = "", **query: str) -> Reply:
        if op:
            query["op"] = op
        encoded = urllib.parse.urlencode(sorted(query.items()))
        return self._send("GET", path + (f"?{encoded}" if encoded else ""), None, {})

    def post(self, path: str, op: str, form: dict[str, str]) -> Reply:
        body = urllib.parse.urlencode(form).encode()
        return self._send("POST", f"{path}?op={op}", body, {"Content-Type": "application/x-www-form-urlencoded"})

    def put(self, path: str, form: dict[str, str]) -> Reply:
        body = urllib.parse.urlencode(form).encode()
        return self._send("PUT", path, body, {"Content-Type": "application/x-www-form-urlencoded"})

    def delete(self, path: str) -> Reply:
        return self._send("DELETE", path, b"", {"Content-Length": "0"})


def _json(reply: Reply, status: int = 200):
    assert reply.status == status, (reply.status, reply.text)
    assert reply.content_type.split(";")[0] == "application/json", reply.content_type
    return reply.json()


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_pod(pod: dict) -> None:
    """What entity.VMHost decodes: ints, float ratios, objects, string lists."""
    assert _is_int(pod["id"]) and isinstance(pod["name"], str) and isinstance(pod["type"], str)
    for group in ("total", "used", "available"):
        assert all(_is_int(pod[group][k]) for k in ("cores", "memory", "local_storage")), pod[group]
    assert type(pod["cpu_over_commit_ratio"]) is float and type(pod["memory_over_commit_ratio"]) is float
    assert isinstance(pod["zone"]["name"], str) and isinstance(pod["pool"]["name"], str)
    assert isinstance(pod["tags"], list) and all(isinstance(t, str) for t in pod["tags"])
    assert isinstance(pod["host"], dict) and pod["host"].get("system_id") in (None, "")
    assert pod["resource_uri"].endswith(f"/{pod['id']}/")
    for p in pod["storage_pools"]:
        assert isinstance(p["name"], str) and all(_is_int(p[k]) for k in ("total", "used", "available"))


def check_machine(m: dict) -> None:
    """What entity.Machine decodes for the fields Terraform reads, and the types of the rest it maps."""
    assert isinstance(m["system_id"], str) and isinstance(m["hostname"], str) and isinstance(m["status_name"], str)
    assert _is_int(m["cpu_count"]) and _is_int(m["memory"]) and _is_int(m["status"])
    assert isinstance(m["storage"], (int, float)) and not isinstance(m["storage"], bool)
    assert isinstance(m["domain"]["name"], str) and isinstance(m["zone"]["name"], str)
    assert isinstance(m["pool"]["name"], str)
    pod = m["pod"]
    assert _is_int(pod["id"]) and pod["name"] and pod["resource_uri"]
    assert m["resource_uri"] == f"/MAAS/api/2.0/machines/{m['system_id']}/"
    for d in m["blockdevice_set"]:
        assert _is_int(d["id"]) and _is_int(d["size"]) and _is_int(d["block_size"]) and _is_int(d["used_size"])
    for n in m["interface_set"]:
        assert _is_int(n["id"]) and isinstance(n["name"], str) and _is_int(n["effective_mtu"])
        assert n["vlan"] is None or (_is_int(n["vlan"]["vid"]) and isinstance(n["vlan"]["fabric"], str))


def test_terraform_vm_host_and_vm_host_machine_lifecycle(lxd_region, dsn, lxd_server, bridges):
    key = make_user(dsn, region_box(lxd_region), "terraform", admin=True)
    tf = GoClient(lxd_region.api, key)
    name = unique("tf")
    # maas_vm_host (power_address form).  power_user/power_pass are left empty (omitted): for an LXD
    # host power_pass would be the trust password; this one trusts vmyard's certificate instead (step 2).
    params = {"type": "lxd", "power_address": lxd_server.address, "power_user": "", "power_pass": "",
              "name": name, "zone": "default", "pool": "default", "tags": "terraform,lab",
              "cpu_over_commit_ratio": "1", "memory_over_commit_ratio": "1.5"}
    params = {k: v for k, v in params.items() if v}  # omitempty
    created = _json(tf.post("pods/", "", params))
    check_pod(created)
    pid = created["id"]
    try:
        lxd_server.trust_add(http_get(lxd_region.url + f"vmhost-certificate/{name}")[1].decode(), name)
        # Terraform updates right after creating, repeating every field (type and power_* too).
        updated = _json(tf.put(f"pods/{pid}/", params))
        check_pod(updated)
        assert updated["state"] == "ready", updated["state_message"]
        assert (updated["cpu_over_commit_ratio"], updated["memory_over_commit_ratio"]) == (1.0, 1.5)
        assert {"lab", "terraform"} <= set(updated["tags"])
        pod = _json(tf.get(f"pods/{pid}/"))
        check_pod(pod)
        assert pod["total"]["cores"] > 0 and pod["total"]["memory"] > 0 and pod["total"]["local_storage"] > 0
        assert [p["id"] for p in _json(tf.get("pods/")) if p["name"] == name] == [pid]
        parameters = _json(tf.get(f"pods/{pid}/", op="parameters"))
        assert parameters["power_address"] == lxd_server.address
        assert all(isinstance(v, str) for v in parameters.values()), parameters  # map[string]string

        # Networks for the interfaces constraint (set up through the API, not by Terraform).
        assert tf.put(f"vm-hosts/{pid}/interfaces/{bridges[1]}/", {
            "vlan": str(_json(tf.post("fabrics/0/vlans/", "", {"vid": "30"}))["id"])}).status == 200
        vlan = _json(tf.get("fabrics/0/vlans/30/"))
        assert tf.post("subnets/", "", {"cidr": "10.30.0.0/24", "vlan": str(vlan["id"])}).status == 200

        # maas_vm_host_machine
        compose = tf.post(f"pods/{pid}/", "compose", {
            "hostname": "tfvm1", "cores": "1", "pinned_cores": "0", "memory": "1024",
            "storage": "disk0:1(default),disk1:1",
            "interfaces": f"eth0:fabric={vlan['fabric']},vlan={vlan['id']},subnet_cidr=10.30.0.0/24,ip=10.30.0.60"})
        made = _json(compose)
        sid = made["system_id"]
        assert made["resource_uri"] == f"/MAAS/api/2.0/machines/{sid}/"
        for _ in range(60):
            machine = _json(tf.get(f"machines/{sid}/"))
            check_machine(machine)
            if machine["status_name"] == "Ready":
                break
            assert machine["status_name"] in ("Commissioning", "Testing"), machine["status_name"]
            time.sleep(1)
        assert machine["status_name"] == "Ready"
        assert machine["cpu_count"] == 1 and machine["memory"] == 1024 and machine["pod"]["id"] == pid
        assert machine["ip_addresses"] == ["10.30.0.60"]
        instance = lxc_json(lxd_server, "/1.0/instances/tfvm1?project=default")
        assert instance["devices"]["eth0"]["parent"] == bridges[1]

        renamed = _json(tf.put(f"machines/{sid}/", {"hostname": "tfvm2", "domain": "maas", "zone": "default",
                                                    "pool": "default"}))
        check_machine(renamed)
        assert (renamed["hostname"], renamed["domain"]["name"], renamed["zone"]["name"], renamed["pool"]["name"]) \
            == ("tfvm2", "maas", "default", "default")

        gone = tf.delete(f"machines/{sid}/")
        assert gone.status == 204 and gone.content_type and gone.body == b""
        assert lxc_missing(lxd_server, "/1.0/instances/tfvm1?project=default")
        assert tf.get(f"machines/{sid}/").status == 404
    finally:
        deleted = tf.delete(f"pods/{pid}/")
    assert deleted.status == 204 and deleted.content_type and deleted.body == b""
    assert tf.get(f"pods/{pid}/").status == 404


def test_terraform_decodes_storage_pool_ids_as_strings(lxd_api, lxd_server):
    from tests.test_vmhosts_lxd import add_trusted_host

    pod = add_trusted_host(lxd_api, lxd_server)
    pools = GoClient(lxd_api.base, lxd_api.apikey).get(f"pods/{pod['id']}/").json()["storage_pools"]
    assert pools and all(isinstance(p["id"], str) for p in pools)
