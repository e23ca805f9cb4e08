"""DNS domains: only MAAS's default domain `maas` (id 0), which every machine's fqdn is in.

vmyard serves no DNS; Juju reads domains/ while it connects and clients read a machine's
domain, so the one domain is a fixed value rather than a table.
"""

from __future__ import annotations

import attrs

from region.services.context import Context
from region.services.errors import NotFound


@attrs.frozen
class Domain:
    id: int
    name: str
    ttl: int | None  # None: the region's default TTL
    authoritative: bool
    is_default: bool
    resource_record_count: int  # records added by hand (MAAS's DNSResources), not machines' own


DEFAULT_DOMAIN = Domain(id=0, name="maas", ttl=None, authoritative=True, is_default=True, resource_record_count=0)


async def list_domains(ctx: Context) -> list[Domain]:
    return [DEFAULT_DOMAIN]


async def get_domain(ctx: Context, key: str) -> Domain:
    """By id or by name, as MAAS's domains/{id}/ takes either."""
    if key in (str(DEFAULT_DOMAIN.id), DEFAULT_DOMAIN.name):
        return DEFAULT_DOMAIN
    raise NotFound("domain")
