"""Compose request parsing: MAAS syntax, vmyard's units, one 400 for every bad field."""

from __future__ import annotations

import pytest

from region.api.compose_form import compose_fields
from region.api.params import Params
from region.cli.client import ClientError
from region.cli.machine_cli import memory_mib
from region.services.compose_request import StorageAsk, parse_storage, validate
from region.services.errors import InvalidInput

GB = 1000**3


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
