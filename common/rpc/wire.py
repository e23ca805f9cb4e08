"""Typed values that cross the region <-> rack boundary."""

from __future__ import annotations

import attrs


@attrs.frozen
class RackHello:
    """Sent by a rack on every new connection."""

    hostname: str
    version: str
    connection_index: int = 0


@attrs.frozen
class RegionEndpoint:
    """Where one live region process listens for racks."""

    region_id: str
    host: str
    port: int


@attrs.frozen
class RegionHello:
    """The region's answer: who the rack is talking to, and every live region (this one
    too), so the rack connects to all of them and survives losing one."""

    region_id: str
    hostname: str
    version: str
    rack_system_id: str
    regions: list[RegionEndpoint] = attrs.field(factory=list)
