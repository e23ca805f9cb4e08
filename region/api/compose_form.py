"""The fields of `op=compose` as the request carries them (checked by the compose service)."""

from __future__ import annotations

from region.api.params import Params
from region.services.compose_request import ComposeFields


def compose_fields(params: Params) -> ComposeFields:
    """Every compose field present in `params`; pinned cores may repeat or be comma-joined."""
    return ComposeFields(
        cores=params.get("cores"), pinned_cores=tuple(params.getlist("pinned_cores", split_commas=True)),
        memory=params.get("memory"), hugepages_backed=params.get("hugepages_backed"),
        architecture=params.get("architecture"), cpu_speed=params.get("cpu_speed"),
        hostname=params.get("hostname"), zone=params.get("zone"), pool=params.get("pool"),
        storage=params.get("storage"), interfaces=params.get("interfaces"),
        instance_type=params.get("instance_type"))
