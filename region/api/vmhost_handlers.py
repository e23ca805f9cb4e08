"""vm-hosts/ and pods/ (MAAS 2.0 shapes), and the anonymous certificate URL.

Each action parses the request, makes one call to `region.services.vmhosts` (or
`vmhost_ops`) and renders the result.
"""

from __future__ import annotations

from functools import partial

import attrs

from region.api.compose_handler import ComposeOperation
from region.api.errors import BadRequest, NotFound
from region.api.handler import Call, Handler, operation, restful
from region.api.params import Form
from region.api.site import Response
from region.api.streaming import json_list_chunks, streamed
from region.api.vmhost_forms import fingerprint, parse_host_fields, trust_secret
from region.api.vmhost_json import host_json, resources_json
from region.services import vmhost_ops, vmhosts

TRUE = ("true", "1", "yes", "on")
HOSTS_PER_CHUNK = 200


class VmHostsHandler(Handler):
    """Manage the collection of VM hosts."""

    path = "vm-hosts/"
    collection = "vm-hosts"

    def _render(self, call: Call, view: vmhosts.HostView) -> dict:
        return host_json(view, self.collection, admin=call.ctx.is_admin)

    @restful("GET")
    async def read(self, call: Call):
        """List VM hosts, ordered by id."""
        return await streamed(vmhosts.list_hosts(call.ctx), partial(
            json_list_chunks, render=partial(self._render, call), per_chunk=HOSTS_PER_CHUNK))

    @restful("POST", admin_only=True)
    async def create(self, call: Call):
        """Add a VM host (discovered through a rack before it is stored).

        :param type: Required. ``lxd`` or ``virsh`` (libvirt over SSH).
        :type type: String
        :param power_address: Required. Address of the host (``host[:8443]`` for LXD,
            ``qemu+ssh://user@host[:port]/system`` for virsh).
        :type power_address: String
        :param name: Optional. The host's name (default: derived from the address).
        :type name: String
        :param project: Optional. LXD project to use (created if missing; default ``default``).
        :type project: String
        :param password: Optional. LXD trust password or token, used once and never stored.
        :type password: String
        :param power_pass: Optional. virsh: the SSH password (stored encrypted; the host key is pinned
            on first use). LXD: the same as ``password``.
        :type power_pass: String
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
        :param deploy_profiles: Optional. LXD profiles deployed machines also get, comma-separated.
        :type deploy_profiles: String
        """
        fields = parse_host_fields(call.params, creating=True)
        return self._render(call, await vmhosts.create_host(call.ctx, fields))


class VmHostHandler(ComposeOperation, VmHostsHandler):
    """Manage one VM host."""

    path = "vm-hosts/{id}/"

    create = None  # no POST without an op on an item

    @restful("GET")
    async def read(self, call: Call):
        """Read a VM host."""
        return self._render(call, await vmhosts.get_host(call.ctx, call.path_args["id"]))

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
        :param deploy_profiles: Optional. LXD profiles (in the host's project) that deployed machines also
            get, comma-separated (e.g. a GPU, or a proxy device back to the region); empty clears them.
        :type deploy_profiles: String
        """
        def read_fields(current):
            return parse_host_fields(call.params, creating=False, current_type=current.type,
                                     current_name=current.name)

        return self._render(call, await vmhosts.update_host(call.ctx, call.path_args["id"], read_fields))

    @restful("DELETE", admin_only=True)
    async def delete(self, call: Call):
        """Forget a VM host; its VMs stay on the host unless ``decompose`` is true.

        :param decompose: Optional. Delete the host's VMs in LXD first; if any cannot be deleted,
            nothing else is removed and the reply (503) names them.
        :type decompose: Boolean
        """
        decompose = (call.params.get("decompose") or "").lower() in TRUE
        await vmhosts.delete_host(call.ctx, call.path_args["id"], decompose=decompose)
        return Response(204)

    @operation("POST", "refresh", admin_only=True)
    async def refresh(self, call: Call):
        """Rediscover the host now (completes a registration once the certificate is trusted).

        :param password: Optional. Trust password or token, used once.
        :type password: String
        """
        return self._render(call, await vmhost_ops.refresh(call.ctx, call.path_args["id"], trust_secret(call.params)))

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
        return self._render(call, await vmhost_ops.trust_server(call.ctx, call.path_args["id"], expected))

    @operation("GET", "parameters", admin_only=True)
    async def parameters(self, call: Call):
        """The host's connection parameters, including its private key."""
        return attrs.asdict(await vmhost_ops.parameters(call.ctx, call.path_args["id"]))

    @operation("GET", "resources")
    async def resources(self, call: Call):
        """Per-NUMA-node cores, memory, hugepages, VMs and interfaces."""
        return resources_json(await vmhost_ops.resources(call.ctx, call.path_args["id"]))

    @operation("POST", "add_tag", admin_only=True)
    async def add_tag(self, call: Call):
        """Add a tag to the host.

        :param tag: Required. The tag.
        :type tag: String
        """
        return self._render(call, await vmhost_ops.add_tag(call.ctx, call.path_args["id"], _tag(call)))

    @operation("POST", "remove_tag", admin_only=True)
    async def remove_tag(self, call: Call):
        """Remove a tag from the host.

        :param tag: Required. The tag.
        :type tag: String
        """
        return self._render(call, await vmhost_ops.remove_tag(call.ctx, call.path_args["id"], _tag(call)))


def _tag(call: Call) -> str:
    tag = (call.params.get("tag") or "").strip()
    if not tag:
        raise BadRequest("No provided tag!")
    return tag


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
        cert = await vmhosts.certificate(call.ctx, call.path_args["name"])
        if not cert:
            raise NotFound("No VM host with a certificate has that name.")
        return Response(200, cert, "text/plain")
