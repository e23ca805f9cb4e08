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
class RegionHello:
    """The region's answer: who the rack is talking to."""

    region_id: str
    hostname: str
    version: str
    rack_system_id: str
