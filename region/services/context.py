"""What every service call gets: the region's resources and the actor."""

from __future__ import annotations

from typing import Any, Protocol

import attrs

from region.db import events
from region.db.pool import Statement


class RegionResources(Protocol):
    """The parts of the running region that services use (RegionService provides them)."""

    db: Any  # region.db.pool.Database
    box: Any  # region.secretbox.SecretBox
    hosts: Any  # region.vmhosts.HostManager: work sent to racks
    rpc: Any  # region.rpc.RackRegistry
    config: Any  # region.config.RegionConfig
    region_id: str  # this region process (names the compose reservations it holds)


@attrs.frozen
class Context:
    """One service call's world.  `actor` is the authenticated user (None: anonymous)."""

    region: RegionResources
    actor: Any = None  # region.db.users.User | None

    @property
    def db(self):
        return self.region.db

    @property
    def box(self):
        return self.region.box

    @property
    def hosts(self):
        return self.region.hosts

    @property
    def config(self):
        return self.region.config

    @property
    def username(self) -> str | None:
        return self.actor.username if self.actor is not None else None

    @property
    def is_admin(self) -> bool:
        return bool(self.actor is not None and self.actor.is_superuser)

    def audit_thd(self, cur, event_type: str, description: str, object_type: str, object_id) -> None:
        """Record an AUDIT event by the actor inside the caller's transaction."""
        statement = self.audit_statement(event_type, description, object_type, object_id)
        cur.execute_later(statement.sql, statement.args)

    def audit_statement(self, event_type: str, description: str, object_type: str, object_id) -> Statement[None]:
        """An AUDIT event by the actor, for `Database.statements` with the change it records."""
        return events.record_statement(event_type, description, level="AUDIT", username=self.username,
                                       object_type=object_type, object_id=object_id)
