"""Bad input never gets a 5xx (issue 11 item 11): every action `describe/` lists, fuzzed.

Hypothesis draws a handler x action from the live describe document, a caller (admin, a
normal user, anonymous), path arguments (real ids and garbage), parameters (the action's own
and unknown ones) with hostile values (NUL, lone surrogates, huge and non-finite numbers, long
strings) and a body encoding (urlencoded, multipart, JSON, or malformed bytes).  Every answer
must be below 500, except a 503 that says why (work bound for a VM host is refused that way
when no rack can do it).  Afterwards the region still answers and each VM host's `used` is the
sum of its machines.  The whole API is fuzzed on a region without a rack; the VM host and
machine actions again through a rack to a real LXD host, whose instances must then be exactly
the machines the region records.  Deterministic (derandomize) and bounded, so it suits CI:
about four minutes for both.
"""

from __future__ import annotations

import json
import re
import urllib.parse

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from region.db import hosts, machines
from region.db.pool import run_sync
from tests.conftest import make_user, region_box
from tests.fixtures.http import Api, Reply
from tests.fixtures.lxd import lxc_json
from tests.test_access import shared_region  # noqa: F401  (fixture)
from tests.test_vmhosts_lxd import add_trusted_host

EXAMPLES = 1500  # two to three minutes on a 2-core machine
LXD_EXAMPLES = 300  # each may go through the rack to LXD

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
def fuzz_region(shared_region, dsn):
    """A plain region (no rack) holding a VM host with alice's machine and an unowned one; bob is a
    user too."""
    apis, host_id, _ = shared_region
    apis = {**apis, "anonymous": Api(apis["admin"].base)}
    system_ids = [m["system_id"] for m in apis["admin"].get("machines/").json()]
    return dsn, apis, [str(host_id), "0", "1", "lxd1", "gpu", "default", "alice", "admin", *system_ids]


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


def ids_found(api: Api, path: str, params: list[str], real_ids: list[str]) -> list[str]:
    """The ids that name something at `path` (its one parameter), so most requests get past the lookup."""
    if len(params) != 1:
        return real_ids
    found = [i for i in real_ids if api.get(path.replace("{" + params[0] + "}", encode(i))).status != 404]
    return found or real_ids


def fuzz(apis: dict[str, Api], real_ids: list[str], targets: list[tuple[str, list[str], dict]],
         examples: int) -> None:
    """`examples` requests, each to one of `targets` by one of `apis`; none may get a 5xx."""
    prefix = "/MAAS/api/2.0/"
    found = {template: ids_found(apis["admin"], template[len(prefix):], params, real_ids)
             for template, params, _ in targets}

    @settings(FUZZ_SETTINGS, max_examples=examples)
    @given(data=st.data())
    def one_request(data):
        template, path_params, action = data.draw(st.sampled_from(targets), label="action")
        caller = data.draw(st.sampled_from(sorted(apis)), label="caller")
        path = template[len(prefix):]
        for param in path_params:
            real = data.draw(st.integers(0, 3), label=f"{param} is real") > 0  # mostly: reach past the lookup
            value = data.draw(st.sampled_from(found[template]) if real else hostile_text(), label=param)
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


def test_no_request_described_by_the_api_gets_a_server_error(fuzz_region):
    dsn, apis, real_ids = fuzz_region
    every_action = actions(apis["anonymous"].get("describe/").json())
    assert len(every_action) > 50, "describe/ lists the whole API"
    fuzz(apis, real_ids, every_action, EXAMPLES)
    assert_usage_is_the_sum_of_the_machines(apis["admin"], dsn)


def test_host_and_machine_actions_on_a_real_lxd_host_keep_records_and_lxd_in_step(lxd_region, lxd_api, lxd_server,
                                                                                   dsn):
    """Through a rack to LXD: what the region records for the host is what LXD has."""
    apis = {"admin": lxd_api, "alice": Api(lxd_region.api, make_user(dsn, region_box(lxd_region), "alice",
                                                                     admin=False)),
            "anonymous": Api(lxd_region.api)}
    host = add_trusted_host(lxd_api, lxd_server)
    composed = [lxd_api.post(f"vm-hosts/{host['id']}/", data={"op": "compose", "storage": "root:1"})
                for _ in range(2)]
    assert [c.status for c in composed] == [200, 200], composed[0].text
    real_ids = [str(host["id"]), host["name"], "default", "alice"] + [c.json()["system_id"] for c in composed]
    host_bound = [t for t in actions(apis["anonymous"].get("describe/").json())
                  if re.search(r"/(vm-hosts|pods|machines?)/", t[0])]
    try:
        fuzz(apis, real_ids, host_bound, LXD_EXAMPLES)
        assert_usage_is_the_sum_of_the_machines(lxd_api, dsn)
        for current in (h for h in run_sync(dsn, hosts.list_thd) if h.id == host["id"]):  # unless fuzzed away
            in_lxd = lxc_json(lxd_server, f"/1.0/instances?recursion=1&project={current.project}")
            recorded = run_sync(dsn, machines.list_for_host_thd, current.id)
            assert {i["name"] for i in in_lxd} == {m.hostname for m in recorded if m.project == current.project}
    finally:
        lxd_api.delete(f"vm-hosts/{host['id']}/", data={"decompose": "true"})
