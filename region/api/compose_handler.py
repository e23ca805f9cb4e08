"""`op=compose` on vm-hosts/{id}/ (and pods/{id}/)."""

from __future__ import annotations

from region.api.compose_form import compose_fields
from region.api.handler import Call, operation
from region.api.machine_json import machine_uri
from region.services import compose


class ComposeOperation:
    """Mixed into the VM host item handlers."""

    @operation("POST", "compose", admin_only=True)
    async def compose(self, call: Call):
        """Compose a virtual machine (or an LXD container) on the host.

        A request that does not fit is refused with 409 and a message saying
        which resource falls short, by how much, per NUMA node where relevant.

        :param cores: Optional. vCPUs (default 1, or the number of pinned cores), at most 4096.
        :type cores: Int
        :param pinned_cores: Optional. Host cores to pin (repeat, or ``0-3,8``), at most 1024.
        :type pinned_cores: Int
        :param memory: Optional. MiB (default 2048, at least 1024, at most 2^30).
        :type memory: Int
        :param hugepages_backed: Optional. Back the memory with the host's hugepages (VMs only:
            refused for a container).
        :type hugepages_backed: Boolean
        :param architecture: Optional. One of the host's architectures.
        :type architecture: String
        :param cpu_speed: Optional. MHz (accepted for compatibility).
        :type cpu_speed: Int
        :param hostname: Optional. Hostname (also the LXD instance name).
        :type hostname: String
        :param zone: Optional. Zone name or id (default: the default zone).
        :type zone: String
        :param pool: Optional. Resource pool name or id (default: the host's).
        :type pool: String
        :param storage: Optional. ``label:size(pool),…`` in GB (default ``root:8(local)``); a tag
            naming a storage pool puts the disk there, else the default pool, else the emptiest.
            At most 64 disks of at most 1 PB each, 4096 characters in all.
        :type storage: String
        :param interfaces: Optional. ``label:key=value[,…][;…]`` with keys such as space, subnet,
            vlan, fabric, ip (a static address from that subnet); at most 64 labels, 8192 characters.
        :type interfaces: String
        :param instance_type: Optional (vmyard, beyond MAAS). ``virtual-machine`` (default) or
            ``container``: an LXD container with the same limits, NICs and disks (data disks mounted
            at ``/mnt/<label>``), made empty like a VM until it is deployed.
        :type instance_type: String
        """
        machine = await compose.compose(call.ctx, call.path_args["id"], compose_fields(call.params))
        return {"system_id": machine.system_id, "resource_uri": machine_uri(machine.system_id)}
