"""vm-hosts/ and pods/ (MAAS 2.0 shapes), and the anonymous certificate URL.

Creating a host discovers it through a rack before anything is stored, so a
wrong password, an unreachable address or a non-LXD endpoint leaves nothing
behind; only a host that does not trust our certificate yet is kept, on
purpose, in state `awaiting-trust`.
"""

from __future__ import annotations

import attrs

from common import hosterrors
from common.models import HostTarget
from region.api.compose_handler import ComposeOperation
from region.api.errors import BadRequest, NotFound, ServiceUnavailable
from region.api.handler import Call, Handler, operation, restful
from region.api.params import Form
from region.api.site import Response
from region.api.vmhost_forms import HostFields, fingerprint, parse_host_fields, trust_secret
from region.api.vmhost_json import host_json, resources_json
from region.db import events, host_inventory, hosts, machines, named
from region.db.errors import NotFound as RowNotFound
from region.vmhosts import apply_discovery_thd, untrusted_message

_CHOICE = "Select a valid choice. That choice is not one of the available choices."
# Changing one of these makes an update rediscover the host.
_CONNECTION_FIELDS = ("power_address", "project", "certificate", "password")


def _named_thd(cur, kind, field: str, key: str | None):
    if key is None:
        return named.get_default_thd(cur, kind)
    try:
        return named.get_thd(cur, kind, key)
    except RowNotFound:
        raise BadRequest.field(field, _CHOICE) from None


def _discovery_error(e: hosterrors.DriverError) -> BadRequest | None:
    """The field a failed first discovery blames (None: not the request's fault)."""
    if isinstance(e, hosterrors.WrongTrustPassword):
        return BadRequest.field("password", str(e))
    if isinstance(e, (hosterrors.Unreachable, hosterrors.NotLXD, hosterrors.IncompatibleHost)):
        return BadRequest.field("power_address", str(e))
    return None


class VmHostsHandler(Handler):
    """Manage the collection of VM hosts."""

    path = "vm-hosts/"
    collection = "vm-hosts"

    async def _render(self, call: Call, host_list: list[hosts.VMHost]) -> list[dict]:
        def lookup_thd(cur):
            zones = {z.id: z for z in named.list_thd(cur, named.ZONES)}
            pools = {p.id: p for p in named.list_thd(cur, named.RESOURCE_POOLS)}
            vms = {h.id: machines.list_for_host_thd(cur, h.id) for h in host_list}
            return zones, pools, vms

        zones, pools, vms = await call.region.db.run(lookup_thd)
        return [host_json(h, zones[h.zone_id], pools[h.pool_id], vms[h.id], self.collection)
                for h in host_list]

    async def _render_one(self, call: Call, host: hosts.VMHost) -> dict:
        return (await self._render(call, [host]))[0]

    @restful("GET")
    async def read(self, call: Call):
        """List VM hosts, ordered by id."""
        return await self._render(call, await call.region.db.run(hosts.list_thd))

    @restful("POST", admin_only=True)
    async def create(self, call: Call):
        """Add a VM host (discovered through a rack before it is stored).

        :param type: Required. ``lxd`` (``virsh`` is not supported yet).
        :type type: String
        :param power_address: Required. Address of the host (``host[:8443]`` for LXD).
        :type power_address: String
        :param name: Optional. The host's name (default: derived from the address).
        :type name: String
        :param project: Optional. LXD project to use (created if missing; default ``default``).
        :type project: String
        :param password: Optional. LXD trust password or token, used once and never stored.
        :type password: String
        :param trust_token: Optional. LXD trust token (same as ``password``).
        :type trust_token: String
        :param certificate: Optional. PEM client certificate to use instead of a generated one.
        :type certificate: String
        :param key: Optional. PEM private key of ``certificate`` (no passphrase).
        :type key: String
        :param zone: Optional. Zone name.
        :type zone: String
        :param pool: Optional. Resource pool name.
        :type pool: String
        :param tags: Optional. Comma-separated tags.
        :type tags: String
        :param cpu_over_commit_ratio: Optional. 0-10, default 1.
        :type cpu_over_commit_ratio: Float
        :param memory_over_commit_ratio: Optional. 0-10, default 1.
        :type memory_over_commit_ratio: Float
        :param default_macvlan_mode: Optional. bridge, passthru, private or vepa.
        :type default_macvlan_mode: String
        """
        fields = parse_host_fields(call.params, creating=True)
        region = call.region

        def check_thd(cur):
            if hosts.name_taken_thd(cur, fields.name):
                raise BadRequest.field("name", f"A VM host named {fields.name!r} already exists.")
            twin = hosts.find_duplicate_thd(cur, fields.type, fields.power_address, fields.project)
            if twin is not None:
                raise BadRequest(f"VM host {twin} with type and parameters already exist.")
            return _named_thd(cur, named.ZONES, "zone", fields.zone), \
                _named_thd(cur, named.RESOURCE_POOLS, "pool", fields.pool)

        zone, pool = await region.db.run(check_thd)
        target = HostTarget(type=fields.type, address=fields.power_address, project=fields.project,
                            cert_pem=fields.certificate, key_pem=fields.key)
        try:
            found = await region.hosts.discover(target, fields.password)
        except hosterrors.Untrusted:
            found = None
        except hosterrors.DriverError as e:
            raise _discovery_error(e) or e from None

        def create_thd(cur):
            new = hosts.NewHost(fields.name, fields.type, fields.power_address, fields.project,
                                fields.certificate, fields.key, zone.id, pool.id, fields.tags or [],
                                _or(fields.cpu_over_commit_ratio, 1.0), _or(fields.memory_over_commit_ratio, 1.0),
                                fields.default_macvlan_mode or None)
            host = hosts.create_thd(cur, region.box, new)
            events.record_thd(cur, "VM_HOST_CREATED", f"VM host {host.name} added", level="AUDIT",
                              username=call.user.username, object_type="vm-host", object_id=host.id)
            if found is None:
                hosts.record_failure_thd(cur, host.id, "awaiting-trust",
                                         untrusted_message(region.hosts.region_url, host.name))
            else:
                apply_discovery_thd(cur, host, found, call.user.username)
            hosts.schedule_refresh_thd(cur, host.id, region.hosts.next_refresh_in())
            return hosts.get_thd(cur, host.id)

        return await self._render_one(call, await region.db.run(create_thd))


class VmHostHandler(ComposeOperation, VmHostsHandler):
    """Manage one VM host."""

    path = "vm-hosts/{id}/"

    create = None  # no POST without an op on an item

    @restful("GET")
    async def read(self, call: Call):
        """Read a VM host."""
        return await self._render_one(call, await call.region.db.run(hosts.get_thd, call.path_args["id"]))

    @restful("PUT", admin_only=True)
    async def update(self, call: Call):
        """Update a VM host; changing how it is reached rediscovers it.

        :param name: Optional. New name.
        :type name: String
        :param power_address: Optional. New address.
        :type power_address: String
        :param password: Optional. Trust password or token, used once.
        :type password: String
        :param project: Optional. LXD project.
        :type project: String
        :param zone: Optional. Zone name.
        :type zone: String
        :param pool: Optional. Resource pool name.
        :type pool: String
        :param tags: Optional. Comma-separated tags (replaces the list).
        :type tags: String
        :param cpu_over_commit_ratio: Optional. 0-10.
        :type cpu_over_commit_ratio: Float
        :param memory_over_commit_ratio: Optional. 0-10.
        :type memory_over_commit_ratio: Float
        :param default_storage_pool: Optional. Name or id of one of the host's storage pools.
        :type default_storage_pool: String
        :param default_macvlan_mode: Optional. bridge, passthru, private, vepa, or empty to clear.
        :type default_macvlan_mode: String
        :param certificate: Optional. New PEM certificate (with ``key``); both empty: generate a new pair.
        :type certificate: String
        :param key: Optional. New PEM key.
        :type key: String
        """
        region = call.region
        current = await region.db.run(hosts.get_thd, call.path_args["id"])
        fields = parse_host_fields(call.params, creating=False, current_type=current.type,
                                   current_name=current.name)

        def update_thd(cur):
            changes = _changes_thd(cur, current, fields)
            host = hosts.update_thd(cur, region.box, current.id, changes, key=fields.key)
            events.record_thd(cur, "VM_HOST_UPDATED", f"VM host {host.name} updated: {', '.join(sorted(changes))}",
                              level="AUDIT", username=call.user.username, object_type="vm-host", object_id=host.id)
            return host

        host = await region.db.run(update_thd)
        if any(getattr(fields, f) is not None for f in _CONNECTION_FIELDS):
            try:
                host = await region.hosts.refresh(host.id, fields.password, call.user.username)
            except hosterrors.DriverError:
                # As in MAAS the update stands; the read object carries the state and reason.
                host = await region.db.run(hosts.get_thd, host.id)
        return await self._render_one(call, host)

    @restful("DELETE", admin_only=True)
    async def delete(self, call: Call):
        """Forget a VM host; its VMs stay on the host unless ``decompose`` is true.

        :param decompose: Optional. Delete the host's VMs in LXD first; if any cannot be deleted,
            nothing else is removed and the reply (503) names them.
        :type decompose: Boolean
        """
        region = call.region
        host = await region.db.run(hosts.get_thd, call.path_args["id"])
        if (call.params.get("decompose") or "").lower() in ("true", "1", "yes", "on"):
            await self._decompose_all(call, host)

        def delete_thd(cur):
            gone = hosts.delete_thd(cur, host.id)
            events.record_thd(cur, "VM_HOST_DELETED", f"VM host {gone.name} removed", level="AUDIT",
                              username=call.user.username, object_type="vm-host", object_id=gone.id)

        await region.db.run(delete_thd)
        return Response(204)

    async def _decompose_all(self, call: Call, host: hosts.VMHost) -> None:
        region = call.region
        _, target = await region.hosts.target(host.id)
        vms = await region.db.run(machines.list_for_host_thd, host.id)
        failed = []
        for vm in vms:
            try:
                await region.hosts.delete_vm(attrs.evolve(target, project=vm.project), vm.instance_name)
            except hosterrors.DriverError as e:
                failed.append(f"{vm.hostname}: {e}")
                continue
            await region.db.run(machines.delete_thd, vm.id)
        if failed:
            raise ServiceUnavailable(
                f"VM host {host.name} was kept because {len(failed)} of its VMs could not be deleted: "
                + "; ".join(failed) + ". Fix the host and retry, or delete without decompose.")

    @operation("POST", "refresh", admin_only=True)
    async def refresh(self, call: Call):
        """Rediscover the host now (completes a registration once the certificate is trusted).

        :param password: Optional. Trust password or token, used once.
        :type password: String
        """
        host_id = (await call.region.db.run(hosts.get_thd, call.path_args["id"])).id
        try:
            host = await call.region.hosts.refresh(host_id, trust_secret(call.params), call.user.username)
        except hosterrors.DriverError:
            # The recorded message is the helpful one (e.g. the exact trust command).
            host = await call.region.db.run(hosts.get_thd, host_id)
        if host.state != "ready":
            raise ServiceUnavailable(host.state_message)
        return await self._render_one(call, host)

    @operation("POST", "trust_server", admin_only=True)
    async def trust_server(self, call: Call):
        """Accept the host's current TLS certificate after a legitimate change, then refresh.

        :param fingerprint: Optional. The SHA-256 fingerprint the host must present (as
            ``lxc info`` prints it); without it, whatever the host presents now is pinned.
        :type fingerprint: String
        """
        form = Form(call.params)
        expected = fingerprint(form)
        form.check()
        region = call.region

        def repin_thd(cur):
            host = hosts.get_thd(cur, call.path_args["id"])
            hosts.update_thd(cur, region.box, host.id, {"server_fingerprint": expected})
            events.record_thd(cur, "VM_HOST_SERVER_TRUSTED",
                              f"VM host {host.name}: server certificate pin reset to {expected or 'the next one seen'}",
                              level="AUDIT", username=call.user.username, object_type="vm-host", object_id=host.id)
            return host.id

        host = await region.hosts.refresh(await region.db.run(repin_thd), None, call.user.username)
        if host.state != "ready":
            raise ServiceUnavailable(host.state_message)
        return await self._render_one(call, host)

    @operation("GET", "parameters", admin_only=True)
    async def parameters(self, call: Call):
        """The host's connection parameters, including its private key."""
        region = call.region

        def parameters_thd(cur):
            host = hosts.get_thd(cur, call.path_args["id"])
            return {"power_address": host.power_address, "project": host.project,
                    "certificate": host.certificate, "key": hosts.key_thd(cur, region.box, host.id)}

        return await region.db.run(parameters_thd)

    @operation("GET", "resources")
    async def resources(self, call: Call):
        """Per-NUMA-node cores, memory, hugepages, VMs and interfaces."""
        def resources_thd(cur):
            host = hosts.get_thd(cur, call.path_args["id"])
            return resources_json(host, host_inventory.numa_nodes_thd(cur, host.id),
                                  host_inventory.interfaces_thd(cur, host.id),
                                  machines.list_for_host_thd(cur, host.id), machines.vfs_used_thd(cur, host.id))

        return await call.region.db.run(resources_thd)

    @operation("POST", "add_tag", admin_only=True)
    async def add_tag(self, call: Call):
        """Add a tag to the host.

        :param tag: Required. The tag.
        :type tag: String
        """
        tag = _tag(call)
        if "," in tag:
            raise BadRequest('Tag may not contain a ",".')
        return await self._retag(call, lambda tags: tags if tag in tags else [*tags, tag])

    @operation("POST", "remove_tag", admin_only=True)
    async def remove_tag(self, call: Call):
        """Remove a tag from the host.

        :param tag: Required. The tag.
        :type tag: String
        """
        tag = _tag(call)
        return await self._retag(call, lambda tags: [t for t in tags if t != tag])

    async def _retag(self, call: Call, change) -> dict:
        def retag_thd(cur):
            host = hosts.get_thd(cur, call.path_args["id"])
            return hosts.update_thd(cur, call.region.box, host.id, {"tags": change(list(host.tags))})

        return await self._render_one(call, await call.region.db.run(retag_thd))


def _tag(call: Call) -> str:
    tag = (call.params.get("tag") or "").strip()
    if not tag:
        raise BadRequest("No provided tag!")
    return tag


def _or(value, default):
    return default if value is None else value


def _changes_thd(cur, current: hosts.VMHost, fields: HostFields) -> dict:
    """Column changes for an update, after checking names against the database."""
    changes: dict = {}
    for column in ("name", "power_address", "project", "tags", "cpu_over_commit_ratio",
                   "memory_over_commit_ratio", "certificate"):
        value = getattr(fields, column)
        if value is not None:
            changes[column] = value
    if fields.default_macvlan_mode is not None:
        changes["default_macvlan_mode"] = fields.default_macvlan_mode or None
    if fields.zone is not None:
        changes["zone_id"] = _named_thd(cur, named.ZONES, "zone", fields.zone).id
    if fields.pool is not None:
        changes["pool_id"] = _named_thd(cur, named.RESOURCE_POOLS, "pool", fields.pool).id
    if fields.default_storage_pool is not None:
        wanted = fields.default_storage_pool
        match = [p.name for p in current.storage_pools if wanted in (p.name, str(p.id))]
        if not match:
            raise BadRequest.field("default_storage_pool", f"{wanted!r} is not a storage pool of this VM host.")
        changes["default_storage_pool"] = match[0]
    if "name" in changes and hosts.name_taken_thd(cur, changes["name"], current.id):
        raise BadRequest.field("name", f"A VM host named {changes['name']!r} already exists.")
    address, project = changes.get("power_address", current.power_address), changes.get("project", current.project)
    twin = hosts.find_duplicate_thd(cur, current.type, address, project, current.id)
    if twin is not None:
        raise BadRequest(f"VM host {twin} with type and parameters already exist.")
    return changes


class PodsHandler(VmHostsHandler):
    """Manage the collection of VM hosts (deprecated name)."""

    path = "pods/"
    collection = "pods"


class PodHandler(VmHostHandler):
    """Manage one VM host (deprecated name)."""

    path = "pods/{id}/"
    collection = "pods"


class CertificateHandler(Handler):
    """The client certificate of a VM host, for ``lxc config trust add -``."""

    path = "{name}"

    @restful("GET", anonymous=True)
    async def read(self, call: Call):
        """Download a VM host's certificate (PEM, text/plain)."""
        cert = await call.region.db.run(hosts.certificate_by_name_thd, call.path_args["name"])
        if not cert:
            raise NotFound("No VM host with a certificate has that name.")
        return Response(200, cert, "text/plain")
