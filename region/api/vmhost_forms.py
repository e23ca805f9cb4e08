"""Validation of vm-hosts/ create and update requests (every bad field in one 400)."""

from __future__ import annotations

import ipaddress
import re
import socket
import urllib.parse

from common import sshhostkey, tls
from region.api.params import Form, Params
from region.services.vmhosts import HostFields

MACVLAN_MODES = ("bridge", "passthru", "private", "vepa")
HOST_TYPES = ("lxd", "virsh")
CERT_DAYS_DEFAULT = 3650
MAX_RATIO = 10  # overcommit, as the vm_hosts table allows
_FINGERPRINT_RE = re.compile(r"^[0-9a-f]{64}$")
_PROFILE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")  # as rack/drivers/lxd_deploy.py checks them
_LABEL = r"[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?"
_HOST_RE = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*\.?$")  # a DNS name or an IPv4 address


def client_cn(name: str | None) -> str:
    """'<host>@<controller>', or the controller alone when the request names no host (as MAAS's
    get_maas_client_cn), capped at 64 characters as LXD shows it."""
    controller = socket.gethostname()[:32]
    return f"{name[: 63 - len(controller)]}@{controller}"[:64] if name else controller


def name_from_address(address: str | None) -> str:
    """'10.1.2.3:8443' -> '10-1-2-3-8443': a valid name when none was given."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", address or "host").strip("-") or "host"


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


def identity(form: Form, name: str | None, *, regenerate_on_empty: bool) -> tuple[str | None, str | None]:
    """The client certificate and key: imported and checked, generated (for the `name` the request
    gave, if any), or (None, None) when the request does not touch them."""
    params = form.params
    cert, key = params.get("certificate"), params.get("key")
    wants_new = (cert is None and key is None and not regenerate_on_empty) or (cert == "" and key == "")
    if wants_new:
        pair = tls.make_self_signed(client_cn(name), days=CERT_DAYS_DEFAULT, kind="rsa")
        return pair.cert_pem, pair.key_pem
    if cert is None and key is None:
        return None, None
    if not cert or not key:
        form.error("certificate" if not cert else "key", "certificate and key must be given together.")
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


def trust_secret(params: Params) -> str | None:
    """The one-time trust password or token: `password`, `trust_token`, or `power_pass` (the only
    secret python-libmaas's pods.create() sends)."""
    return params.get("trust_token") or params.get("password") or params.get("power_pass") or None


def fingerprint(form: Form, field: str = "fingerprint") -> str | None:
    """An LXD certificate's SHA-256 (hex) or an SSH host key's fingerprint ("SHA256:…")."""
    raw = form.params.get(field)
    if not raw:
        return None
    if sshhostkey.is_fingerprint(raw.strip()):
        return raw.strip()
    value = raw.replace(":", "").strip().lower()
    if not _FINGERPRINT_RE.match(value):
        form.error(field, "Enter a SHA-256 fingerprint: 64 hexadecimal digits (colons allowed), or an SSH "
                          "host key's SHA256:… as ssh-keygen -l prints it.")
        return None
    return value


def parse_host_fields(params: Params, *, creating: bool, current_type: str | None = None,
                      current_name: str | None = None) -> HostFields:
    form = Form(params)
    host_type = form.text("type", required=creating)
    if host_type is not None and host_type not in HOST_TYPES:
        form.error("type", "Select a valid choice. That choice is not one of the available choices.")
    if current_type is not None and host_type not in (None, current_type):
        form.error("type", "Cannot change the type of a VM host. Delete and re-create the VM host with a "
                           "different type.")
    effective_type = host_type or current_type
    address = form.text("power_address", required=creating, max_length=255)
    problems = {"lxd": lxd_address_problem, "virsh": virsh_address_problem}
    if address is not None and not address.strip():
        form.error("power_address", "This field is required.")
    elif address is not None and effective_type in problems \
            and (problem := problems[effective_type](address.strip())):
        form.error("power_address", problem)
    given_name = name = form.name()
    if creating and name is None and "name" not in form.errors:
        name = name_from_address(address)
    project = form.text("project", max_length=63)
    if effective_type == "virsh":
        if project:
            form.error("project", "libvirt hosts have no projects; leave project out.")
        project = "" if creating else None
    elif project is not None and (project == "" or "/" in project or not project.isprintable()):
        form.error("project", "Enter a valid LXD project name.")
    if creating and project is None:
        project = "default"
    macvlan = form.text("default_macvlan_mode")
    if macvlan not in (None, "") and macvlan not in MACVLAN_MODES:
        form.error("default_macvlan_mode", f"Select one of {', '.join(MACVLAN_MODES)}.")
    tags = params.getlist("tags", split_commas=True) if "tags" in params else None
    profiles = [p.strip() for p in params.getlist("deploy_profiles", split_commas=True) if p.strip()] \
        if "deploy_profiles" in params else None
    if profiles and not all(_PROFILE_RE.match(p) for p in profiles):
        form.error("deploy_profiles", "Enter LXD profile names (letters, digits, '-', '_', '.'), comma-separated.")
    cpu_ratio = form.number("cpu_over_commit_ratio", minimum=0, maximum=MAX_RATIO)
    memory_ratio = form.number("memory_over_commit_ratio", minimum=0, maximum=MAX_RATIO)
    cert = key = None
    password = trust_secret(params)
    if effective_type == "lxd" and not form.errors:
        # An update keeps the host's name for the CN, as MAAS's form merges the stored fields in.
        cert, key = identity(form, given_name or current_name, regenerate_on_empty=not creating)
    elif effective_type == "virsh":
        key = password  # the SSH password is the host's stored secret (encrypted at rest)
        for field in ("certificate", "key"):
            if params.get(field):
                form.error(field, "libvirt hosts log in over SSH with power_pass; they take no certificate.")
    form.check()
    return HostFields(
        type=host_type, power_address=address.strip() if address else address, name=name, project=project,
        zone=params.get("zone") or None, pool=params.get("pool") or None,
        tags=[t.strip() for t in tags if t.strip()] if tags is not None else None,
        cpu_over_commit_ratio=cpu_ratio, memory_over_commit_ratio=memory_ratio,
        default_macvlan_mode=macvlan, default_storage_pool=params.get("default_storage_pool") or None,
        certificate=cert, key=key, password=password, deploy_profiles=profiles,
    )
