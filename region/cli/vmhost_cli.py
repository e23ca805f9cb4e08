"""`vmyard vm-host ACTION`: add, inspect and manage LXD VM hosts.

Hosts are addressed as NAME|ID: a purely numeric value is an id, anything
else a name.  Trust passwords and tokens are best read from a file or stdin;
`--password`/`--trust-token` values work too but show in `ps` (a token is
single-use, so that matters less for it).
"""

from __future__ import annotations

import argparse
import getpass
import json
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Callable

from region.cli import machine_cli
from region.cli.client import ApiClient, ClientError
from region.cli.table import human_bytes, render_key_values, render_table
from region.cli.vmhost_interfaces_cli import add_interface_actions

MIB = 1024 * 1024
# Where the region serves a host's client certificate anonymously (region.vmhosts.CERTIFICATE_PATH).
CERTIFICATE_PATH = "vmhost-certificate/"
HOST_TYPES = ("lxd", "virsh")

# Option dest -> API field, for add and update.
FIELD_OPTIONS = {
    "address": "power_address", "name": "name", "project": "project", "zone": "zone", "pool": "pool",
    "tags": "tags", "cpu_over_commit": "cpu_over_commit_ratio",
    "memory_over_commit": "memory_over_commit_ratio", "macvlan_mode": "default_macvlan_mode",
    "default_storage_pool": "default_storage_pool",
}

LIST_COLUMNS = [("ID", "id"), ("NAME", "name"), ("TYPE", "type"), ("STATE", "state"),
                ("ADDRESS", "power_address"), ("PROJECT", "project"), ("CORES", "cores_usage"),
                ("MEMORY", "memory_usage"), ("STORAGE", "storage_usage"), ("ZONE", "zone.name"),
                ("POOL", "pool.name")]
POOL_COLUMNS = [("NAME", "name"), ("TYPE", "type"), ("PATH", "path"), ("TOTAL", "total"),
                ("USED", "used"), ("AVAIL", "available")]
NUMA_COLUMNS = [("NODE", "node"), ("CORES", "cores"), ("MEMORY", "memory"), ("HUGEPAGES", "hugepages"),
                ("VMS", "vms"), ("INTERFACES", "interfaces")]


# --- formatting --------------------------------------------------------------------------------

def _emit(args, data: Any, render: Callable[[Any], str]) -> None:
    """The raw JSON with --json, otherwise the human rendering of it."""
    print(json.dumps(data, indent=2) if args.json else render(data))


def _mib(n: int | None) -> str:
    return human_bytes(None if n is None else n * MIB)


# How each usage figure reads: the read object's key and its formatter.
USAGE = {"cores": str, "memory": _mib, "local_storage": human_bytes}


def _used_of_total(host: dict, key: str) -> str:
    fmt = USAGE[key]
    return f"{fmt(host['used'][key])}/{fmt(host['total'][key])}"


def _usage_line(host: dict, key: str) -> str:
    fmt = USAGE[key]
    return (f"{fmt(host['used'][key])} used, {fmt(host['available'][key])} available "
            f"of {fmt(host['total'][key])}")


def compact_ids(ids: list[int]) -> str:
    """[0, 1, 2, 3, 8] -> "0-3,8"."""
    ranges: list[list[int]] = []
    for i in sorted(ids):
        if ranges and i == ranges[-1][1] + 1:
            ranges[-1][1] = i
        else:
            ranges.append([i, i])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in ranges) or "-"


def page_size(n: int) -> str:
    """2097152 -> "2MiB"."""
    for unit, name in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if n >= unit and n % unit == 0:
            return f"{n // unit}{name}"
    return f"{n}B"


def _hugepages(pages: list[dict]) -> str:
    return ", ".join(f"{p['total']}×{page_size(p['page_size'])} free {p['free']}"
                     for p in pages if p["total"]) or "-"


def _host_pairs(host: dict, *, full: bool) -> list[tuple[str, Any]]:
    head = [("Name", host["name"]), ("ID", host["id"]), ("Type", host["type"]), ("State", host["state"]),
            ("Address", host["power_address"]), ("Project", host["project"])]
    details = [("Version", host["version"]), ("Architectures", host["architectures"]),
               ("Server fingerprint", host["server_fingerprint"]), ("Last refresh", host["last_refresh"]),
               ("Zone", host["zone"]["name"]), ("Pool", host["pool"]["name"]), ("Tags", host["tags"]),
               ("CPU overcommit", host["cpu_over_commit_ratio"]),
               ("Memory overcommit", host["memory_over_commit_ratio"]),
               ("Default storage pool", host["default_storage_pool"]),
               ("Macvlan mode", host["default_macvlan_mode"])] if full else []
    usage = [("Cores", _usage_line(host, "cores")), ("Memory", _usage_line(host, "memory")),
             ("Storage", _usage_line(host, "local_storage"))]
    return head + details + usage


def _state_notice(host: dict) -> str:
    """The reason a host is not ready (for awaiting-trust: the commands to run), set apart."""
    if host["state"] == "ready" or not host["state_message"]:
        return ""
    return f"\n\n== VM host {host['name']} is {host['state']} ==\n{host['state_message']}"


def summary(host: dict, *, full: bool = False) -> str:
    return render_key_values(_host_pairs(host, full=full)) + _state_notice(host)


def _list_row(host: dict) -> dict:
    return {**host, "cores_usage": _used_of_total(host, "cores"),
            "memory_usage": _used_of_total(host, "memory"),
            "storage_usage": _used_of_total(host, "local_storage")}


def _pool_row(pool: dict) -> dict:
    return {"name": pool["name"] + ("*" if pool["default"] else ""), "type": pool["type"],
            "path": pool["path"], "total": human_bytes(pool["total"]), "used": human_bytes(pool["used"]),
            "available": human_bytes(pool["available"])}


def _numa_row(node: dict) -> dict:
    memory = node["memory"]
    return {"node": node["index"], "cores": compact_ids(node["cores"]["ids"]),
            "memory": f"{_mib(memory['allocated'])}/{_mib(memory['total'])}",
            "hugepages": _hugepages(node["hugepages"]), "vms": [vm["hostname"] for vm in node["vms"]],
            "interfaces": [nic["name"] for nic in node["interfaces"]]}


def _show_text(host: dict, resources: dict) -> str:
    return "\n".join([
        summary(host, full=True),
        "", "Storage pools (* = default):",
        render_table(POOL_COLUMNS, [_pool_row(p) for p in host["storage_pools"]]),
        "", "NUMA nodes (memory allocated/total):",
        render_table(NUMA_COLUMNS, [_numa_row(n) for n in resources["numa"]]),
    ])


# --- request inputs ----------------------------------------------------------------------------

def _read_file(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError as e:
        raise ClientError(f"cannot read {path}: {e.strerror}") from None


def _first_line(text: str, what: str, where: str) -> str:
    line = text.split("\n", 1)[0].rstrip("\r")
    if not line:
        raise ClientError(f"no {what} in {where}")
    return line


def _read_stdin_secret(what: str) -> str:
    text = getpass.getpass(f"{what}: ") if sys.stdin.isatty() else sys.stdin.readline()
    return _first_line(text, what, "stdin")


def _secret(args) -> dict[str, str]:
    """The one-time trust password or token the options ask for (never stored by the region)."""
    if getattr(args, "password", None):
        return {"password": args.password}
    if getattr(args, "trust_token", None):
        return {"trust_token": args.trust_token}
    if args.password_file:
        return {"password": _first_line(_read_file(args.password_file), "LXD trust password", args.password_file)}
    if args.password_stdin:
        return {"password": _read_stdin_secret("LXD trust password")}
    if args.trust_token_stdin:
        return {"trust_token": _read_stdin_secret("LXD trust token")}
    return {}


def _identity(args) -> dict[str, str]:
    """The client certificate and key to send: from files, or both empty for a new pair."""
    if getattr(args, "new_certificate", False):
        if args.key:
            raise ClientError("--new-certificate generates the key: drop --key")
        return {"certificate": "", "key": ""}
    if not args.certificate and not args.key:
        return {}
    if not (args.certificate and args.key):
        raise ClientError("give --certificate and --key together")
    return {"certificate": _read_file(args.certificate), "key": _read_file(args.key)}


def _fields(args) -> dict[str, str]:
    return {field: getattr(args, dest) for dest, field in FIELD_OPTIONS.items()
            if getattr(args, dest, None) is not None}


def resolve(client: ApiClient, ref: str) -> dict:
    """The read object of the host NAME|ID refers to."""
    if re.fullmatch(r"[0-9]+", ref):
        return client.call("GET", f"vm-hosts/{ref}/")
    for host in client.call("GET", "vm-hosts/"):
        if host["name"] == ref:
            return host
    raise ClientError(f"no VM host named {ref}")


def _item(host: dict) -> str:
    return f"vm-hosts/{host['id']}/"


def certificate_pem(client: ApiClient, name: str) -> str:
    """The host's client certificate from the region's anonymous URL (no private key travels)."""
    url = client.profile.url.removesuffix("api/2.0/") + CERTIFICATE_PATH + urllib.parse.quote(name, safe="")
    try:
        with urllib.request.urlopen(url, timeout=client.timeout) as response:
            return response.read().decode()
    except urllib.error.HTTPError as e:
        raise ClientError(f"cannot download the certificate of {name} ({e.code} {e.reason})") from None
    except urllib.error.URLError as e:
        raise ClientError(f"cannot reach {url}: {e.reason}") from None


def _confirmed(question: str) -> bool:
    """Ask on a terminal; without one there is nobody to ask, so the answer is no."""
    if not sys.stdin.isatty():
        return False
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


# --- actions -----------------------------------------------------------------------------------

def _type_and_address(args) -> tuple[str, str]:
    """`add lxd --address A`, `add lxd A` and `add A` all work."""
    words = [w for w in (args.first, args.second) if w]
    host_type = words.pop(0) if words and words[0] in HOST_TYPES else "lxd"
    if args.address and words:
        raise ClientError("give the address once: as an argument or with --address")
    address = args.address or (words[0] if words else None)
    if not address or len(words) > 1:
        raise ClientError("usage: vmyard vm-host add [lxd] ADDRESS (or --address ADDRESS)")
    return host_type, address


def cmd_add(args, client: ApiClient) -> None:
    host_type, address = _type_and_address(args)
    data = {"type": host_type, "power_address": address, **_fields(args), **_identity(args), **_secret(args)}
    host = client.call("POST", "vm-hosts/", data=data)

    def render(h: dict) -> str:
        text = f"Added VM host {h['name']} (id {h['id']}).\n{summary(h)}"
        if h.get("state") == "awaiting-trust":
            text += "\n\nThe host's client certificate:\n" + certificate_pem(client, h["name"]).rstrip()
        return text

    _emit(args, host, render)


def cmd_list(args, client: ApiClient) -> None:
    _emit(args, client.call("GET", "vm-hosts/"),
          lambda hosts: render_table(LIST_COLUMNS, [_list_row(h) for h in hosts]))


def cmd_show(args, client: ApiClient) -> None:
    host = resolve(client, args.host)
    _emit(args, host, lambda h: _show_text(h, client.call("GET", _item(h), op="resources")))


def cmd_compose(args, client: ApiClient) -> None:
    machine_cli.cmd_compose(args, client, resolve(client, args.host))


def cmd_cert(args, client: ApiClient) -> None:
    host = resolve(client, args.host)
    pem = certificate_pem(client, host["name"])
    _emit(args, {"name": host["name"], "certificate": pem}, lambda c: c["certificate"].rstrip("\n"))


def cmd_refresh(args, client: ApiClient) -> None:
    host = resolve(client, args.host)
    refreshed = client.call("POST", _item(host), op="refresh", data=_secret(args))
    _emit(args, refreshed, lambda h: f"Refreshed {h['name']}: {h['state']}\n{summary(h)}")


def cmd_update(args, client: ApiClient) -> None:
    data = {**_fields(args), **_identity(args), **_secret(args)}
    if not data:
        raise ClientError("nothing to update: give at least one option (see `vmyard vm-host update --help`)")
    updated = client.call("PUT", _item(resolve(client, args.host)), data=data)
    _emit(args, updated, lambda h: f"Updated VM host {h['name']}.\n{summary(h)}")


def cmd_trust_server(args, client: ApiClient) -> None:
    data = {"fingerprint": args.fingerprint} if args.fingerprint else {}
    host = client.call("POST", _item(resolve(client, args.host)), op="trust_server", data=data)
    _emit(args, host, lambda h: f"Trusted the server certificate of {h['name']} "
                                f"(fingerprint {h['server_fingerprint']}).\n{summary(h)}")


def cmd_remove(args, client: ApiClient) -> None:
    host = resolve(client, args.host)
    what = f"VM host {host['name']} (id {host['id']})"
    also = " and delete its VMs in LXD" if args.decompose else ""
    if not args.yes and not _confirmed(f"Remove {what}{also}?"):
        raise ClientError(f"not removing {what}: add --yes to confirm")
    vms = [vm["hostname"] for vm in client.call("GET", _item(host), op="resources")["vms"]] \
        if args.decompose else []
    client.call("DELETE", _item(host), query={"decompose": "true"} if args.decompose else None)
    removed = {"id": host["id"], "name": host["name"], "deleted_vms": vms}
    _emit(args, removed, lambda r: f"Removed {what}{_vms_outcome(args.decompose, vms)}")


def _vms_outcome(decomposed: bool, vms: list[str]) -> str:
    if not decomposed:
        return "; any VMs it had were left on the LXD host."
    return f" and deleted its {len(vms)} VM(s) in LXD: {', '.join(vms)}." if vms else " (it had no VMs)."


def cmd_tag(args, client: ApiClient) -> None:
    host = client.call("POST", _item(resolve(client, args.host)), op=f"{args.change}_tag", data={"tag": args.tag})
    _emit(args, host, lambda h: f"Tags of {h['name']}: {','.join(h['tags']) or '-'}")


# --- argument parsing --------------------------------------------------------------------------

def _add_secret_options(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument("--password", metavar="PASSWORD",
                       help="LXD trust password (visible to other local users in `ps`; prefer --password-stdin)")
    group.add_argument("--trust-token", metavar="TOKEN",
                       help="LXD trust token from `lxc config trust add --name N` (single use)")
    group.add_argument("--password-file", metavar="FILE", help="read the LXD trust password from FILE's first line")
    group.add_argument("--password-stdin", action="store_true",
                       help="read the LXD trust password from stdin (prompted on a terminal)")
    group.add_argument("--trust-token-stdin", action="store_true",
                       help="read an LXD trust token (`lxc config trust add --name N`) from stdin")


def _add_field_options(p: argparse.ArgumentParser, *, updating: bool) -> None:
    p.add_argument("--name", help="new name" if updating else "name (default: derived from ADDRESS)")
    if updating:
        p.add_argument("--address", help="new address, host[:8443]")
    p.add_argument("--project", help="LXD project (created if missing)")
    p.add_argument("--zone", help="zone name")
    p.add_argument("--pool", help="resource pool name")
    p.add_argument("--tags", metavar="A,B", help="comma-separated tags" + (" (replaces them)" if updating else ""))
    p.add_argument("--cpu-over-commit", "--cpu-overcommit", metavar="RATIO", help="CPU overcommit ratio, 0-10")
    p.add_argument("--memory-over-commit", "--memory-overcommit", metavar="RATIO",
                   help="memory overcommit ratio, 0-10")
    p.add_argument("--macvlan-mode", metavar="MODE", help="default macvlan mode: bridge, passthru, private or vepa"
                   + (" ('' clears it)" if updating else ""))
    if updating:
        p.add_argument("--default-storage-pool", metavar="POOL", help="name or id of one of the host's pools")


def _add_identity_options(p: argparse.ArgumentParser, *, updating: bool) -> None:
    group = p.add_mutually_exclusive_group() if updating else p
    group.add_argument("--certificate", metavar="FILE", help="PEM client certificate to use (with --key)")
    if updating:
        group.add_argument("--new-certificate", action="store_true",
                           help="generate a new certificate and key (the LXD host must trust it again)")
    p.add_argument("--key", metavar="FILE", help="PEM private key of --certificate (no passphrase)")


def add_vm_host_parser(sub) -> None:
    """Register `vm-host` (alias `vm-hosts`) on the top-level sub-command parsers."""
    p = sub.add_parser("vm-host", aliases=["vm-hosts"], help="manage VM hosts (LXD)")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    def action(name: str, func, help: str, *, on_host: bool = True) -> argparse.ArgumentParser:
        a = actions.add_parser(name, help=help, description=help)
        if on_host:
            a.add_argument("host", metavar="NAME|ID")
        a.set_defaults(func=func, needs_client=True)
        return a

    a = action("add", cmd_add, "add an LXD VM host: add [lxd] ADDRESS, or add lxd --address ADDRESS",
               on_host=False)
    a.add_argument("first", nargs="?", metavar="TYPE|ADDRESS", help="lxd (the default), or the address")
    a.add_argument("second", nargs="?", metavar="ADDRESS", help="host[:8443]")
    a.add_argument("--address", help="host[:8443]")
    _add_field_options(a, updating=False)
    _add_secret_options(a)
    _add_identity_options(a, updating=False)
    action("list", cmd_list, "list VM hosts", on_host=False)
    action("show", cmd_show, "show a VM host, its storage pools and NUMA nodes")
    add_interface_actions(action)
    machine_cli.add_compose_options(action("compose", cmd_compose, "compose a VM or container on the host"))
    action("cert", cmd_cert, "print the host's client certificate (PEM), e.g. for `lxc config trust add -`")
    _add_secret_options(action("refresh", cmd_refresh, "rediscover a VM host now"))
    u = action("update", cmd_update, "change a VM host (a new address, project or identity rediscovers it)")
    _add_field_options(u, updating=True)
    _add_secret_options(u)
    _add_identity_options(u, updating=True)
    t = action("trust-server", cmd_trust_server, "accept the host's new server certificate after a legitimate change")
    t.add_argument("--fingerprint", metavar="SHA256", help="the fingerprint the host must present (`lxc info`)")
    r = action("remove", cmd_remove, "forget a VM host")
    r.add_argument("--decompose", action="store_true", help="also delete the host's VMs in LXD")
    r.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    g = action("tag", cmd_tag, "add or remove a tag")
    g.add_argument("change", choices=["add", "remove"])
    g.add_argument("tag")
