"""/MAAS/metrics: the region's Prometheus metrics, for scrapers.

As in MAAS, no credentials: Prometheus scrapes without OAuth, and the figures name no
user data (route templates, rack system ids, counts and durations).  `metrics_enabled =
false` turns the page off (404); `metrics_allowed_networks` limits who may read it (403).
"""

from __future__ import annotations

import ipaddress

from prometheus_client import CONTENT_TYPE_LATEST
from twisted.internet import defer
from twisted.logger import Logger
from twisted.web import resource, server

log = Logger()

METRICS_PATH = "/MAAS/metrics"


class MetricsResource(resource.Resource):
    isLeaf = True

    def __init__(self, region) -> None:
        super().__init__()
        self.region = region
        self.allowed = [ipaddress.ip_network(n) for n in region.config.metrics_allowed_networks]

    def render_GET(self, request: server.Request):  # noqa: N802 (Twisted's name)
        if not self.region.config.metrics_enabled or request.path.rstrip(b"/") != METRICS_PATH.encode():
            return self._text(request, 404, "No such page: metrics are at /MAAS/metrics when enabled.")
        if self.allowed and not self._client_allowed(request):
            return self._text(request, 403, "This address may not read the metrics (metrics_allowed_networks).")
        d = defer.Deferred.fromCoroutine(self.region.metrics.render())
        d.addCallback(self._write, request)
        d.addErrback(self._failed, request)
        return server.NOT_DONE_YET

    def _client_allowed(self, request: server.Request) -> bool:
        try:
            address = ipaddress.ip_address(getattr(request.getClientAddress(), "host", ""))
        except ValueError:
            return False
        return any(address in network for network in self.allowed)

    @staticmethod
    def _text(request: server.Request, status: int, message: str) -> bytes:
        request.setResponseCode(status)
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        return message.encode()

    @staticmethod
    def _write(body: bytes, request: server.Request) -> None:
        if request._disconnected:
            return
        request.setHeader(b"Content-Type", CONTENT_TYPE_LATEST.encode())
        request.setHeader(b"Content-Length", str(len(body)).encode())
        request.write(body)
        request.finish()

    def _failed(self, failure, request: server.Request) -> None:
        log.failure("rendering the metrics failed", failure)
        if not request._disconnected:
            request.setResponseCode(500)
            request.finish()
