"""domains/ (read-only): the default domain `maas`, as Juju reads it while connecting."""

from __future__ import annotations

from region.api.handler import Call, Handler, restful
from region.api.site import API_PREFIX
from region.services import domains as domain_service
from region.services.domains import Domain


def domain_json(d: Domain) -> dict:
    return {"id": d.id, "name": d.name, "ttl": d.ttl, "authoritative": d.authoritative,
            "resource_record_count": d.resource_record_count, "is_default": d.is_default,
            "resource_uri": f"{API_PREFIX}domains/{d.id}/"}


class DomainsHandler(Handler):
    """Read DNS domains (vmyard has one: the default domain `maas`)."""

    path = "domains/"

    @restful("GET")
    async def read(self, call: Call):
        """List the domains."""
        return [domain_json(d) for d in await domain_service.list_domains(call.ctx)]


class DomainHandler(Handler):
    """Read a DNS domain, by id or name."""

    path = "domains/{id}/"

    @restful("GET")
    async def read(self, call: Call):
        """Read a domain."""
        return domain_json(await domain_service.get_domain(call.ctx, call.path_args["id"]))
