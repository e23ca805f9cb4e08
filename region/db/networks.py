"""Spaces, fabrics, VLANs, and which VLAN each VM-host interface is on.

Every fabric has an untagged default VLAN (vid 0) from the moment it exists,
and that VLAN cannot be deleted.  Subnets and IP ranges live in
`region.db.subnets`, address allocation in `region.db.ipam`; the functions
compose needs are re-exported here so callers import one module.
"""

from __future__ import annotations

from typing import Iterable

import attrs

from region.db.errors import FieldError, NotFound, Refused
from region.db.ipam import (  # noqa: F401  (re-exported for compose)
    IPUnavailable,
    allocate_ip_thd,
    release_ips_thd,
    subnet_for_ip_thd,
)
from region.db.network_models import (  # noqa: F401  (re-exported)
    DEFAULT_FABRIC_ID,
    FABRIC_COLUMNS,
    SPACE_COLUMNS,
    UNDEFINED_SPACE,
    VLAN_COLUMNS,
    Fabric,
    HostInterfaceNetwork,
    IPRange,
    Space,
    StaticIP,
    Subnet,
    Vlan,
    guarded_write,
)
from region.db.subnets import list_subnets_thd, subnets_on_vlans_thd, vlan_has_subnets_error

UNTAGGED = "untagged"  # MAAS's name for a fabric's default VLAN


def _check_name(name: str, label: str) -> None:
    # Items are addressed by id or name, so a name must not look like an id.
    if name.isdigit():
        raise FieldError("name", f"A {label} name cannot be only digits (numbers address {label}s by id).")
    if label == "space" and name == UNDEFINED_SPACE:
        raise FieldError("name", f"{UNDEFINED_SPACE!r} is reserved: it means \"no space\".")


def _next_id(cur, table: str) -> int:
    cur.execute("SELECT nextval(pg_get_serial_sequence(%s, 'id'))", (table,))
    return cur.fetchone()[0]


def _by_id_or_name(cur, table: str, columns: str, key: int | str, label: str) -> tuple:
    text = str(key)
    if isinstance(key, int) or text.isdigit():
        cur.execute(f"SELECT {columns} FROM {table} WHERE id = %s", (int(text),))
    else:
        cur.execute(f"SELECT {columns} FROM {table} WHERE name = %s", (text,))
    row = cur.fetchone()
    if row is None:
        raise NotFound(label)
    return row


# -- spaces -------------------------------------------------------------------------------------

def list_spaces_thd(cur) -> list[Space]:
    cur.execute(f"SELECT {SPACE_COLUMNS} FROM spaces ORDER BY id")
    return [Space(*r) for r in cur.fetchall()]


def get_space_thd(cur, key: int | str) -> Space:
    return Space(*_by_id_or_name(cur, "spaces", SPACE_COLUMNS, key, "space"))


def _space_conflicts(name: str) -> dict[str, FieldError]:
    return {"spaces_name_key": FieldError("name", f"A space named {name!r} already exists.")}


def create_space_thd(cur, name: str | None, description: str = "") -> Space:
    space_id = _next_id(cur, "spaces")
    name = name or f"space-{space_id}"
    _check_name(name, "space")
    return Space(*guarded_write(
        cur, f"INSERT INTO spaces (id, name, description) VALUES (%s, %s, %s) RETURNING {SPACE_COLUMNS}",
        (space_id, name, description), _space_conflicts(name)))


def update_space_thd(cur, key: int | str, *, name: str | None = None, description: str | None = None) -> Space:
    current = get_space_thd(cur, key)
    if name is not None:
        _check_name(name, "space")
    new_name = current.name if name is None else name
    return Space(*guarded_write(
        cur, f"UPDATE spaces SET name = %s, description = %s WHERE id = %s RETURNING {SPACE_COLUMNS}",
        (new_name, current.description if description is None else description, current.id),
        _space_conflicts(new_name)))


def delete_space_thd(cur, key: int | str) -> Space:
    """Its VLANs stay, with no space."""
    space = get_space_thd(cur, key)
    cur.execute("DELETE FROM spaces WHERE id = %s", (space.id,))
    return space


# -- fabrics ------------------------------------------------------------------------------------

def list_fabrics_thd(cur) -> list[Fabric]:
    cur.execute(f"SELECT {FABRIC_COLUMNS} FROM fabrics ORDER BY id")
    return [Fabric(*r) for r in cur.fetchall()]


def get_fabric_thd(cur, key: int | str) -> Fabric:
    return Fabric(*_by_id_or_name(cur, "fabrics", FABRIC_COLUMNS, key, "fabric"))


def _fabric_conflicts(name: str) -> dict[str, FieldError]:
    return {"fabrics_name_key": FieldError("name", f"A fabric named {name!r} already exists.")}


def create_fabric_thd(cur, name: str | None = None, class_type: str | None = None, description: str = "") -> Fabric:
    """A new fabric, with its untagged default VLAN."""
    fabric_id = _next_id(cur, "fabrics")
    name = name or f"fabric-{fabric_id}"  # MAAS's default name
    _check_name(name, "fabric")
    fabric = Fabric(*guarded_write(
        cur, f"INSERT INTO fabrics (id, name, class_type, description) VALUES (%s, %s, %s, %s)"
             f" RETURNING {FABRIC_COLUMNS}",
        (fabric_id, name, class_type or None, description), _fabric_conflicts(name)))
    cur.execute("INSERT INTO vlans (fabric_id, vid, name) VALUES (%s, 0, %s)", (fabric.id, UNTAGGED))
    return fabric


def update_fabric_thd(cur, key: int | str, *, name: str | None = None, class_type: str | None = None,
                      description: str | None = None) -> Fabric:
    """None leaves a field as it is; an empty class_type clears it."""
    current = get_fabric_thd(cur, key)
    if name is not None:
        _check_name(name, "fabric")
    new_name = current.name if name is None else name
    new_class = current.class_type if class_type is None else (class_type or None)
    return Fabric(*guarded_write(
        cur, f"UPDATE fabrics SET name = %s, class_type = %s, description = %s WHERE id = %s"
             f" RETURNING {FABRIC_COLUMNS}",
        (new_name, new_class, current.description if description is None else description, current.id),
        _fabric_conflicts(new_name)))


def delete_fabric_thd(cur, key: int | str) -> Fabric:
    """Its VLANs go with it; refused for the default fabric or while subnets are on it."""
    fabric = get_fabric_thd(cur, key)
    if fabric.id == DEFAULT_FABRIC_ID:
        raise Refused("This is the default fabric, it cannot be deleted.")
    cidrs = subnets_on_vlans_thd(cur, [v.id for v in list_vlans_thd(cur, fabric.id)])
    if cidrs:
        raise vlan_has_subnets_error(cidrs, f"fabric {fabric.name}")
    cur.execute("DELETE FROM fabrics WHERE id = %s", (fabric.id,))
    return fabric


# -- VLANs --------------------------------------------------------------------------------------

def list_vlans_thd(cur, fabric_id: int | None = None) -> list[Vlan]:
    if fabric_id is None:
        cur.execute(f"SELECT {VLAN_COLUMNS} FROM vlans ORDER BY fabric_id, vid")
    else:
        cur.execute(f"SELECT {VLAN_COLUMNS} FROM vlans WHERE fabric_id = %s ORDER BY vid", (fabric_id,))
    return [Vlan(*r) for r in cur.fetchall()]


def get_vlan_thd(cur, vlan_id: int | str) -> Vlan:
    if not str(vlan_id).isdigit():
        raise NotFound("VLAN")
    cur.execute(f"SELECT {VLAN_COLUMNS} FROM vlans WHERE id = %s", (int(vlan_id),))
    row = cur.fetchone()
    if row is None:
        raise NotFound("VLAN")
    return Vlan(*row)


def get_vlan_by_vid_thd(cur, fabric_key: int | str, vid: int | str) -> Vlan:
    fabric = get_fabric_thd(cur, fabric_key)
    if not str(vid).isdigit():
        raise NotFound("VLAN")
    cur.execute(f"SELECT {VLAN_COLUMNS} FROM vlans WHERE fabric_id = %s AND vid = %s", (fabric.id, int(vid)))
    row = cur.fetchone()
    if row is None:
        raise NotFound("VLAN")
    return Vlan(*row)


def default_vlan_thd(cur, fabric_key: int | str = DEFAULT_FABRIC_ID) -> Vlan:
    return get_vlan_by_vid_thd(cur, fabric_key, 0)


def _check_vlan_numbers(vid: int, mtu: int) -> None:
    if not 0 <= vid <= 4094:
        raise FieldError("vid", "VID must be between 0 and 4094.")
    if not 552 <= mtu <= 65535:
        raise FieldError("mtu", "MTU must be between 552 and 65535.")


def _vlan_conflicts(vid: int, fabric_name: str) -> dict[str, FieldError]:
    return {"vlans_fabric_vid_key": FieldError("vid", f"A VLAN with VID {vid} already exists on fabric "
                                                      f"{fabric_name}.")}


def _default_vlan_name(vid: int) -> str:
    return UNTAGGED if vid == 0 else str(vid)


def create_vlan_thd(cur, fabric_key: int | str, vid: int, *, name: str | None = None, mtu: int = 1500,
                    dhcp_on: bool = False, space_id: int | None = None, description: str = "") -> Vlan:
    fabric = get_fabric_thd(cur, fabric_key)
    _check_vlan_numbers(vid, mtu)
    return Vlan(*guarded_write(
        cur, "INSERT INTO vlans (fabric_id, vid, name, mtu, dhcp_on, space_id, description)"
             f" VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING {VLAN_COLUMNS}",
        (fabric.id, vid, name or _default_vlan_name(vid), mtu, dhcp_on, space_id, description),
        _vlan_conflicts(vid, fabric.name)))


VLAN_UPDATABLE = frozenset({"vid", "name", "mtu", "dhcp_on", "space_id", "description"})


def update_vlan_thd(cur, vlan_id: int | str, changes: dict) -> Vlan:
    unknown = set(changes) - VLAN_UPDATABLE
    if unknown:
        raise ValueError(f"not updatable: {sorted(unknown)}")
    current = get_vlan_thd(cur, vlan_id)
    merged = {**attrs.asdict(current), **changes}
    if current.is_default and merged["vid"] != current.vid:
        raise FieldError("vid", "The VID of a fabric's default (untagged) VLAN cannot be changed.")
    _check_vlan_numbers(merged["vid"], merged["mtu"])
    if "name" not in changes and current.name == _default_vlan_name(current.vid):
        merged["name"] = _default_vlan_name(merged["vid"])  # a default name follows the VID
    merged["name"] = merged["name"] or _default_vlan_name(merged["vid"])
    columns = sorted(VLAN_UPDATABLE)
    fabric = get_fabric_thd(cur, current.fabric_id)
    return Vlan(*guarded_write(
        cur, f"UPDATE vlans SET {', '.join(f'{c} = %s' for c in columns)} WHERE id = %s RETURNING {VLAN_COLUMNS}",
        (*(merged[c] for c in columns), current.id), _vlan_conflicts(merged["vid"], fabric.name)))


def delete_vlan_thd(cur, vlan_id: int | str) -> Vlan:
    vlan = get_vlan_thd(cur, vlan_id)
    if vlan.is_default:
        raise Refused("This is the default VLAN of its fabric, it cannot be deleted.")
    cidrs = subnets_on_vlans_thd(cur, [vlan.id])
    if cidrs:
        raise vlan_has_subnets_error(cidrs, f"VLAN {vlan.vid}")
    cur.execute("DELETE FROM vlans WHERE id = %s", (vlan.id,))
    return vlan


# -- everything at once, for rendering ----------------------------------------------------------

@attrs.frozen
class NetworkCatalog:
    """All fabrics, VLANs, spaces and subnets, read in one transaction (they are few)."""

    fabrics: dict[int, Fabric]
    vlans: dict[int, Vlan]
    spaces: dict[int, Space]
    subnets: list[Subnet]

    def vlans_of(self, fabric_id: int) -> list[Vlan]:
        return [v for v in self.vlans.values() if v.fabric_id == fabric_id]

    def space_of(self, vlan: Vlan | None) -> Space | None:
        return self.spaces.get(vlan.space_id) if vlan and vlan.space_id is not None else None

    def subnets_on(self, vlan_ids: Iterable[int]) -> list[Subnet]:
        wanted = set(vlan_ids)
        return [s for s in self.subnets if s.vlan_id in wanted]


def catalog_thd(cur) -> NetworkCatalog:
    return NetworkCatalog(
        fabrics={f.id: f for f in list_fabrics_thd(cur)},
        vlans={v.id: v for v in list_vlans_thd(cur)},
        spaces={s.id: s for s in list_spaces_thd(cur)},
        subnets=list_subnets_thd(cur),
    )


# -- VM-host interfaces -------------------------------------------------------------------------

IFACE_COLUMNS = "id, name, type, mac, numa_node, sriov_max_vfs, link_speed, tags, vlan_id"


class _Unchanged:
    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED = _Unchanged()  # for link_host_interface_thd: keep the interface's VLAN as it is


def _host_exists_thd(cur, host_id: int | str) -> int:
    if str(host_id).isdigit():
        cur.execute("SELECT id FROM vm_hosts WHERE id = %s", (int(host_id),))
        row = cur.fetchone()
        if row:
            return row[0]
    raise NotFound("VM host")


def interface_network(row, catalog: NetworkCatalog) -> HostInterfaceNetwork:
    """A row of IFACE_COLUMNS with its VLAN, fabric, space and subnets from `catalog`."""
    *fields, tags, vlan_id = row
    vlan = catalog.vlans.get(vlan_id) if vlan_id is not None else None
    return HostInterfaceNetwork(
        *fields, tags=list(tags), vlan=vlan, fabric=catalog.fabrics.get(vlan.fabric_id) if vlan else None,
        space=catalog.space_of(vlan), subnets=catalog.subnets_on([vlan.id]) if vlan else [])


def host_interface_networks_thd(cur, host_id: int | str) -> list[HostInterfaceNetwork]:
    """The host's interfaces (by name) with their VLAN, fabric, space and the VLAN's subnets."""
    host_id = _host_exists_thd(cur, host_id)
    cur.execute(f"SELECT {IFACE_COLUMNS} FROM vm_host_interfaces WHERE host_id = %s ORDER BY name", (host_id,))
    rows = cur.fetchall()
    catalog = catalog_thd(cur)
    return [interface_network(r, catalog) for r in rows]


def _check_tags(tags: Iterable[str]) -> list[str]:
    cleaned = [t.strip() for t in tags if t.strip()]
    bad = [t for t in cleaned if any(c.isspace() or c == "," for c in t)]
    if bad:
        raise FieldError("tags", f"Tags cannot contain spaces or commas: {', '.join(bad)}.")
    return list(dict.fromkeys(cleaned))


def link_host_interface_thd(cur, host_id: int | str, name_or_id: int | str, vlan_id,
                            tags: list[str] | None) -> HostInterfaceNetwork:
    """Put a host interface on a VLAN (None: on none; UNCHANGED: as it is) and, unless tags is
    None, replace its tags."""
    host_id = _host_exists_thd(cur, host_id)
    key = str(name_or_id)
    # A name wins over an id, in case an interface is named with digits.
    cur.execute("SELECT id, vlan_id, tags FROM vm_host_interfaces WHERE host_id = %s"
                " AND (name = %s OR id::text = %s) ORDER BY (name = %s) DESC LIMIT 1", (host_id, key, key, key))
    row = cur.fetchone()
    if row is None:
        raise NotFound("interface")
    iface_id, current_vlan, current_tags = row
    if vlan_id is UNCHANGED:
        vlan_id = current_vlan
    elif vlan_id is not None:
        try:
            vlan_id = get_vlan_thd(cur, vlan_id).id
        except NotFound:
            raise FieldError("vlan", f"No VLAN with id {vlan_id}.") from None
    new_tags = list(current_tags) if tags is None else _check_tags(tags)
    cur.execute(f"UPDATE vm_host_interfaces SET vlan_id = %s, tags = %s WHERE id = %s RETURNING {IFACE_COLUMNS}",
                (vlan_id, new_tags, iface_id))
    return interface_network(cur.fetchone(), catalog_thd(cur))
