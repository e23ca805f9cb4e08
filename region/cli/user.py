"""vmyard: the user CLI for a vmyard (or MAAS-compatible) region."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from region.cli.client import ApiClient, ClientError, Profile, ProfileStore, api_url
from region.cli.password_input import PasswordInputError
from region.cli.image_cli import add_images_parser
from region.cli.network_cli import add_network_parsers
from region.cli.sshkey_cli import add_sshkey_parser
from region.cli.table import render_table
from region.cli.deploy_cli import add_deploy_actions
from region.cli.machine_cli import add_machine_parser
from region.cli.users_cli import add_users_parser
from region.cli.vmhost_cli import add_vm_host_parser


def _output(args, data: Any, columns: list[tuple[str, str]]) -> None:
    if args.json:
        print(json.dumps(data, indent=2))
        return
    rows = data if isinstance(data, list) else [data]
    print(render_table(columns, rows))


def cmd_login(args, store: ProfileStore) -> None:
    profile = Profile(args.profile, api_url(args.url), args.apikey.strip())
    profile.credentials  # validates the key's shape
    me = ApiClient(profile).call("GET", "users/", op="whoami")
    store.save(profile)
    print(f"Logged in to {profile.url} as {me['username']} (profile {profile.name}).")


def cmd_logout(args, store: ProfileStore) -> None:
    store.remove(args.profile)
    print(f"Removed profile {args.profile}.")


def cmd_profiles(args, store: ProfileStore) -> None:
    for name in store.names():
        print(name)


RACK_COLUMNS = [("SYSTEM_ID", "system_id"), ("HOSTNAME", "hostname"), ("STATUS", "status"),
                ("CONNECTIONS", "connections"), ("LAST SEEN", "last_seen"), ("VERSION", "version")]
NAMED_COLUMNS = [("ID", "id"), ("NAME", "name"), ("DESCRIPTION", "description")]


def cmd_racks(args, client: ApiClient) -> None:
    _output(args, client.call("GET", "rackcontrollers/"), RACK_COLUMNS)


def _named_commands(collection: str, item: str):
    """list/create/show/update/delete for zones and resource pools.

    Items are addressed by name: zones are by name in the MAAS API, and the
    server accepts a name wherever a pool id goes.
    """

    def run(args, client: ApiClient) -> None:
        if args.action == "list":
            _output(args, client.call("GET", collection), NAMED_COLUMNS)
        elif args.action == "create":
            _output(args, client.call("POST", collection,
                                      data={"name": args.name, "description": args.description}), NAMED_COLUMNS)
        elif args.action == "show":
            _output(args, client.call("GET", f"{item}{args.name}/"), NAMED_COLUMNS)
        elif args.action == "update":
            data = {"name": args.new_name, "description": args.description}
            if all(v is None for v in data.values()):
                raise ClientError("nothing to update: give --new-name and/or --description")
            _output(args, client.call("PUT", f"{item}{args.name}/", data=data), NAMED_COLUMNS)
        elif args.action == "delete":
            client.call("DELETE", f"{item}{args.name}/")
            print(f"Deleted {args.name}.")

    return run


def _add_named_parser(sub, name: str, what: str, func) -> None:
    p = sub.add_parser(name, help=f"manage {what}s")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("list", help=f"list {what}s")
    c = actions.add_parser("create", help=f"create a {what}")
    c.add_argument("name")
    c.add_argument("--description")
    s = actions.add_parser("show", help=f"show a {what}")
    s.add_argument("name")
    u = actions.add_parser("update", help=f"update a {what}")
    u.add_argument("name")
    u.add_argument("--new-name")
    u.add_argument("--description")
    d = actions.add_parser("delete", help=f"delete a {what}")
    d.add_argument("name")
    p.set_defaults(func=func, needs_client=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vmyard", description=__doc__)
    parser.add_argument("--profile", help="profile to use (default: the last one logged in)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("login", help="log in and save a profile")
    p.add_argument("profile")
    p.add_argument("url", help="e.g. http://127.0.0.1:5240/MAAS/")
    p.add_argument("apikey", help="consumer_key:token_key:token_secret")
    p.set_defaults(func=cmd_login, needs_client=False)

    p = sub.add_parser("logout", help="forget a profile")
    p.add_argument("profile")
    p.set_defaults(func=cmd_logout, needs_client=False)

    p = sub.add_parser("profiles", help="list saved profiles")
    p.set_defaults(func=cmd_profiles, needs_client=False)

    p = sub.add_parser("racks", help="list rack controllers")
    p.set_defaults(func=cmd_racks, needs_client=True)

    _add_named_parser(sub, "zones", "zone", _named_commands("zones/", "zones/"))
    _add_named_parser(sub, "pools", "resource pool",
                      _named_commands("resourcepools/", "resourcepool/"))
    add_network_parsers(sub)
    add_vm_host_parser(sub)
    add_deploy_actions(add_machine_parser(sub))
    add_images_parser(sub)
    add_sshkey_parser(sub)
    add_users_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    store = ProfileStore()
    try:
        if args.needs_client:
            args.func(args, ApiClient(store.get(args.profile)))
        else:
            args.func(args, store)
    except (ClientError, PasswordInputError) as e:
        print(f"vmyard: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
