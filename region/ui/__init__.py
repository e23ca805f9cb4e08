"""The web UI: a small single-page app (static HTML, CSS and ES modules, no build step) served
under UI_PREFIX, plus the few endpoints only a browser needs (password login to a session,
server-sent events, the compose form's dry run, the add form's address check).  Everything else
the pages show and do goes through the REST API, which accepts the session cookie with its CSRF
header (region/ui/auth.py, used by region/api/site.py)."""

from __future__ import annotations

from twisted.web import resource, server

from region.ui.address_check_endpoint import AddressCheckEndpoint
from region.ui.assets import Assets
from region.ui.compose_check_endpoint import ComposeCheckEndpoint
from region.ui.live import ChangeFeed, EventStream
from region.ui.session_endpoint import SessionEndpoint

UI_PREFIX = "/MAAS/r/"


class UiResource(resource.Resource):
    """Routes a request under UI_PREFIX: session/, events/, compose-check/ID, address-check,
    static/…, else the app's page."""

    isLeaf = True

    def __init__(self, region, reactor) -> None:
        super().__init__()
        self.assets = Assets.load()
        self.session = SessionEndpoint(region)
        self.events = EventStream(region, ChangeFeed(region, reactor))
        self.compose_check = ComposeCheckEndpoint(region)
        self.address_check = AddressCheckEndpoint(region)

    def render(self, request: server.Request):
        relative = request.path[len(UI_PREFIX):].decode("utf-8", errors="replace")
        if relative in ("session", "session/"):
            return self.session.render(request)
        if relative in ("events", "events/"):
            return self.events.render(request)
        if relative.startswith("compose-check/"):
            return self.compose_check.render(request, relative.removeprefix("compose-check/").strip("/"))
        if relative in ("address-check", "address-check/"):
            return self.address_check.render(request)
        if relative.startswith("static/"):
            return self.assets.render_asset(request, relative.removeprefix("static/"))
        return self.assets.render_page(request)
