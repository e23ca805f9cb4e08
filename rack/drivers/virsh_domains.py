"""Small libvirt steps the virsh driver's compose, delete, power and deploy share."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape

import libvirt

from common.hosterrors import DriverError
from rack.drivers.virsh_conn import libvirt_error
from rack.drivers.virsh_xml import MadeVolume

# Formats only file-backed pools take; block pools (logical, disk, iscsi…) hold raw data as is.
_FILE_POOLS = ("dir", "fs", "netfs")


def lookup(conn: libvirt.virConnect, name: str) -> libvirt.virDomain | None:
    try:
        return conn.lookupByName(name)
    except libvirt.libvirtError as e:
        if e.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            return None
        raise libvirt_error(f"cannot look up domain {name}", e) from None


def domain_or_error(conn: libvirt.virConnect, name: str) -> libvirt.virDomain:
    domain = lookup(conn, name)
    if domain is None:
        raise DriverError(f"no domain named {name} on the libvirt host")
    return domain


def create_volume(conn: libvirt.virConnect, pool_name: str, name: str, size: int) -> libvirt.virStorageVol:
    try:
        pool = conn.storagePoolLookupByName(pool_name)
        kind = ET.fromstring(pool.XMLDesc(0)).get("type")
        target = "<target><format type='raw'/></target>" if kind in _FILE_POOLS else ""
        return pool.createXML(f"<volume><name>{escape(name)}</name><capacity unit='bytes'>{size}</capacity>"
                              f"<allocation unit='bytes'>0</allocation>{target}</volume>", 0)
    except libvirt.libvirtError as e:
        raise libvirt_error(f"cannot create a {size}-byte volume in storage pool {pool_name}", e) from None


def delete_volume(conn: libvirt.virConnect, volume: MadeVolume) -> str | None:
    """Delete one volume vmyard made; a warning when it cannot (None: done or already gone)."""
    try:
        conn.storagePoolLookupByName(volume.pool).storageVolLookupByName(volume.name).delete(0)
    except libvirt.libvirtError as e:
        if e.get_error_code() in (libvirt.VIR_ERR_NO_STORAGE_VOL, libvirt.VIR_ERR_NO_STORAGE_POOL):
            return None
        return f"volume {volume.pool}/{volume.name} could not be deleted: {e.get_error_message()}"
    return None


def stop(domain: libvirt.virDomain) -> None:
    if domain.isActive():
        try:
            domain.destroy()
        except libvirt.libvirtError as e:
            if domain.isActive():
                raise libvirt_error(f"cannot stop {domain.name()}", e) from None
