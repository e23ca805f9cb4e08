"""VM host addresses as the region accepts them, per host type: pure rules (no I/O) shared by
vm-hosts/ (region/api/vmhost_forms.py) and the web UI's check as the address is typed."""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from typing import Callable

_LABEL = r"[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?"
_HOST_RE = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*\.?$")  # a DNS name or an IPv4 address


def lxd_address_problem(address: str) -> str | None:
    """Why `address` is not `host`, `host:port`, `https://host[:port]` or `[IPv6][:port]`
    with a port from 1 to 65535 (None: it is one)."""
    scheme, sep, rest = address.partition("://")
    if not sep:
        rest = address
    elif scheme.lower() != "https":
        return "LXD is reached over https: give host[:port] or https://host[:port]."
    rest = rest.removesuffix("/")
    if any(c in rest for c in "/@?#"):
        return "Give the host and port only: host[:port], without a user, path or query."
    if rest.startswith("["):
        host, closed, after = rest[1:].partition("]")
        if not closed:
            return "Close the IPv6 address with ']'."
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return f"Enter an IPv6 address between the brackets, not {host!r}."
        if after and not after.startswith(":"):
            return "Give the port after the IPv6 address as [address]:port."
        port = after[1:] if after else None
    else:
        host, colon, port = rest.partition(":")
        if ":" in port:
            return "Put an IPv6 address in brackets: [2001:db8::1]:8443."
        if not _HOST_RE.match(host):
            return "Enter a host name or IP address before the port."
        port = port if colon else None
    valid_port = port is None or (port.isascii() and port.isdigit() and len(port) <= 5 and 1 <= int(port) <= 65535)
    return None if valid_port else "Enter a port from 1 to 65535."


def virsh_address_problem(address: str) -> str | None:
    """Why `address` is not `qemu+ssh://user@host[:port]/system` (None: it is one).  Only SSH:
    any rack must reach the host, and the password and pinned host key are SSH's."""
    parts = urllib.parse.urlsplit(address)
    if parts.scheme != "qemu+ssh":
        return "Enter a libvirt URI of the form qemu+ssh://user@host[:port]/system."
    try:
        port = parts.port
    except ValueError:
        return "Enter a port from 1 to 65535."
    if not parts.username or parts.password is not None:
        return "Name the SSH user (qemu+ssh://user@host/system); give its password as power_pass."
    host = parts.hostname or ""
    if not (_HOST_RE.match(host) or _is_ipv6(host)) or port == 0:
        return "Enter a host name or IP address (and optionally a port from 1 to 65535) after the user."
    if parts.path != "/system" or parts.query or parts.fragment:
        return "Use the system instance (/system) without query parameters: vmyard sets the transport options."
    return None


def _is_ipv6(host: str) -> bool:
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        return False
    return True


# Why an address is not acceptable for each host type (None: it is).
ADDRESS_PROBLEMS: dict[str, Callable[[str], str | None]] = {"lxd": lxd_address_problem, "virsh": virsh_address_problem}
