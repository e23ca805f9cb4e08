"""The libvirt (virsh) VM-host driver: qemu+ssh with a password, through libvirt's Python bindings.

Connections are per job (rack/drivers/virsh_conn.py: pinned SSH host key, password from an
auth callback).  Composed domains carry vmyard's metadata (rack/drivers/virsh_xml.py), which
is how delete knows what it may remove.  Deploying is rack/drivers/virsh_deploy.py.
"""

from __future__ import annotations

import contextlib
import uuid
import xml.etree.ElementTree as ET

import libvirt

from common.hosterrors import DriverError
from common.models import ComposeRequest, DiscoveredHost, DiscoveredVM, HostTarget, Project
from rack.drivers import virsh_inventory as inventory
from rack.drivers.virsh_conn import connect, libvirt_error
from rack.drivers.virsh_deploy import VirshDeployMixin
from rack.drivers.virsh_domains import create_volume, delete_volume, domain_or_error, lookup, stop
from rack.drivers.virsh_xml import MadeVolume, domain_xml, ownership

class VirshDriver(VirshDeployMixin):
    """Implements rack.drivers.base.VMHostDriver for libvirt hosts (no projects: project is "")."""

    def discover(self, target: HostTarget, password: str | None = None) -> DiscoveredHost:
        with connect(target, password) as (conn, host_key):
            try:
                caps = ET.fromstring(conn.getCapabilities())
                _, memory_mib, cpus, mhz, *_ = conn.getInfo()
                return DiscoveredHost(
                    name=conn.getHostname(), version=inventory.version(conn),
                    architectures=inventory.architectures(caps), cores=cpus, cpu_speed=mhz,
                    memory=memory_mib * 1024 * 1024, numa_nodes=inventory.numa_nodes(conn, caps),
                    storage_pools=inventory.storage_pools(conn), interfaces=inventory.interfaces(conn),
                    projects=[], server_fingerprint=host_key, capabilities=list(inventory.CAPABILITIES),
                    vms=inventory.domains(conn, target.project))
            except libvirt.libvirtError as e:
                raise libvirt_error("cannot describe the libvirt host", e) from None

    def discover_projects(self, target: HostTarget, password: str | None = None) -> list[Project]:
        return []

    def compose_vm(self, target: HostTarget, request: ComposeRequest) -> DiscoveredVM:
        with connect(target) as (conn, _):
            existing = lookup(conn, request.instance_name)
            if existing is not None:
                owned = ownership(ET.fromstring(existing.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)))
                if request.reservation and owned is not None and owned.reservation == request.reservation:
                    return inventory.domain_vm(conn, existing, target.project)  # a repeated request
                raise DriverError(f"a domain named {request.instance_name} already exists on the libvirt host")
            made: list[MadeVolume] = []
            try:
                for disk in request.disks:
                    volume = MadeVolume(disk.name, disk.pool, str(uuid.uuid4()))
                    create_volume(conn, disk.pool, volume.name, disk.size)
                    made.append(volume)
                caps = ET.fromstring(conn.getCapabilities())
                networks = {n.name for n in inventory.interfaces(conn)}
                xml = domain_xml(request, made, networks, inventory.virt_type(caps))
                try:
                    domain = conn.defineXML(xml)
                except libvirt.libvirtError as e:
                    raise libvirt_error(f"libvirt refused domain {request.instance_name}", e) from None
                return inventory.domain_vm(conn, domain, target.project)
            except BaseException:
                self._undo_compose(conn, request.instance_name, made)
                raise

    @staticmethod
    def _undo_compose(conn: libvirt.virConnect, name: str, made: list[MadeVolume]) -> None:
        with contextlib.suppress(libvirt.libvirtError, DriverError):
            domain = lookup(conn, name)
            if domain is not None and ownership(ET.fromstring(domain.XMLDesc(0))) is not None:
                domain.undefine()
        for volume in made:
            delete_volume(conn, volume)

    def delete_vm(self, target: HostTarget, instance_name: str, root_disk_only: bool = False) -> list[str]:
        with connect(target) as (conn, _):
            domain = lookup(conn, instance_name)
            if domain is None:
                return [f"domain {instance_name} was already gone from the libvirt host"]
            owned = ownership(ET.fromstring(domain.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)))
            if owned is None:
                raise DriverError(f"domain {instance_name} was not composed by vmyard (it was on the host "
                                  f"before); vmyard never deletes such a domain: remove it with virsh")
            stop(domain)
            try:
                domain.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM | libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE)
            except libvirt.libvirtError as e:
                raise libvirt_error(f"cannot undefine {instance_name}", e) from None
            return [w for w in (delete_volume(conn, v) for v in owned.volumes) if w]

    def power_state(self, target: HostTarget, instance_name: str) -> str:
        with connect(target) as (conn, _):
            return inventory.power_state(domain_or_error(conn, instance_name))

    def power_on(self, target: HostTarget, instance_name: str) -> str:
        with connect(target) as (conn, _):
            domain = domain_or_error(conn, instance_name)
            if not domain.isActive():
                try:
                    domain.create()
                except libvirt.libvirtError as e:
                    raise libvirt_error(f"libvirt could not start {instance_name}", e) from None
            return inventory.power_state(domain)

    def power_off(self, target: HostTarget, instance_name: str) -> str:
        with connect(target) as (conn, _):
            domain = domain_or_error(conn, instance_name)
            stop(domain)
            return inventory.power_state(domain)
