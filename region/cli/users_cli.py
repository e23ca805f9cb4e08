"""`vmyard users list|show|create|delete`: user accounts (creating and deleting is for admins).

`create` asks for the new user's password on the terminal, or reads it from stdin with
`--password-stdin`; it is never an argument (`ps` would show it).
"""

from __future__ import annotations

import json

from region.cli.client import ApiClient
from region.cli.password_input import read_password
from region.cli.table import render_table

COLUMNS = [("USERNAME", "username"), ("EMAIL", "email"), ("ADMIN", "is_superuser")]


def _print(args, data) -> None:
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print(render_table(COLUMNS, data if isinstance(data, list) else [data]))


def cmd_users(args, client: ApiClient) -> None:
    if args.action == "list":
        _print(args, client.call("GET", "users/"))
    elif args.action == "show":
        _print(args, client.call("GET", f"users/{args.username}/"))
    elif args.action == "create":
        password = read_password(from_stdin=args.password_stdin)
        _print(args, client.call("POST", "users/", data={
            "username": args.username, "email": args.email, "password": password,
            "is_superuser": "true" if args.admin else "false"}))
    elif args.action == "delete":
        query = {"transfer_resources_to": args.transfer_to} if args.transfer_to else None
        client.call("DELETE", f"users/{args.username}/", query=query)
        handed = f"; their machines now belong to {args.transfer_to}" if args.transfer_to else ""
        print(f"Deleted user {args.username}{handed}.")


def add_users_parser(sub) -> None:
    p = sub.add_parser("users", help="list, show, create and delete users")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("list", help="list users")
    actions.add_parser("show", help="show a user").add_argument("username")
    c = actions.add_parser("create", help="create a user (admins only; the password is asked for)")
    c.add_argument("username")
    c.add_argument("--email", default="")
    c.add_argument("--admin", action="store_true", help="make the user an administrator")
    c.add_argument("--password-stdin", action="store_true", help="read the password from stdin's first line")
    d = actions.add_parser("delete", help="delete a user (admins only)")
    d.add_argument("username")
    d.add_argument("--transfer-to", metavar="USERNAME",
                   help="hand the user's machines to this user (needed while they own any)")
    p.set_defaults(func=cmd_users, needs_client=True)
