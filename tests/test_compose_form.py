"""Compose request parsing: MAAS syntax, vmyard's units, one 400 for every bad field."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from region.api.compose_form import compose_fields
from region.api.params import Params
from region.cli.client import ClientError
from region.cli.machine_cli import memory_mib
from region.services.compose_request import (MAX_CORES, MAX_DISK_BYTES, MAX_DISKS, MAX_MEMORY_MIB, MAX_PINNED_CORES,
                                             MAX_STORAGE_LENGTH, StorageAsk, parse_storage, validate)
from region.services.errors import InvalidInput

GB = 1000**3
MIB = 1024**2


def params(**fields) -> Params:
    return Params({k: v if isinstance(v, list) else [v] for k, v in fields.items()})


def parse_compose(p: Params, *, architectures: list[str]):
    return validate(compose_fields(p), architectures)


def test_storage_syntax_units_and_order():
    assert parse_storage("root:20G(fast),data:100") == (StorageAsk("root", 20 * GB, ("fast",)),
                                                        StorageAsk("data", 100 * GB))
    assert parse_storage("8") == (StorageAsk("root", 8 * GB),)
    assert parse_storage("root:1.5T,b:512M,c:8GiB")[1:] == (StorageAsk("b", 512 * 1000**2),
                                                            StorageAsk("c", 8 * 1024**3))
    # The first disk stays first; the rest most-tagged first (MAAS).
    assert [s.label for s in parse_storage("r:1,a:1,b:1(x,y),c:1(z)")] == ["r", "b", "c", "a"]
    # Terraform's form: disk0 is the root.
    assert parse_storage("disk0:10(default),disk1:5")[0].label == "disk0"
    for bad in ("root:", "root:abc", "root:1 ,b:2", "root:0", "a:1,a:2", ""):
        with pytest.raises(ValueError, match="Malformed storage constraint"):
            parse_storage(bad)


def test_defaults_are_maas_defaults():
    ask = parse_compose(params(), architectures=["amd64/generic"])
    assert (ask.cores, ask.memory, ask.architecture) == (1, 2048 * 1024**2, "amd64/generic")
    assert ask.storage == (StorageAsk("root", 8 * GB, ("local",)),)
    pinned = parse_compose(params(pinned_cores=["0-2", "5"]), architectures=[])
    assert (pinned.cores, pinned.pinned_cores) == (4, (0, 1, 2, 5))


def test_every_bad_field_in_one_400():
    with pytest.raises(InvalidInput) as e:
        parse_compose(params(cores="x", memory="512", architecture="s390x/generic", hostname="a_b",
                             storage="root:x", interfaces="eth0", pinned_cores="q"),
                      architectures=["amd64/generic"])
    assert set(e.value.errors) == {"cores", "memory", "architecture", "hostname", "storage", "interfaces",
                                   "pinned_cores"}
    with pytest.raises(InvalidInput) as e:
        parse_compose(params(cores="2", pinned_cores="0-2"), architectures=[])
    assert "3 pinned" in e.value.errors["cores"][0]


def test_cli_memory_sizes():
    assert [memory_mib(v) for v in ("2048", "512M", "8G", "8GiB", "1.5G", "1T")] == \
        [2048, 512, 8192, 8192, 1536, 1024 * 1024]
    with pytest.raises(ClientError):
        memory_mib("lots")


# -- bounds (issue 11): every size, count and number is capped, and a 400 names the field ---------

HUGE = "1" + "0" * 4000


def _errors(**fields) -> dict[str, list[str]]:
    with pytest.raises(InvalidInput) as e:
        parse_compose(params(**fields), architectures=["amd64/generic"])
    return e.value.errors


@pytest.mark.parametrize("value,message", [
    (",".join(f"d{i}:1" for i in range(MAX_DISKS + 1)), f"at most {MAX_DISKS} disks"),
    ("root:1(" + "t," * MAX_STORAGE_LENGTH + ")", f"at most {MAX_STORAGE_LENGTH} characters"),
    (f"root:{'9' * 400}T", "a disk is at most 1 PB"), (f"root:{HUGE}", "a disk is at most 1 PB"),
    ("root:1001T", "a disk is at most 1 PB"),
])
def test_storage_is_bounded(value, message):
    with pytest.raises(ValueError, match=message):
        parse_storage(value)


def test_storage_up_to_the_bounds_parses():
    assert len(parse_storage(",".join(f"d{i}:1" for i in range(MAX_DISKS)))) == MAX_DISKS
    assert parse_storage("root:1000T")[0].size == MAX_DISK_BYTES


@pytest.mark.parametrize("field,value", [
    ("cores", "1e308"), ("cores", HUGE), ("cores", str(MAX_CORES + 1)), ("cores", "-1"), ("cores", "\u0661"),
    ("memory", HUGE), ("memory", "inf"), ("memory", str(MAX_MEMORY_MIB + 1)), ("cpu_speed", "nan"),
    ("pinned_cores", "0-3000000"), ("pinned_cores", "5-2"), ("pinned_cores", "\u00b2"), ("pinned_cores", "9" * 5000),
    ("pinned_cores", [str(i) for i in range(MAX_PINNED_CORES + 1)]), ("pinned_cores", ["0-1000", "0-1000"]),
])
def test_numbers_and_pins_are_bounded(field, value):
    assert list(_errors(**{field: value})) == [field]


def test_pins_up_to_the_bound_expand():
    ask = parse_compose(params(pinned_cores=f"0-{MAX_PINNED_CORES - 1}"), architectures=[])
    assert ask.cores == MAX_PINNED_CORES and ask.pinned_cores == tuple(range(MAX_PINNED_CORES))


FIELDS = ("cores", "pinned_cores", "memory", "cpu_speed", "storage", "interfaces", "hostname")
SYNTAX = st.text(alphabet="0123456789-.,:;=()eEiKMGTB abcx\u0661\u00b2", max_size=60)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(FIELDS), SYNTAX, max_size=len(FIELDS)))
def test_any_bounded_request_is_an_ask_within_bounds_or_field_errors(fields):
    try:
        ask = parse_compose(params(**fields), architectures=["amd64/generic"])
    except InvalidInput as e:
        assert set(e.errors) <= set(fields)
    else:
        assert 1 <= ask.cores <= MAX_CORES and 1024 * MIB <= ask.memory <= MAX_MEMORY_MIB * MIB
        assert len(ask.pinned_cores) <= MAX_PINNED_CORES
        assert 1 <= len(ask.storage) <= MAX_DISKS and all(0 < s.size <= MAX_DISK_BYTES for s in ask.storage)
