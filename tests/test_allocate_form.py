"""allocate's constraint parsing for what Juju's MAAS provider sends (no daemons)."""

from __future__ import annotations

import pytest

from region.api.allocate_form import parse_allocate
from region.api.errors import BadRequest
from region.api.params import Params
from region.services.compose_request import StorageAsk, parse_storage

GB = 1000**3


def params(**fields) -> Params:
    return Params({k: v if isinstance(v, list) else [v] for k, v in fields.items()})


def test_juju_volumes_without_a_root_disk_constraint_ask_for_a_root_of_any_size():
    # juju volumes.go buildMAASVolumeParameters: the root volume's size is 0 unless root-disk is given,
    # and gomaasapi StorageSpec.String() sends it as "root:0".
    c = parse_allocate(params(storage="root:0,0:10(default)", interfaces="1:space=1", agent_name="m"))
    assert c.storage == (StorageAsk("root", 0), StorageAsk("0", 10 * GB, ("default",)))


@pytest.mark.parametrize("storage", ["root:8,0:0", "root:-1"])
def test_only_a_root_of_exactly_zero_means_any_size(storage):
    with pytest.raises(BadRequest) as raised:
        parse_allocate(params(storage=storage))
    assert list(raised.value.errors) == ["storage"]


def test_compose_still_wants_a_root_size():
    with pytest.raises(ValueError, match="above zero"):
        parse_storage("root:0")
