"""Compose and allocate input against a real region: huge, non-finite or over-long values are a
400 naming the field, never a 500, and never seconds of parsing (issue 11, items 2 and 9)."""

from __future__ import annotations

import pytest

from tests.fixtures.http import Api
from tests.test_compose_race import make_ready_host

NINES = "9" * 400
HUGE = "1" + "0" * 4000  # int() takes it; bigint and float() do not
TOO_LONG = "9" * 5000  # over int()'s 4,300-digit limit
MANY_LABELS = ";".join(f"l{i}:space=a" for i in range(10_000))  # took 10-15 s on the reactor


def _refused(reply, field: str) -> None:
    assert reply.status == 400, (field, reply.status, reply.text[:300])
    assert field in reply.json(), (field, reply.text[:300])


@pytest.fixture
def host_id(region, dsn, tmp_path) -> int:
    """A ready 4-core host recorded in the region's database (no rack: only refusals are tested)."""
    return make_ready_host(dsn, tmp_path, cores=4, cpu_ratio=1.0)


ALLOCATE_REFUSED = [
    ("mem", "inf"), ("mem", "-inf"), ("mem", HUGE), ("mem", "-1"), ("mem", "1e400"),
    ("cpu_count", "nan"), ("cpu_count", "1e308"), ("cpu_count", TOO_LONG), ("cpu_count", "-2"),
    ("cpu_count", "\u0661"),  # an Arabic-Indic one: float() takes it, the API does not
    ("link_speed", "inf"), ("link_speed", HUGE),
    ("storage", f"root:{NINES}T"), ("storage", f"root:{HUGE}"), ("storage", "root:-1"),
    ("storage", ",".join(f"d{i}:1" for i in range(1000))), ("storage", "root:1(" + "t," * 5000 + ")"),
    ("interfaces", MANY_LABELS), ("interfaces", f"eth0:link_speed={TOO_LONG}"),
    ("interfaces", f"eth0:id={TOO_LONG}"), ("interfaces", "eth0:vid=\u00b2"),
    ("tags", ",".join(f"t{i}" for i in range(10_000))),
    ("not_in_zone", ",".join(f"z{i}" for i in range(10_000))),
]


def test_allocate_refuses_bad_numbers_and_oversized_constraints_naming_the_field(user_api, host_id):
    for field, value in ALLOCATE_REFUSED:
        reply = user_api.post("machines/", data={"op": "allocate", "dry_run": "true", field: value})
        _refused(reply, field)
    # Sane values still reach the matching (no Ready machine: a dry run names the host it would use).
    fine = user_api.post("machines/", data={"op": "allocate", "dry_run": "true", "cpu_count": "1.5", "mem": "1024",
                                            "storage": "root:8,data:0.5T(default)"})
    assert fine.status == 409 and "would compose a VM on VM host race" in fine.text, fine.text


COMPOSE_REFUSED = [
    ("cores", "1e308"), ("cores", HUGE), ("cores", TOO_LONG), ("cores", "-1"), ("cores", "inf"),
    ("memory", HUGE), ("memory", "inf"), ("memory", "nan"), ("memory", "-1024"),
    ("cpu_speed", "nan"), ("cpu_speed", HUGE),
    ("pinned_cores", "0-3000000"), ("pinned_cores", "0-7"), ("pinned_cores", TOO_LONG),
    ("pinned_cores", "\u00b2"), ("pinned_cores", "5-2"),
    ("storage", f"root:{NINES}T"), ("storage", "root:1e3"), ("storage", ",".join(f"d{i}:1" for i in range(65))),
    ("interfaces", MANY_LABELS),
]


def test_compose_refuses_bad_numbers_and_pins_naming_the_field(admin_api, host_id):
    for field, value in COMPOSE_REFUSED:
        reply = admin_api.post(f"vm-hosts/{host_id}/", data={"op": "compose", field: value})
        _refused(reply, field)
    beyond = admin_api.post(f"vm-hosts/{host_id}/", data={"op": "compose", "pinned_cores": "2-1023"})
    assert beyond.json() == {"pinned_cores": ["VM host race has no core(s) 4-1023"]}


def test_number_fields_of_other_forms_are_bounded(admin_api, host_id):
    for field in ("cpu_over_commit_ratio", "memory_over_commit_ratio"):
        for value in ("inf", "nan", NINES, "1e400"):
            _refused(admin_api.put(f"vm-hosts/{host_id}/", data={field: value}), field)
    for field, value in (("vid", HUGE), ("vid", TOO_LONG), ("mtu", "inf"), ("vid", "\u0661")):
        _refused(admin_api.post("fabrics/0/vlans/", data={"vid": "7", field: value}), field)
    assert [v["vid"] for v in admin_api.get("fabrics/0/vlans/").json()] == [0]


def test_anonymous_still_gets_401_first(region):
    assert Api(region.api).post("machines/", data={"op": "allocate", "mem": "inf"}).status == 401
