"""The interfaces constraint: parsing (MAAS messages) and matching host interfaces (pure)."""

from __future__ import annotations

import ipaddress

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from region import netconstraints
from region.netconstraints import ConstraintError, attach_type, ifname_for_label, matches, parse_interfaces, resolve


@attrs.frozen
class Obj:
    id: int
    name: str
    vid: int = 0
    class_type: str | None = None
    cidr: str = ""


@attrs.frozen
class Iface:
    id: int
    name: str
    type: str = "physical"
    numa_node: int | None = 0
    sriov_max_vfs: int = 0
    link_speed: int | None = 10000
    tags: tuple = ()
    vlan: Obj | None = None
    fabric: Obj | None = None
    space: Obj | None = None
    subnets: tuple = ()


STORAGE = Obj(1, "storage")
FABRIC = Obj(1, "fabric-0", class_type="10g")
NET_A = Obj(5, "10.20.0.0/24", cidr="10.20.0.0/24")
NET_B = Obj(6, "10.30.0.0/24", cidr="10.30.0.0/24")
IFACES = [
    Iface(1, "eno1", vlan=Obj(1, "untagged", 0), fabric=FABRIC, space=STORAGE, subnets=(NET_A,)),
    Iface(2, "br0", type="bridge", vlan=Obj(1, "untagged", 0), fabric=FABRIC, space=STORAGE, subnets=(NET_A,)),
    Iface(3, "enp5s0", sriov_max_vfs=8, vlan=Obj(2, "v30", 30), fabric=FABRIC, subnets=(NET_B,), tags=("fast",)),
]


def subnet_for_ip(ip: str):
    return next((s for s in (NET_A, NET_B) if ipaddress.ip_address(ip) in ipaddress.ip_network(s.cidr)), None)


def test_parse_labels_keys_ips_and_mode():
    asks = parse_interfaces("eth0:space=storage;eth1:subnet=10.20.0.0/24,ip=10.20.0.50,mode=unconfigured")
    assert [a.label for a in asks] == ["eth0", "eth1"]
    assert asks[0].conditions == {"space": ("storage",)}
    assert asks[1].ips == ("10.20.0.50",) and asks[1].mode == "unconfigured"
    assert parse_interfaces("") == [] and parse_interfaces(None) == []
    assert parse_interfaces("0:space=a,space=b")[0].conditions == {"space": ("a", "b")}


@pytest.mark.parametrize("value,message", [
    ("eth0", "Malformed constraint: 'eth0'"),
    ("eth0:space", "Malformed key/value pair in constraint: 'space'"),
    ("eth0:space=a;eth0:space=b", "Constraint label defined more than once: 'eth0'"),
    ("-x:space=a", "Invalid label name: '-x'"),
    ("eth0:colour=red", "Unknown interfaces constraint: 'colour'"),
    ("eth0:mode=static", "The only valid value for 'mode' is 'unconfigured'."),
    ("eth0:ip=10.1.1.300", "is not an IP address"),
])
def test_parse_errors(value, message):
    with pytest.raises(ConstraintError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        parse_interfaces(value)


def test_ifnames():
    assert ifname_for_label("0") == "eth0"
    assert ifname_for_label("storage") == "storage"
    long = ifname_for_label("a-very-long-interface-label")
    assert len(long.encode()) <= 15 and long.startswith("eth-") and long == ifname_for_label("a-very-long-interface-label")


def test_resolve_prefers_bridges_and_honours_every_condition():
    [r] = resolve(parse_interfaces("eth0:space=storage"), IFACES, "h1", subnet_for_ip)
    assert r.iface.name == "br0" and attach_type(r.iface) == "bridge"
    [r] = resolve(parse_interfaces("eth0:space=storage,not_name=br0"), IFACES, "h1", subnet_for_ip)
    assert r.iface.name == "eno1" and attach_type(r.iface) == "macvlan"
    [r] = resolve(parse_interfaces("eth0:vid=30,tag=fast"), IFACES, "h1", subnet_for_ip)
    assert r.iface.name == "enp5s0" and attach_type(r.iface) == "sriov"
    [r] = resolve(parse_interfaces("x:space=undefined"), IFACES, "h1", subnet_for_ip)
    assert r.iface.name == "enp5s0"
    [r] = resolve(parse_interfaces("x:fabric_class=10g,link_speed=1000,hostname=h1,subnet_cidr=10.30.0.0/24"),
                  IFACES, "h1", subnet_for_ip)
    assert r.iface.name == "enp5s0"
    [r] = resolve(parse_interfaces("x:vlan=id:2"), IFACES, "h1", subnet_for_ip)
    assert r.iface.name == "enp5s0"


def test_ip_pins_the_label_to_that_subnet():
    a, b = resolve(parse_interfaces("eth0:space=storage;eth1:ip=10.30.0.7"), IFACES, "h1", subnet_for_ip)
    assert (a.iface.name, b.iface.name) == ("br0", "enp5s0")
    with pytest.raises(ConstraintError, match="No subnet contains 10.99.0.1"):
        resolve(parse_interfaces("eth0:ip=10.99.0.1"), IFACES, "h1", subnet_for_ip)


def test_no_match_explains_what_the_host_has():
    with pytest.raises(ConstraintError) as e:
        resolve(parse_interfaces("eth0:space=dmz"), IFACES, "h1", subnet_for_ip)
    assert "'eth0' (space=dmz)" in str(e.value) and "br0 (bridge, vlan 0, space storage" in str(e.value)
    with pytest.raises(ConstraintError, match="Interface ID must be numeric"):
        resolve(parse_interfaces("eth0:id=abc"), IFACES, "h1", subnet_for_ip)


# -- bounds (issue 11): linear parsing, capped sizes, whole numbers only -----------------------

def _labels(n: int) -> str:
    return ";".join(f"l{i}:space=a" for i in range(n))


def test_size_and_label_count_are_capped():
    assert len(parse_interfaces(_labels(netconstraints.MAX_INTERFACES))) == netconstraints.MAX_INTERFACES
    with pytest.raises(ConstraintError, match=f"at most {netconstraints.MAX_INTERFACES} interfaces"):
        parse_interfaces(_labels(netconstraints.MAX_INTERFACES + 1))
    with pytest.raises(ConstraintError, match=f"at most {netconstraints.MAX_LENGTH} characters"):
        parse_interfaces(_labels(10_000))


def test_parsing_is_linear_with_the_caps_lifted(monkeypatch):
    """10,000 labels took 23 s when each label was compared with every earlier one."""
    monkeypatch.setattr(netconstraints, "MAX_LENGTH", 10**6)
    monkeypatch.setattr(netconstraints, "MAX_INTERFACES", 10**6)
    asks = parse_interfaces(_labels(10_000))
    assert len(asks) == 10_000 and asks[-1].label == "l9999"
    with pytest.raises(ConstraintError, match="defined more than once: 'l0'"):
        parse_interfaces(_labels(10_000) + ";l0:space=b")


@pytest.mark.parametrize("value", ["eth0:id=\u00b2", "eth0:not_id=1.5", "eth0:vid=abc", "eth0:not_vid=\u0661",
                                   f"eth0:link_speed={'9' * 5000}", "eth0:vid=-1"])
def test_number_keys_take_ascii_whole_numbers(value):
    with pytest.raises(ConstraintError, match="numeric|whole number"):
        parse_interfaces(value)


VALUES = st.sampled_from(["7", "30", "\u00b2", "abc", "storage", "10.20.0.5", "10.20.0.0/24", "id:2", "unconfigured",
                          "fast&&slow", "", "9" * 40])
PAIRS = st.tuples(st.sampled_from(sorted(netconstraints.KEYS) + ["colour", ""]), VALUES).map("=".join)
LABELLED = st.tuples(st.sampled_from(["eth0", "1", "l-1", "-x", ""]), st.lists(PAIRS, min_size=1, max_size=4))
REQUESTS = st.lists(LABELLED.map(lambda t: f"{t[0]}:{','.join(t[1])}"), max_size=8).map(";".join) | st.text(max_size=80)


@settings(max_examples=500, deadline=None)
@given(REQUESTS)
def test_any_bounded_text_parses_or_is_a_constraint_error_and_matching_never_raises(value):
    try:
        asks = parse_interfaces(value)
    except ConstraintError:
        return
    assert len(asks) <= netconstraints.MAX_INTERFACES
    for ask in asks:
        for iface in IFACES:
            matches(iface, ask.conditions, "h1")
