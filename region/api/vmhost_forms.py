"""Validation of vm-hosts/ create and update requests (every bad field in one 400)."""

from __future__ import annotations

import re
import socket

from common import sshhostkey, tls
from region.api.params import Form, Params
from region.services.vmhosts import HostFields
from region.vmhost_address import ADDRESS_PROBLEMS

MACVLAN_MODES = ("bridge", "passthru", "private", "vepa")
HOST_TYPES = ("lxd", "virsh")
CERT_DAYS_DEFAULT = 3650
MAX_RATIO = 10  # overcommit, as the vm_hosts table allows
_FINGERPRINT_RE = re.compile(r"^[0-9a-f]{64}$")
_PROFILE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")  # as rack/drivers/lxd_deploy.py checks them


def client_cn(name: str | None) -> str:
    """'<host>@<controller>', or the controller alone when the request names no host (as MAAS's
    get_maas_client_cn), capped at 64 characters as LXD shows it."""
    controller = socket.gethostname()[:32]
    return f"{name[: 63 - len(controller)]}@{controller}"[:64] if name else controller


def name_from_address(address: str | None) -> str:
    """'10.1.2.3:8443' -> '10-1-2-3-8443': a valid name when none was given."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", address or "host").strip("-") or "host"


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
    if address is not None and not address.strip():
        form.error("power_address", "This field is required.")
    elif address is not None and effective_type in ADDRESS_PROBLEMS \
            and (problem := ADDRESS_PROBLEMS[effective_type](address.strip())):
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
