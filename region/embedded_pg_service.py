"""The embedded cluster as a Twisted service (apart from `region.embedded_pg`, which the
daemon imports before Twisted's reactor modules so that initdb starts sooner)."""

from __future__ import annotations

import attrs
from twisted.application import service
from twisted.internet import defer, threads

from region.embedded_pg import ClusterStart, EmbeddedPostgres


@attrs.define(eq=False)
class EmbeddedPostgresService(service.Service):
    """Runs the cluster while the service runs (its start and stop in threads).

    :ivar started: fires with the migration versions applied once the cluster accepts
        connections and its schema is at head, or fails with why not.
    """

    pg: EmbeddedPostgres
    prestarted: ClusterStart | None = None  # from `embedded_pg.prestart`: the start already under way
    started: defer.Deferred = attrs.field(init=False, factory=defer.Deferred)
    _begun: ClusterStart | None = None

    def startService(self) -> None:
        service.Service.startService(self)
        self._begun = self.prestarted if self.prestarted is not None else ClusterStart.begin(self.pg)
        threads.deferToThread(self._begun.done.result).chainDeferred(self.started)

    def stopService(self) -> defer.Deferred:
        service.Service.stopService(self)
        return threads.deferToThread(self._stop)

    def _stop(self) -> None:
        # The cluster in our data dir is ours to stop.
        if self._begun is not None:
            self._begun.stop()
        else:
            self.pg.stop()
