"""The constraints of `machines/?op=allocate`, as Juju (gomaasapi), python-libmaas and the CLI send them.

Repeated fields may also come comma-joined.  Names MAAS accepts that mean
nothing here (bridge options, `verbose`) are accepted and ignored; any other
unknown name is a 400, so a typo never silently widens the match.  `instance_type`
(`virtual-machine` or `container`) is vmyard's own: MAAS has no containers.
"""

from __future__ import annotations

from region.api.errors import BadRequest
from region.api.params import Form, Params
from region.netconstraints import ConstraintError, parse_interfaces
from region.services.allocate_match import Constraints
from region.services.compose_request import MAX_CORES, MAX_MEMORY_MIB, instance_type_error, parse_storage

SINGLE = ("name", "system_id", "zone", "pool", "pod", "pod_type", "agent_name", "comment", "instance_type")
MULTI = ("arch", "tags", "not_tags", "not_in_zone", "not_in_pool", "not_pod", "not_pod_type")
NETWORK = ("subnets", "not_subnets", "vlans", "not_vlans", "fabrics", "not_fabrics", "fabric_classes",
           "not_fabric_classes")
IGNORED = ("op", "verbose", "bridge_all", "bridge_type", "bridge_stp", "bridge_fd")
KNOWN = frozenset(SINGLE + MULTI + NETWORK + IGNORED + ("cpu_count", "mem", "storage", "interfaces",
                                                          "link_speed", "dry_run"))
TRUE = ("true", "1", "yes", "on")
MAX_VALUES = 100  # per list constraint: each value is a test per machine and host, some a query
MAX_LINK_SPEED = 10**7  # Mbit/s


def _least(form: Form, field: str, maximum: float) -> float | None:
    """MAAS asks for the least of a repeated number."""
    values = form.numbers(field, minimum=0, maximum=maximum)
    return min(values) if values else None


def _values(form: Form, field: str) -> tuple[str, ...]:
    values = tuple(form.params.getlist(field, split_commas=True))
    if len(values) > MAX_VALUES:
        form.error(field, f"Ensure this list has at most {MAX_VALUES} values (it has {len(values)}).")
    return values


def parse_allocate(params: Params) -> Constraints:
    unknown = sorted(k for k in params.keys() if k not in KNOWN and not k.startswith("oauth_"))
    if unknown:
        raise BadRequest({k: [f"Unknown constraint: {k!r}."] for k in unknown})
    form = Form(params)
    single = {f: (params.get(f) or None) for f in SINGLE}
    multi = {f: _values(form, f) for f in MULTI}
    networks = {f: _values(form, f) for f in NETWORK if params.getlist(f)}
    cpu_count, mem = _least(form, "cpu_count", MAX_CORES), _least(form, "mem", MAX_MEMORY_MIB)
    link_speed = _least(form, "link_speed", MAX_LINK_SPEED)
    storage = ()
    joined = ",".join(v for v in params.getlist("storage") if v)  # gomaasclient repeats the field
    if joined:
        try:
            storage = parse_storage(joined, any_root_size=True)
        except ValueError as e:
            form.error("storage", str(e))
    interfaces = ()
    try:
        interfaces = tuple(parse_interfaces(params.get("interfaces")))
    except ConstraintError as e:
        form.error("interfaces", str(e))
    if single["instance_type"] is not None and (why := instance_type_error(single["instance_type"])):
        form.error("instance_type", why)
    form.check()
    return Constraints(
        name=single["name"], system_id=single["system_id"], arch=multi["arch"], cpu_count=cpu_count, mem=mem,
        tags=multi["tags"], not_tags=multi["not_tags"], zone=single["zone"], not_in_zone=multi["not_in_zone"],
        pool=single["pool"], not_in_pool=multi["not_in_pool"], pod=single["pod"], not_pod=multi["not_pod"],
        pod_type=single["pod_type"], not_pod_type=multi["not_pod_type"], storage=storage, interfaces=interfaces,
        networks=networks,
        link_speed=None if link_speed is None else int(link_speed),
        agent_name=single["agent_name"] or "", comment=single["comment"] or "",
        dry_run=(params.get("dry_run") or "").lower() in TRUE, instance_type=single["instance_type"])
