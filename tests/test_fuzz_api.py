"""Bad input never gets a 5xx (issue 11 item 11): every action `describe/` lists, fuzzed.

Hypothesis draws a handler x action from the live describe document, a caller (admin, a
normal user, anonymous), path arguments (real ids and garbage), parameters (the action's own
and unknown ones) with hostile values (NUL, lone surrogates, huge and non-finite numbers, long
strings) and a body encoding (urlencoded, multipart, JSON, or malformed bytes).  Every answer
must be below 500, except a 503 that says why (no rack is connected to this region, so work
bound for a VM host may be refused that way).  Afterwards the region still answers and each VM
host's `used` is the sum of its machines.  Deterministic (derandomize) and bounded, so it
suits CI: two to three minutes.
"""

from __future__ import annotations

import json
import re
import urllib.parse

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from region.db import allocations, hosts, machines, named, tags, users
from region.db.pool import run_sync
from region.services.machines import MachineQuery
from tests.conftest import make_user, region_box
from tests.fixtures.http import Api, Reply

MIB = 1024 * 1024
EXAMPLES = 1500  # two to three minutes on a 2-core machine

FUZZ_SETTINGS = settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                         suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                                HealthCheck.data_too_large])

HOSTILE_TEXT = [
    "", " ", "\x00", "a\x00b", "\ud800", "\udfff", "-1", "0", "1" + "0" * 4000, "9" * 400 + "T", "inf", "-inf",
    "nan", "NaN", "1e400", "-1e400", "0x10", "1.5", "true", "null", "[]", "{}", "x" * 20_000, "%00", "../..",
    "root:" + "9" * 400 + "T", "0-3000000", "a,b,,c", "é💥", "\n\r\t", "'; DROP TABLE users; --", "{{7*7}}",
    "127.0.0.1:99999", "lxd", "default", "admin", "amd64/generic", "label:space=eth0", "=", "&", "::",
]
COMMON_FIELDS = ["name", "id", "op", "hostname", "zone", "pool", "tags", "cores", "memory", "storage",
                 "interfaces", "cpu_count", "mem", "arch", "system_id", "agent_name", "power_address",
                 "description", "key", "value", "token_key", "username", "password", "email", "is_superuser",
                 "dry_run", "pinned_cores", "hugepages_backed", "comment", "definition", "add", "remove",
                 "cidr", "vlan", "fabric", "space", "gateway_ip", "start_ip", "end_ip", "type", "project",
                 "decompose", "erase", "distro_series", "user_data", "transfer_resources_to", "consumer"]


def hostile_text() -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(HOSTILE_TEXT), st.text(max_size=40),
                     st.integers(min_value=-2**70, max_value=2**70).map(str),
                     st.floats(allow_nan=True, allow_infinity=True).map(repr))


def encode(value: str) -> str:
    """Percent-encoding that lets lone surrogates through as the bytes a client would send."""
    return urllib.parse.quote(value.encode("utf-8", "surrogatepass"), safe="")


def urlencoded(fields: list[tuple[str, str]]) -> bytes:
    return "&".join(f"{encode(k)}={encode(v)}" for k, v in fields).encode()


def multipart(fields: list[tuple[str, str]], broken: bool) -> tuple[bytes, str]:
    boundary = "fuzzboundary"
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n'.encode()
             + v.encode("utf-8", "surrogatepass") + b"\r\n" for k, v in fields]
    body = b"".join(parts) + (b"--" + boundary.encode() if broken else f"--{boundary}--\r\n".encode())
    return body, f"multipart/form-data; boundary={boundary}"


BAD_JSON = [b"[" * 100_000, b'{"a": "\\ud800"}', b'{"a": 1e400}', b"{", b"\xff\xfe", b"null", b"[1, 2]",
            b'{"a": {"b": {"c": [1, {"d": NaN}]}}}', b'"just a string"', b"\x00" * 64]


@st.composite
def bodies(draw, fields: list[tuple[str, str]]) -> tuple[bytes, str | None]:
    kind = draw(st.sampled_from(["urlencoded", "multipart", "broken-multipart", "json", "bad-json", "bytes",
                                 "none"]))
    if kind == "urlencoded":
        return urlencoded(fields), "application/x-www-form-urlencoded"
    if kind in ("multipart", "broken-multipart"):
        return multipart(fields, broken=kind == "broken-multipart")
    if kind == "json":
        return json.dumps(dict(fields), ensure_ascii=True).encode(), "application/json"
    if kind == "bad-json":
        return draw(st.sampled_from(BAD_JSON)), "application/json"
    if kind == "bytes":
        return draw(st.binary(max_size=200)), draw(st.sampled_from(["application/octet-stream", "text/plain",
                                                                    "multipart/form-data", None]))
    return b"", None


def documented_params(doc: str) -> list[str]:
    return re.findall(r":param (\w+):", doc)


def actions(describe: dict) -> list[tuple[str, list[str], dict]]:
    """(path template, its parameters, action) for every action of every handler."""
    found = []
    for handler in describe["handlers"]:
        for action in handler["actions"]:
            found.append((handler["path"], handler["params"], action))
    return sorted(found, key=lambda f: (f[0], f[2]["name"], f[2]["method"]))


@pytest.fixture
def fuzz_region(region, dsn):
    """A plain region (no rack) holding a VM host with alice's machine and an unowned one."""
    box = region_box(region)
    apis = {name: Api(region.api, make_user(dsn, box, name, admin=name == "admin")) for name in ("admin", "alice")}
    apis["anonymous"] = Api(region.api)

    def populate_thd(cur):
        zone, pool = named.get_default_thd(cur, named.ZONES), named.get_default_thd(cur, named.RESOURCE_POOLS)
        host = hosts.create_thd(cur, box, hosts.NewHost("lxd1", "lxd", "10.0.0.1:8443", "vmyard", "CERT", "KEY",
                                                        zone.id, pool.id, [], 1.0, 1.0, None))
        tags.create_thd(cur, "gpu")
        for hostname in ("alice-vm", "free-vm"):
            made, _ = machines.reserve_thd(cur, machines.NewMachine(
                hostname, host.id, "vmyard", "amd64/generic", 2, 1024 * MIB, [], False, [], zone.id, pool.id,
                None, False, [], [], []))
            machines.update_thd(cur, made.id, {"status": "ready"})
        listed = machines.list_thd(cur, MachineQuery())
        alice = users.get_user_thd(cur, "alice")
        owned = next(m for m in listed if m.hostname == "alice-vm")
        allocations.claim_thd(cur, owned.id, alice.id, "model-a")
        names = [str(host.id), "0", "1", "lxd1", "gpu", "default", "alice", "admin"]
        return names + [m.system_id for m in listed]

    real_ids = run_sync(dsn, populate_thd)
    return dsn, apis, real_ids


def assert_usage_is_the_sum_of_the_machines(api: Api, dsn: str) -> None:
    """As the API shows it, and with every machine the database holds for the host."""
    listed = api.get("machines/")
    assert listed.status == 200, listed.text
    for host in api.get("vm-hosts/").json():
        mine = [m for m in listed.json() if (m.get("pod") or {}).get("id") == host["id"]]
        assert host["used"]["cores"] == sum(m["cpu_count"] for m in mine), host
        assert host["used"]["memory"] == sum(m["memory"] for m in mine), host
        recorded = run_sync(dsn, machines.list_for_host_thd, host["id"])
        assert sorted(m["system_id"] for m in mine) == sorted(m.system_id for m in recorded)


def acceptable(reply: Reply) -> bool:
    if reply.status < 500:
        return True
    return reply.status == 503 and bool(reply.headers.get("retry-after") or reply.body.strip())


def test_no_request_described_by_the_api_gets_a_server_error(fuzz_region):
    dsn, apis, real_ids = fuzz_region
    describe = apis["anonymous"].get("describe/").json()
    every_action = actions(describe)
    assert len(every_action) > 50, "describe/ lists the whole API"
    prefix = "/MAAS/api/2.0/"

    @FUZZ_SETTINGS
    @given(data=st.data())
    def one_request(data):
        template, path_params, action = data.draw(st.sampled_from(every_action), label="action")
        caller = data.draw(st.sampled_from(["admin", "alice", "anonymous"]), label="caller")
        path = template[len(prefix):]
        for param in path_params:
            real = data.draw(st.integers(0, 3), label=f"{param} is real") > 0  # mostly: reach past the lookup
            value = data.draw(st.sampled_from(real_ids) if real else hostile_text(), label=param)
            path = path.replace("{" + param + "}", encode(value) or "x")
        names = documented_params(action["doc"]) + COMMON_FIELDS
        fields = data.draw(st.lists(st.tuples(st.one_of(st.sampled_from(names), st.text(max_size=10)),
                                              hostile_text()), max_size=6), label="fields")
        query = [("op", action["op"])] if action["op"] else []
        if action["method"] in ("GET", "HEAD") or data.draw(st.booleans(), label="fields in the query"):
            query += fields
            body, ctype = b"", None
        else:
            body, ctype = data.draw(bodies(fields), label="body")
        target = path + ("?" + urlencoded(query).decode() if query else "")
        headers = {"Content-Type": ctype} if ctype else {}
        reply = apis[caller].request(action["method"], target, body=body or None, headers=headers)
        assert acceptable(reply), (f"{caller} {action['method']} {target[:300]} ({ctype}, {len(body)} bytes): "
                                   f"{reply.status} {reply.body[:500]!r}")

    one_request()
    assert apis["anonymous"].get("version/").status == 200
    assert_usage_is_the_sum_of_the_machines(apis["admin"], dsn)
