"""Zones and resource pools: named groups with one undeletable default."""

from __future__ import annotations

import attrs

from region.db import named
from region.db.named import NamedKind
from region.services.crud import Table


@attrs.frozen
class NamedSpec:
    name: str
    description: str = ""


@attrs.frozen
class NamedChanges:
    name: str | None = None  # None: unchanged
    description: str | None = None


def _table(kind: NamedKind, event: str) -> Table:
    return Table(
        label=kind.label,
        event=event,
        list_thd=lambda cur: named.list_thd(cur, kind),
        get_thd=lambda cur, key: named.get_thd(cur, kind, key),
        create_thd=lambda cur, spec: named.create_thd(cur, kind, spec.name, spec.description),
        update_thd=lambda cur, key, ch: named.update_thd(cur, kind, key, name=ch.name,
                                                         description=ch.description),
        delete_thd=lambda cur, key: named.delete_thd(cur, kind, key),
    )


ZONES = _table(named.ZONES, "ZONES")
RESOURCE_POOLS = _table(named.RESOURCE_POOLS, "RESOURCE_POOLS")
