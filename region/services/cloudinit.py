"""The cloud-init data a deployed machine gets (pure: no I/O).

- `decode_user_data`: the `user_data` of op=deploy as MAAS takes it (base64, gunzipped when it is
  gzip as Juju sends it; text that is not base64 is taken as it is).
- `user_data`: a MIME multipart for cloud-init: vmyard's own cloud-config first (hostname, FQDN,
  the owner's SSH keys, the report-back webhook), then the user's data as parts of their own.
  The user's cloud-config parts carry a `Merge-Type` that appends lists and keeps vmyard's keys,
  so their `ssh_authorized_keys` add to the owner's and cannot drop the webhook.
- `network_config`: network-config v2 matching each NIC by MAC (a container's by name), from its
  links (services/interfaces.py: `nic_configs_thd`): addresses of static and auto links with the DNS
  of their subnets and the machine's default gateway, DHCP for dhcp links, just up for link_up or a
  disconnected NIC.  A NIC nobody linked keeps vmyard's default, DHCP on IPv4.
"""

from __future__ import annotations

import base64
import binascii
import email
import ipaddress
import zlib
from email.mime.multipart import MIMEMultipart
from email.mime.nonmultipart import MIMENonMultipart

import attrs
import yaml

# Later parts append to lists and never replace what an earlier part set (cloud-init's merging).
MERGE_TYPE = "list(append)+dict(no_replace,recurse_list)+str()"
MAX_USER_DATA = 16 * 1024 * 1024  # bytes once decompressed (LXD keeps it in the instance's config)
# How cloud-init recognises a document that is not MIME (its own "starts with" table).
_STARTS = (
    ("#cloud-config-archive", "text/cloud-config-archive"),
    ("#cloud-config-jsonp", "text/cloud-config-jsonp"),
    ("#cloud-config", "text/cloud-config"),
    ("#cloud-boothook", "text/cloud-boothook"),
    ("#include-once", "text/x-include-once-url"),
    ("#include", "text/x-include-url"),
    ("#part-handler", "text/part-handler"),
    ("#upstart-job", "text/upstart-job"),
    ("#!", "text/x-shellscript"),
)


class BadUserData(ValueError):
    """The user's data cannot be given to cloud-init; the message says why."""


@attrs.frozen
class Webhook:
    """Where cloud-init reports its progress, and the machine's own OAuth credentials."""

    endpoint: str
    consumer_key: str
    token_key: str
    token_secret: str = attrs.field(repr=False)


@attrs.frozen
class Identity:
    hostname: str
    fqdn: str
    ssh_keys: list[str]


@attrs.frozen
class NicAddress:
    address: str
    cidr: str  # the subnet's
    gateway: str | None  # the default route through it (None: not the machine's default gateway)
    dns_servers: list[str]


@attrs.frozen
class NicConfig:
    name: str
    mac: str
    addresses: list[NicAddress]
    dhcp4: bool = False
    dhcp6: bool = False
    configured: bool = False  # it has links (or was disconnected); False: DHCP on IPv4 by default


def decode_user_data(raw: str) -> str:
    """The user's data as text: base64 decoded (else taken as it is), gunzipped if gzip."""
    try:
        data = base64.b64decode(raw.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        data = raw.encode("utf-8", errors="surrogatepass")
    if data[:2] == b"\x1f\x8b":
        data = _gunzip(data)
    if len(data) > MAX_USER_DATA:
        raise BadUserData(f"user_data is larger than {MAX_USER_DATA} bytes.")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise BadUserData("user_data is neither text nor gzip-compressed text (after base64 decoding).") from None


def _gunzip(data: bytes) -> bytes:
    decompressor = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = decompressor.decompress(data, MAX_USER_DATA + 1)
    except zlib.error as e:
        raise BadUserData(f"user_data is gzip data that cannot be decompressed: {e}.") from None
    if len(out) > MAX_USER_DATA:
        raise BadUserData(f"user_data is larger than {MAX_USER_DATA} bytes once decompressed.")
    if not decompressor.eof:
        raise BadUserData("user_data is truncated gzip data.")
    return out


def vmyard_cloud_config(identity: Identity, webhook: Webhook) -> str:
    config = {
        "hostname": identity.hostname,
        "fqdn": identity.fqdn,
        "manage_etc_hosts": True,
        "ssh_authorized_keys": list(identity.ssh_keys),
        "reporting": {"maas": {"type": "webhook", "endpoint": webhook.endpoint,
                               "consumer_key": webhook.consumer_key, "token_key": webhook.token_key,
                               "token_secret": webhook.token_secret}},
    }
    return "#cloud-config\n" + yaml.safe_dump(config, sort_keys=False, width=1 << 16)


def _part(text: str, content_type: str) -> MIMENonMultipart:
    maintype, subtype = content_type.split("/", 1)
    part = MIMENonMultipart(maintype, subtype, charset="utf-8")
    if text.isascii():  # as it is, readable in `lxc config show`
        part.set_payload(text)
        part["Content-Transfer-Encoding"] = "7bit"
    else:
        part.set_payload(base64.encodebytes(text.encode()).decode("ascii"))
        part["Content-Transfer-Encoding"] = "base64"
    if content_type == "text/cloud-config":
        part["Merge-Type"] = MERGE_TYPE
    return part


def user_parts(text: str) -> list[MIMENonMultipart]:
    """The user's data as MIME parts: one document, or the leaves of their multipart."""
    stripped = text.lstrip()
    if not stripped:
        return []
    if stripped.lower().startswith(("content-type:", "mime-version:")):
        message = email.message_from_string(text)
        parts = []
        for leaf in message.walk():
            if leaf.is_multipart():
                continue
            payload = leaf.get_payload(decode=True) or b""
            part = _part(payload.decode(leaf.get_content_charset() or "utf-8", errors="replace"),
                         leaf.get_content_type())
            if leaf["Merge-Type"]:  # the user's own merging wins over ours
                del part["Merge-Type"]
                part["Merge-Type"] = leaf["Merge-Type"]
            if leaf.get_filename():
                part.add_header("Content-Disposition", "attachment", filename=leaf.get_filename())
            parts.append(part)
        if not parts:
            raise BadUserData("user_data is a MIME message without any part.")
        return parts
    for prefix, content_type in _STARTS:
        if stripped.startswith(prefix):
            return [_part(text, content_type)]
    raise BadUserData("user_data must be a cloud-config (#cloud-config), a script (#!), a MIME multipart "
                      "or another format cloud-init reads (#include, #cloud-boothook, …).")


def user_data(identity: Identity, webhook: Webhook, users_data: str) -> str:
    """vmyard's cloud-config, then the user's parts, as one multipart/mixed document."""
    message = MIMEMultipart("mixed")
    message.attach(_part(vmyard_cloud_config(identity, webhook), "text/cloud-config"))
    del message.get_payload()[0]["Merge-Type"]  # the first part has nothing to merge into
    for part in user_parts(users_data):
        message.attach(part)
    return message.as_string()


def network_config(nics: list[NicConfig], *, match_mac: bool = True) -> str:
    """Network-config v2: each NIC matched by MAC (or, `match_mac` false, by its name), static
    where vmyard gave it addresses.  A container's NICs are veths, whose permanent MAC netplan
    matches on is empty; LXD names them after their devices, so containers match by name."""
    ethernets = {}
    for nic in nics:
        entry: dict = {"match": {"macaddress": nic.mac.lower()}, "set-name": nic.name} if match_mac else {}
        if nic.addresses:
            entry["addresses"] = [f"{a.address}/{ipaddress.ip_network(a.cidr).prefixlen}" for a in nic.addresses]
            routes = [{"to": "0.0.0.0/0" if ipaddress.ip_address(a.gateway).version == 4 else "::/0",
                       "via": a.gateway} for a in nic.addresses if a.gateway]
            if routes:
                entry["routes"] = list({r["to"]: r for r in routes}.values())  # one default per family
            dns = list(dict.fromkeys(d for a in nic.addresses for d in a.dns_servers))
            if dns:
                entry["nameservers"] = {"addresses": dns}
        if nic.dhcp4 or not (nic.configured or nic.addresses):
            entry["dhcp4"] = True
        if nic.dhcp6:
            entry["dhcp6"] = True
        ethernets[nic.name] = entry
    return yaml.safe_dump({"version": 2, "ethernets": ethernets}, sort_keys=False)
