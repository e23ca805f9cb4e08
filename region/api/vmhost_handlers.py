"""vm-hosts/ and pods/ (MAAS 2.0 shapes), and the anonymous certificate URL."""

from __future__ import annotations

import re
import socket

from common import tls
from region.api.errors import BadRequest, NotFound
from region.api.handler import Call, Handler, restful
from region.api.params import Form
from region.api.site import API_PREFIX, Response
from region.api.zone_handlers import pool_json, zone_json
from region.db import events, hosts, named
from region.db.errors import NotFound as RowNotFound

MIB = 1024 * 1024
MACVLAN_MODES = ("bridge", "passthru", "private", "vepa")
CERT_DAYS_DEFAULT = 3650


def client_cn(name: str) -> str:
    """'<host>@<controller>', capped at 64 characters as LXD shows it."""
    controller = socket.gethostname()[:32]
    return f"{name[: 63 - len(controller)]}@{controller}"[:64]


def host_json(host: hosts.VMHost, zone, pool, collection: str) -> dict:
    used_storage = sum(p.used for p in host.storage_pools)
    total_storage = sum(p.total for p in host.storage_pools)
    total = {"cores": host.cores, "memory": host.memory // MIB, "local_storage": total_storage}
    used = {"cores": 0, "memory": 0, "local_storage": 0}  # VMs are accounted in the compose work
    return {
        "id": host.id,
        "name": host.name,
        "type": host.type,
        "version": host.version,
        "state": host.state,
        "state_message": host.state_message,
        "tags": list(host.tags),
        "architectures": list(host.architectures),
        "capabilities": list(host.capabilities),
        "total": total,
        "used": used,
        "available": {k: total[k] - used[k] for k in total},
        "zone": zone_json(zone),
        "pool": pool_json(pool),
        "cpu_over_commit_ratio": float(host.cpu_over_commit_ratio),
        "memory_over_commit_ratio": float(host.memory_over_commit_ratio),
        "default_macvlan_mode": host.default_macvlan_mode,
        "storage_pools": [
            {"id": p.id, "name": p.name, "type": p.type, "path": p.path, "total": p.total, "used": p.used,
             "available": p.available, "default": p.name == host.default_storage_pool}
            for p in host.storage_pools
        ],
        "host": {"system_id": None, "__incomplete__": True},
        "resource_uri": f"{API_PREFIX}{collection}/{host.id}/",
    }


def _name_from_address(address: str | None) -> str:
    """'10.1.2.3:8443' -> '10-1-2-3-8443': a valid name when none was given."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", address or "host").strip("-") or "host"


def _ratio(form: Form, field: str) -> float:
    raw = form.params.get(field)
    if raw is None or raw == "":
        return 1.0
    try:
        value = float(raw)
    except ValueError:
        form.error(field, "Enter a number.")
        return 1.0
    if value < 0:
        form.error(field, "Ensure this value is greater than or equal to 0.")
    elif value > 10:
        form.error(field, "Ensure this value is less than or equal to 10.")
    return value


def _identity(form: Form, name: str, days: int) -> tuple[str | None, str | None]:
    """The client certificate and key: imported and checked, or generated."""
    cert, key = form.params.get("certificate") or None, form.params.get("key") or None
    if cert is None and key is None:
        pair = tls.make_self_signed(client_cn(name), days=days, kind="rsa")
        return pair.cert_pem, pair.key_pem
    if cert is None or key is None:
        form.error("certificate" if cert is None else "key", "certificate and key must be given together.")
        return None, None
    try:
        tls.load_cert(cert)
    except tls.CertificateError as e:
        form.error("certificate", str(e))
        return None, None
    try:
        tls.check_pair(cert, key)
    except tls.CertificateError as e:
        form.error("key", str(e))
        return None, None
    return cert, key


class VmHostsHandler(Handler):
    """Manage the collection of VM hosts."""

    path = "vm-hosts/"
    collection = "vm-hosts"

    async def _render(self, call: Call, host_list: list[hosts.VMHost]) -> list[dict]:
        def lookup_thd(cur):
            return ({z.id: z for z in named.list_thd(cur, named.ZONES)},
                    {p.id: p for p in named.list_thd(cur, named.RESOURCE_POOLS)})

        zones, pools = await call.region.db.run(lookup_thd)
        return [host_json(h, zones[h.zone_id], pools[h.pool_id], self.collection) for h in host_list]

    @restful("GET")
    async def read(self, call: Call):
        """List VM hosts, ordered by id."""
        return await self._render(call, await call.region.db.run(hosts.list_thd))

    @restful("POST", admin_only=True)
    async def create(self, call: Call):
        """Add a VM host.

        :param type: Required. ``lxd`` or ``virsh``.
        :type type: String
        :param power_address: Required. Address of the host (``host:8443`` for LXD).
        :type power_address: String
        :param name: Optional. The host's name.
        :type name: String
        :param project: Optional. LXD project to use (created if missing).
        :type project: String
        :param password: Optional. LXD trust password or token, used once and never stored.
        :type password: String
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
        """
        form = Form(call.params)
        host_type = form.text("type", required=True)
        if host_type is not None and host_type not in ("lxd", "virsh"):
            form.error("type", "Select a valid choice. That choice is not one of the available choices.")
        address = form.text("power_address", required=True, max_length=255)
        name = form.name() or _name_from_address(address)
        project = form.text("project", max_length=63) or ("default" if host_type == "lxd" else "")
        cpu_ratio = _ratio(form, "cpu_over_commit_ratio")
        mem_ratio = _ratio(form, "memory_over_commit_ratio")
        macvlan = form.text("default_macvlan_mode") or None
        if macvlan is not None and macvlan not in MACVLAN_MODES:
            form.error("default_macvlan_mode", f"Select one of {', '.join(MACVLAN_MODES)}.")
        tags = call.params.getlist("tags", split_commas=True)
        cert = key = None
        if host_type == "lxd" and not form.errors:
            cert, key = _identity(form, name, CERT_DAYS_DEFAULT)
        form.check()
        zone_name, pool_name = call.params.get("zone"), call.params.get("pool")

        def create_thd(cur):
            try:
                zone = named.get_thd(cur, named.ZONES, zone_name) if zone_name else \
                    named.get_default_thd(cur, named.ZONES)
                pool = named.get_thd(cur, named.RESOURCE_POOLS, pool_name) if pool_name else \
                    named.get_default_thd(cur, named.RESOURCE_POOLS)
            except RowNotFound as e:
                field = "zone" if "zone" in str(e) else "pool"
                raise BadRequest.field(field, "Select a valid choice. That choice is not one of the "
                                              "available choices.") from None
            new = hosts.NewHost(name, host_type, address, project, cert, key, zone.id, pool.id, tags,
                                cpu_ratio, mem_ratio, macvlan)
            host = hosts.create_thd(cur, call.region.box, new)
            events.record_thd(cur, "VM_HOST_CREATED", f"VM host {host.name} added", level="AUDIT",
                              username=call.user.username, object_type="vm-host", object_id=host.id)
            return host

        host = await call.region.db.run(create_thd)
        return (await self._render(call, [host]))[0]


class VmHostHandler(VmHostsHandler):
    """Manage one VM host."""

    path = "vm-hosts/{id}/"

    @restful("GET")
    async def read(self, call: Call):
        """Read a VM host."""
        host = await call.region.db.run(hosts.get_thd, call.path_args["id"])
        return (await self._render(call, [host]))[0]

    create = None  # no POST without an op on an item

    @restful("DELETE", admin_only=True)
    async def delete(self, call: Call):
        """Forget a VM host (its VMs stay on the host).

        :param decompose: Optional. Also delete the host's VMs.
        :type decompose: Boolean
        """
        def delete_thd(cur):
            host = hosts.delete_thd(cur, call.path_args["id"])
            events.record_thd(cur, "VM_HOST_DELETED", f"VM host {host.name} removed", level="AUDIT",
                              username=call.user.username, object_type="vm-host", object_id=host.id)

        await call.region.db.run(delete_thd)
        return Response(204)


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
