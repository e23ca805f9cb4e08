"""/MAAS/metrics scraped from a real region (real PostgreSQL; real LXD for compose)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.daemons import http_get
from tests.fixtures.lxd import unique
from tests.test_vmhosts_lxd import add_trusted_host

API = "/MAAS/api/2.0/"


def scrape(region) -> dict[tuple, float]:
    """Every sample as {(name, sorted label items): value}."""
    status, body = http_get(region.url + "metrics")
    assert status == 200, body
    samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_requests_are_counted_per_route_template_with_their_sql(region, admin_api):
    before = scrape(region)  # no credentials needed, as in MAAS
    for _ in range(3):
        assert admin_api.get("version/").status == 200
    zone = unique("z")
    assert admin_api.post("zones/", data={"name": zone}).status == 200
    assert admin_api.get(f"zones/{zone}/").status == 200
    assert admin_api.post("zones/", data={"name": ""}).status == 400
    assert admin_api.get("no-such-thing/").status == 404
    assert admin_api.request("BREW", "version/").status == 405
    after = scrape(region)

    def count(endpoint: str, method: str, status: int) -> float:
        labels = {"endpoint": API + endpoint, "method": method, "status": str(status)}
        return (value(after, "vmyard_http_request_duration_seconds_count", **labels)
                - value(before, "vmyard_http_request_duration_seconds_count", **labels))

    assert count("version/", "GET", 200) == 3
    assert count("zones/", "POST", 200) == 1 and count("zones/", "POST", 400) == 1
    assert count("zones/{name}/", "GET", 200) == 1, "the route template, not the zone's name"
    assert value(after, "vmyard_http_request_duration_seconds_count", endpoint="unmatched", method="GET",
                 status="404") >= 1
    assert count("version/", "other", 405) == 1, "a method a client made up is not a label of its own"
    assert not any(zone in str(labels) or "BREW" in str(labels) for _, labels in after), \
        "no raw path or method reaches a label"
    sql = (value(after, "vmyard_http_request_sql_queries_sum", endpoint=API + "zones/", method="POST")
           - value(before, "vmyard_http_request_sql_queries_sum", endpoint=API + "zones/", method="POST"))
    assert sql >= 3, "creating a zone checks the credentials, inserts it and records an event"
    assert value(after, "vmyard_racks_connected") == 0
    assert value(after, "vmyard_db_pool_connections", pool="main", state="max") == 8
    assert value(after, "vmyard_vm_hosts") == 0 and ("vmyard_refresh_max_lag_seconds", ()) in after


def test_metrics_can_be_limited_to_networks_or_turned_off(start_region, tmp_path):
    limited = tmp_path / "limited.toml"
    limited.write_text('metrics_allowed_networks = ["10.0.0.0/8"]\n')
    region = start_region("limited", extra=["--config", str(limited)])
    status, body = http_get(region.url + "metrics")
    assert status == 403 and b"metrics_allowed_networks" in body
    off = tmp_path / "off.toml"  # a second region on the same database: same key
    off.write_text(f'metrics_enabled = false\nsecret_key_file = "{region.data_dir / "region.key"}"\n')
    region = start_region("off", extra=["--config", str(off)])
    assert http_get(region.url + "metrics")[0] == 404


def test_compose_and_its_rack_calls_are_measured(lxd_region, lxd_api, lxd_server):
    host = add_trusted_host(lxd_api, lxd_server)
    before = scrape(lxd_region)
    made = lxd_api.post(f"vm-hosts/{host['id']}/", data={"op": "compose", "storage": "root:1"})
    assert made.status == 200, made.text
    listed = lxd_api.get("machines/")
    assert listed.status == 200 and made.json()["system_id"] in listed.text
    kept = scrape(lxd_region)  # the listing keeps every machine's JSON, the new one's too
    assert value(kept, "vmyard_machine_json_cache_entries") == len(listed.json())
    assert value(kept, "vmyard_machine_json_cache_bytes") > len(listed.body) > 0
    assert lxd_api.delete(f"machines/{made.json()['system_id']}/").status == 204
    after = scrape(lxd_region)

    def delta(name: str, **labels) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("vmyard_vm_host_operation_duration_seconds_count", operation="compose", outcome="ok") == 1
    assert delta("vmyard_vm_host_operation_duration_seconds_count", operation="delete", outcome="ok") == 1
    racks = {dict(labels)["rack"] for name, labels in after
             if name == "vmyard_rpc_call_duration_seconds_count" and dict(labels).get("command") == "ComposeVM"}
    assert len(racks) == 1, "the local rack, by system id"
    assert delta("vmyard_rpc_call_duration_seconds_count", command="ComposeVM", rack=racks.pop(), outcome="ok") == 1
    assert value(after, "vmyard_racks_connected") == 1
    assert value(after, "vmyard_rack_calls_in_flight", rack=dict(next(
        labels for name, labels in after if name == "vmyard_rack_calls_in_flight"))["rack"], kind="user") == 0
