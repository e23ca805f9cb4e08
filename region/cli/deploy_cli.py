"""`vmyard machine allocate|deploy|release`: take a machine, put an OS on it, give it back."""

from __future__ import annotations

import base64
import sys
import time
from pathlib import Path
from typing import Callable

from region.cli.client import ApiClient, ClientError
from region.cli.machine_cli import _emit, _show, memory_mib, resolve_machine

DEPLOY_DONE = ("Deployed", "Failed deployment")
POLL_SECONDS = 3.0


def cmd_allocate(args, client: ApiClient) -> None:
    data = {key: value for key, value in (
        ("name", args.name), ("cpu_count", args.cores), ("mem", memory_mib(args.memory) if args.memory else None),
        ("zone", args.zone), ("pool", args.pool), ("instance_type", args.instance_type),
    ) if value is not None}
    m = client.call("POST", "machines/", op="allocate", data=data)
    _emit(args, m, lambda m: f"Allocated {m['hostname']} ({m['system_id']}).\n\n{_show(m)}")


def _user_data(source: str) -> str:
    raw = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    return base64.b64encode(raw).decode("ascii")


def wait_for(client: ApiClient, system_id: str, done: Callable[[dict], bool], timeout: float,
             sleep: Callable[[float], None] = time.sleep) -> dict:
    """Poll the machine until `done(machine)`; print each new status message on stderr."""
    deadline, said = time.monotonic() + timeout, None
    while True:
        m = client.call("GET", f"machines/{system_id}/")
        line = f"{m['status_name']}: {m.get('status_message') or ''}".rstrip(": ")
        if line != said:
            print(line, file=sys.stderr)
            said = line
        if done(m):
            return m
        if time.monotonic() > deadline:
            raise ClientError(f"{m['hostname']} is still {m['status_name']} after {timeout:.0f} s")
        sleep(POLL_SECONDS)


def cmd_deploy(args, client: ApiClient) -> None:
    m = resolve_machine(client, args.machine)
    data = {key: value for key, value in (
        ("distro_series", args.distro_series),
        ("user_data", _user_data(args.user_data) if args.user_data else None),
    ) if value is not None}
    m = client.call("POST", f"machines/{m['system_id']}/", op="deploy", data=data)
    if args.wait:
        m = wait_for(client, m["system_id"], lambda m: m["status_name"] in DEPLOY_DONE, args.timeout)
        if m["status_name"] != "Deployed":
            raise ClientError(f"{m['hostname']}: {m['status_name']}: {m.get('status_message') or ''}")
    _emit(args, m, lambda m: f"{m['hostname']} ({m['system_id']}): {m['status_name']}")


def cmd_release(args, client: ApiClient) -> None:
    m = resolve_machine(client, args.machine)
    m = client.call("POST", f"machines/{m['system_id']}/", op="release")
    _emit(args, m, lambda m: f"{m['hostname']} ({m['system_id']}): {m['status_name']}")


def add_deploy_actions(actions) -> None:
    a = actions.add_parser("allocate", help="allocate a Ready machine, composing one on demand")
    a.add_argument("--name", help="a machine's hostname or system id")
    a.add_argument("--cores", help="at least this many vCPUs")
    a.add_argument("--memory", help="at least this much memory, e.g. 2048 (MiB), 4G")
    a.add_argument("--zone")
    a.add_argument("--pool")
    a.add_argument("--instance-type", choices=("virtual-machine", "container"))
    a.set_defaults(func=cmd_allocate, needs_client=True)

    d = actions.add_parser("deploy", help="deploy an image onto an allocated machine")
    d.add_argument("machine", metavar="HOSTNAME|SYSTEM_ID")
    d.add_argument("--distro-series", help="the image: custom/NAME, ubuntu/noble or noble")
    d.add_argument("--user-data", metavar="FILE|-", help="cloud-init user data (a file, or - for stdin)")
    d.add_argument("--wait", action="store_true", help="wait until Deployed; fail on Failed deployment")
    d.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait (default 1800)")
    d.set_defaults(func=cmd_deploy, needs_client=True)

    r = actions.add_parser("release", help="release a machine (one composed by allocate is deleted)")
    r.add_argument("machine", metavar="HOSTNAME|SYSTEM_ID")
    r.set_defaults(func=cmd_release, needs_client=True)
