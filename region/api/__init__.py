"""The HTTP layer: the handler registry and the site that routes requests to it.

`region.service` builds the site with `make_site(region)`; `describe.py` reads
`API_HANDLERS` when it describes the API.
"""

from __future__ import annotations

from twisted.web import resource, server, util

from region.api import (
    account_handlers,
    boot_resource_handlers,
    core_handlers,
    describe,
    domain_handlers,
    interface_handlers,
    machine_handlers,
    network_handlers,
    sshkey_handlers,
    subnet_handlers,
    tag_handlers,
    vmhost_handlers,
    zone_handlers,
)
from region.api.enrol_handler import EnrolHandler
from region.api.image_download import IMAGES_PREFIX, ImageDownloadResource
from region.api.metadata_handlers import METADATA_PREFIX, MetadataResource
from region.api.metrics_resource import METRICS_PATH, MetricsResource
from region.api.site import API_PREFIX, RouterResource
from region.api.web import RegionSite
from region.ui import UI_PREFIX, UiResource

API_HANDLERS = [
    describe.DescribeHandler,
    core_handlers.VersionHandler,
    core_handlers.UsersHandler,
    core_handlers.UserHandler,
    account_handlers.AccountHandler,
    sshkey_handlers.SSHKeysHandler,
    sshkey_handlers.SSHKeyHandler,
    sshkey_handlers.SSHKeysAliasHandler,
    sshkey_handlers.SSHKeyAliasHandler,
    tag_handlers.TagsHandler,
    tag_handlers.TagHandler,
    core_handlers.RackControllersHandler,
    core_handlers.RackControllerHandler,
    zone_handlers.ZonesHandler,
    zone_handlers.ZoneHandler,
    zone_handlers.ResourcePoolsHandler,
    zone_handlers.ResourcePoolHandler,
    zone_handlers.ResourcePoolsAliasHandler,
    zone_handlers.ResourcePoolAliasHandler,
    domain_handlers.DomainsHandler,
    domain_handlers.DomainHandler,
    network_handlers.FabricsHandler,
    network_handlers.FabricHandler,
    network_handlers.FabricVlansHandler,
    network_handlers.FabricVlanHandler,
    network_handlers.VlanHandler,
    network_handlers.SpacesHandler,
    network_handlers.SpaceHandler,
    subnet_handlers.SubnetsHandler,
    subnet_handlers.SubnetHandler,
    subnet_handlers.IPRangesHandler,
    subnet_handlers.IPRangeHandler,
    subnet_handlers.VmHostInterfacesHandler,
    subnet_handlers.VmHostInterfaceHandler,
    vmhost_handlers.VmHostsHandler,
    vmhost_handlers.VmHostHandler,
    vmhost_handlers.PodsHandler,
    vmhost_handlers.PodHandler,
    machine_handlers.MachinesHandler,
    machine_handlers.MachineHandler,
    interface_handlers.InterfacesHandler,
    interface_handlers.InterfaceHandler,
    boot_resource_handlers.BootResourcesHandler,
    boot_resource_handlers.BootResourceHandler,
    boot_resource_handlers.BootResourceFileUploadHandler,
    boot_resource_handlers.BootSourcesHandler,
    boot_resource_handlers.BootSourceHandler,
]
ENROL_PREFIX = "/MAAS/rpc/"
CERTIFICATE_PREFIX = "/MAAS/vmhost-certificate/"


class _Root(resource.Resource):
    """Routes by path prefix: the API, rack enrolment, VM-host certificates."""

    def __init__(self, routes: dict[str, resource.Resource]) -> None:
        super().__init__()
        self.routes = [(prefix.encode(), res) for prefix, res in routes.items()]

    def getChild(self, path: bytes, request: server.Request) -> resource.Resource:
        for prefix, res in self.routes:
            if request.path.startswith(prefix):
                return res
        if request.path in (b"/", b"/MAAS", b"/MAAS/", UI_PREFIX.rstrip("/").encode()):
            return util.Redirect(UI_PREFIX.encode())
        return resource.NoResource("No such page: try /MAAS/api/2.0/version/")


def make_site(region) -> server.Site:
    """The whole HTTP site; `region` is what handlers get (services.context.RegionResources)."""
    return RegionSite(_Root({
        API_PREFIX: RouterResource(region, API_HANDLERS, API_PREFIX),
        ENROL_PREFIX: RouterResource(region, [EnrolHandler], ENROL_PREFIX),
        CERTIFICATE_PREFIX: RouterResource(region, [vmhost_handlers.CertificateHandler], CERTIFICATE_PREFIX),
        IMAGES_PREFIX: ImageDownloadResource(region),
        METADATA_PREFIX: MetadataResource(region),
        METRICS_PATH: MetricsResource(region),
        UI_PREFIX: UiResource(region, region.reactor),
        account_handlers.ACCOUNTS_PREFIX: RouterResource(region, [account_handlers.AuthenticateHandler],
                                                         account_handlers.ACCOUNTS_PREFIX),
    }))
