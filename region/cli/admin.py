"""vmyard-region: administration commands run on a region machine.

They read the same configuration as vmyard-regiond (data dir, DSN, region
key).  With the embedded database and no region running, the command starts
the cluster for its own use and stops it again.
"""

from __future__ import annotations

import argparse
import contextlib
import sys

from common.config import ConfigError
from region import config as region_config
from region.cli.password_input import PasswordInputError, read_password
from region.db import errors, migrate, secrets, users
from region.db.pool import run_sync
from region.db.secrets import create_one_time_secret_thd, rotate_shared_secret_thd
from region.embedded_pg import database_dsn
from region.secretbox import SecretBox, SecretKeyError
from region.services.errors import InvalidInput
from region.services.users import NewUser, create_user_thd


class CommandError(Exception):
    pass


@contextlib.contextmanager
def database(cfg: region_config.RegionConfig):
    dsn, embedded = database_dsn(cfg)
    started = False
    if embedded is not None:
        if not embedded.is_initialised():
            raise CommandError(f"no region database in {cfg.data_dir}: start vmyard-regiond once first "
                               "(or pass --data-dir / --database-dsn)")
        if not embedded.is_running():
            embedded.start()
            started = True
    try:
        yield dsn
    finally:
        if started:
            embedded.stop()


def _box(cfg: region_config.RegionConfig) -> SecretBox:
    try:
        return SecretBox.load(cfg.key_file)
    except PermissionError:
        raise CommandError(f"cannot read the region key {cfg.key_file}: run as root") from None


def cmd_migrate(cfg, args) -> None:
    with database(cfg) as dsn:
        applied = migrate.migrate(dsn)
    print(f"applied migrations {applied}" if applied else "the schema is up to date "
          f"(version {migrate.head_version()})")


def _password(args) -> str:
    if args.password is None:
        return read_password(from_stdin=args.password_stdin)
    print("vmyard-region: warning: a password given with --password is visible to other users of this "
          "machine (ps, /proc); prefer the prompt or --password-stdin", file=sys.stderr)
    return args.password


def cmd_createuser(cfg, args) -> None:
    new = NewUser(args.username, args.email or "", _password(args), is_superuser=args.admin)
    with database(cfg) as dsn:
        user = run_sync(dsn, create_user_thd, new, created_by=None)
    print(f"created {'administrator' if user.is_superuser else 'user'} {user.username}")


def cmd_apikey(cfg, args) -> None:
    box = _box(cfg)

    def apikey_thd(cur):
        user = users.get_user_thd(cur, args.username)
        if args.delete:
            users.delete_token_thd(cur, user.id, args.delete.split(":")[1] if ":" in args.delete else args.delete)
            return []
        tokens = users.list_tokens_thd(cur, box, user.id)
        if args.generate or not tokens:
            tokens = [users.create_token_thd(cur, box, user.id, args.name or "")]
        return tokens

    with database(cfg) as dsn:
        tokens = run_sync(dsn, apikey_thd)
    for token in tokens:
        print(token.apikey)


def cmd_enrol_secret(cfg, args) -> None:
    box = _box(cfg)

    def secret_thd(cur):
        if args.rotate:
            return rotate_shared_secret_thd(cur, box)
        if args.one_time:
            return create_one_time_secret_thd(cur, box)
        value = secrets.get_thd(cur, box, secrets.ENROLLMENT_SECRET)
        if value is None:
            raise CommandError("no enrollment secret yet: start vmyard-regiond once first")
        return value

    with database(cfg) as dsn:
        print(run_sync(dsn, secret_thd))



def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vmyard-region", description=__doc__.splitlines()[0])
    region_config.add_arguments(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("migrate", help="apply database migrations")
    p.set_defaults(func=cmd_migrate)

    for name, what in (("createadmin", "an administrator"), ("createuser", "a user")):
        p = sub.add_parser(name, help=f"create {what} (the password is asked for, or read with --password-stdin)")
        p.add_argument("--username", required=True)
        p.add_argument("--email", default="")
        given = p.add_mutually_exclusive_group()
        given.add_argument("--password-stdin", action="store_true", help="read the password from stdin's first line")
        given.add_argument("--password", help="the password (visible to other local users in `ps`; avoid)")
        if name == "createuser":
            p.add_argument("--admin", action="store_true", help="make the user an administrator")
        p.set_defaults(func=cmd_createuser, admin=name == "createadmin")

    p = sub.add_parser("apikey", help="print a user's API keys (creating one if none)")
    p.add_argument("--username", required=True)
    p.add_argument("--generate", action="store_true", help="create a new key")
    p.add_argument("--name", help="a label for a new key")
    p.add_argument("--delete", metavar="KEY", help="delete this key")
    p.set_defaults(func=cmd_apikey)

    p = sub.add_parser("enrol-secret", help="print the rack enrollment secret")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--rotate", action="store_true", help="replace the shared secret")
    group.add_argument("--one-time", action="store_true", help="make a secret that enrols one rack")
    p.set_defaults(func=cmd_enrol_secret)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        cfg = region_config.from_arguments(args)
        args.func(cfg, args)
    except (CommandError, ConfigError, SecretKeyError, PasswordInputError, InvalidInput) as e:
        print(f"vmyard-region: {e}", file=sys.stderr)
        return 1
    except errors.FieldError as e:
        print(f"vmyard-region: {e.field}: {e.message}", file=sys.stderr)
        return 1
    except errors.NotFound as e:
        print(f"vmyard-region: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
