"""Typed values describing VM hosts, shared by rack drivers and the region.

Plain attrs classes with only str/int/bool, lists, optionals and nested attrs
classes, so cattrs (un)structures them without hooks.  Sizes are in bytes,
CPU speeds in MHz, link speeds in Mbit/s.
"""

from __future__ import annotations

import attrs

# LXD instance types a machine can be (LXD's own names).
VIRTUAL_MACHINE = "virtual-machine"
CONTAINER = "container"
INSTANCE_TYPES = (VIRTUAL_MACHINE, CONTAINER)


@attrs.frozen
class HostTarget:
    """One VM host as a rack needs it for a job: where it is, which project, and the
    client identity to present.  Sent whole as one AMP argument with every host command
    and passed whole down to the driver, so any rack can serve any host.

    `server_fingerprint` is the SHA-256 (lower-case hex) of the host's TLS certificate,
    learned at the first discovery and pinned afterwards; None means "not pinned yet".
    For virsh it is the SSH host key ("ssh-ed25519 AAAA…") or, until the next discovery
    replaces it, a fingerprint an admin gave ("SHA256:…"); `ssh_password` logs in.
    The key and password never appear in a repr (nor, therefore, in a log line).
    """

    type: str  # "lxd" or "virsh"
    address: str
    project: str
    cert_pem: str
    key_pem: str = attrs.field(repr=False)
    server_fingerprint: str | None = None
    ssh_password: str = attrs.field(default="", repr=False)


@attrs.frozen
class HugepageInfo:
    page_size: int  # bytes per page
    total: int  # number of pages
    free: int  # number of pages


@attrs.frozen
class NumaNode:
    index: int
    cores: list[int] = attrs.field(factory=list)  # logical CPU (thread) ids
    memory: int = 0  # bytes
    hugepages: list[HugepageInfo] = attrs.field(factory=list)


@attrs.frozen
class StoragePool:
    name: str
    type: str  # LXD driver: dir, zfs, lvm, btrfs, ceph...
    path: str  # config.source, or "Unknown"
    total: int  # bytes
    used: int  # bytes
    available: int  # bytes


@attrs.frozen
class HostInterface:
    name: str
    type: str
    mac: str
    numa_node: int | None = None
    sriov_max_vfs: int = 0
    sriov_current_vfs: int = 0
    link_speed: int | None = None  # Mbit/s


@attrs.frozen
class Project:
    name: str
    description: str = ""


@attrs.frozen
class VMDisk:
    """One disk device of a VM (LXD: a `disk` device other than cloud-init/config)."""

    name: str  # device name ("root", "disk1", ...)
    size: int  # bytes
    pool: str | None = None  # storage pool name


@attrs.frozen
class VMInterface:
    """One NIC of a VM."""

    name: str  # device name ("eth0", ...)
    mac: str | None = None
    attach_type: str | None = None  # network, bridge, macvlan, sriov, ovn
    attach_name: str | None = None  # network or parent interface
    vid: int = 0
    boot: bool = False


@attrs.frozen
class DiscoveredVM:
    """A virtual machine found in a host's project."""

    instance_name: str
    project: str
    architecture: str  # "amd64/generic"
    power_state: str  # "on", "off" or "unknown"
    cores: int
    memory: int  # bytes
    pinned_cores: list[int] = attrs.field(factory=list)
    hugepages_backed: bool = False
    disks: list[VMDisk] = attrs.field(factory=list)
    interfaces: list[VMInterface] = attrs.field(factory=list)
    location: str | None = None  # cluster member, None on a standalone server
    instance_type: str = VIRTUAL_MACHINE


@attrs.frozen
class DiscoveredHost:
    name: str
    version: str
    architectures: list[str]
    cores: int
    cpu_speed: int  # MHz, 0 when the host does not report it
    memory: int  # bytes
    numa_nodes: list[NumaNode]
    storage_pools: list[StoragePool]
    interfaces: list[HostInterface]
    projects: list[Project]
    server_fingerprint: str
    capabilities: list[str]
    clustered: bool = False
    vms: list[DiscoveredVM] = attrs.field(factory=list)  # VMs in the tracked project


@attrs.frozen
class RequestedDisk:
    name: str  # device name: "root" for the first, then "disk1", "disk2"...
    size: int  # bytes
    pool: str
    path: str | None = None  # where a container mounts a data disk ("/mnt/<label>"); None for VMs


@attrs.frozen
class RequestedNic:
    name: str  # eth0...
    nictype: str  # bridged, macvlan, sriov
    parent: str  # host interface (bridge, macvlan parent, SR-IOV physical function)
    vlan: int | None = None  # VLAN id to tag (macvlan/sriov), None for untagged
    hwaddr: str | None = None  # fixed MAC, None lets LXD choose


@attrs.frozen
class ComposeRequest:
    """A VM or container to create on a host, fully decided by the region (placement
    done); the project is the HostTarget's."""

    instance_name: str
    architecture: str  # "amd64/generic"
    cores: int
    memory: int  # bytes
    pinned_cores: list[int] = attrs.field(factory=list)
    hugepages_backed: bool = False
    disks: list[RequestedDisk] = attrs.field(factory=list)
    nics: list[RequestedNic] = attrs.field(factory=list)
    # Idempotency key (the machine's system id): a repeated request finds what the first
    # one made under this key and answers it instead of a conflict.
    reservation: str = ""
    instance_type: str = VIRTUAL_MACHINE


@attrs.frozen
class ImageRef:
    """An LXD image (unified tarball) the region serves: a rack whose host lacks it fetches it
    from `url` with `token` as a bearer token and imports it."""

    fingerprint: str  # sha256 of the file, which is also LXD's fingerprint of it
    url: str
    token: str = attrs.field(repr=False)
    size: int  # bytes
    filetype: str  # the boot resource's filetype (tgz, lxd, qcow2…; lxd-rootfs/lxd-disk: a split image)
    meta_size: int = 0  # a split image: the file is its metadata tarball (these bytes), then its rootfs


@attrs.frozen
class CloudInitData:
    """What LXD hands cloud-init: `cloud-init.user-data`, `…network-config`, `…vendor-data`."""

    user_data: str
    network_config: str
    vendor_data: str | None = None
