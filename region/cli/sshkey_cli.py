"""`vmyard sshkeys list|add|delete`: the logged-in user's SSH public keys.

Keys are put on the machines the user deploys.  `add` reads a public key file (or standard
input with `-`, the default); every non-blank line that is not a `#` comment is one key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import sys
from pathlib import Path

from region.cli.client import ApiClient, ClientError
from region.cli.table import render_table

COLLECTION = "account/prefs/sshkeys/"  # MAAS's path; vmyard also answers on sshkeys/
COLUMNS = [("ID", "id"), ("TYPE", "type"), ("FINGERPRINT", "fingerprint"), ("COMMENT", "comment")]


def _row(key: dict) -> dict:
    """The API's key plus its type, comment and SHA256 fingerprint (as ssh-keygen -l shows it)."""
    kind, blob, *comment = key["key"].split(None, 2)
    try:
        digest = hashlib.sha256(base64.b64decode(blob)).digest()
        fingerprint = "SHA256:" + base64.b64encode(digest).decode().rstrip("=")
    except binascii.Error:
        fingerprint = None
    return {**key, "type": kind, "fingerprint": fingerprint, "comment": comment[0] if comment else ""}


def _key_lines(source: str) -> list[str]:
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ClientError(f"cannot read {source}: {e}") from None
    lines = [line.strip() for line in text.splitlines()]
    keys = [line for line in lines if line and not line.startswith("#")]
    if not keys:
        raise ClientError(f"no public key in {'standard input' if source == '-' else source}")
    return keys


def _print(args, data) -> None:
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print(render_table(COLUMNS, [_row(k) for k in (data if isinstance(data, list) else [data])]))


def cmd_sshkeys(args, client: ApiClient) -> None:
    if args.action == "list":
        _print(args, client.call("GET", COLLECTION))
    elif args.action == "add":
        # One request per key, so a refused key names its line and the keys before it stay.
        added = []
        for number, line in enumerate(_key_lines(args.file), 1):
            try:
                added.append(client.call("POST", COLLECTION, data={"key": line}))
            except ClientError as e:
                raise ClientError(f"key {number} not added ({len(added)} added before it): {e}") from None
        _print(args, added)
    elif args.action == "delete":
        client.call("DELETE", f"{COLLECTION}{args.id}/")
        print(f"Deleted SSH key {args.id}.")


def add_sshkey_parser(sub) -> None:
    """Register `sshkeys` on the vmyard command line."""
    p = sub.add_parser("sshkeys", help="manage your SSH public keys (put on machines you deploy)")
    p.set_defaults(func=cmd_sshkeys, needs_client=True)
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("list", help="list your SSH keys")
    add = actions.add_parser("add", help="add the public keys in FILE (one per line)")
    add.add_argument("file", nargs="?", default="-", metavar="FILE",
                     help="e.g. ~/.ssh/id_ed25519.pub; - (the default) reads standard input")
    actions.add_parser("delete", help="delete one of your SSH keys").add_argument("id", type=int)
