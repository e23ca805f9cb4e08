"""Reading a password for a command without putting it on the command line (where `ps`
shows it to every local user)."""

from __future__ import annotations

import getpass
import sys


class PasswordInputError(Exception):
    pass


def read_password(*, from_stdin: bool, confirm: bool = True) -> str:
    """The first line of stdin when `from_stdin`; else asked on the terminal (twice with
    `confirm`, which must match)."""
    if from_stdin:
        password = sys.stdin.readline().split("\n", 1)[0].rstrip("\r")
        if not password:
            raise PasswordInputError("no password in stdin")
        return password
    if not sys.stdin.isatty():
        raise PasswordInputError("no terminal to ask for the password on: give it with --password-stdin")
    password = getpass.getpass("Password: ")
    if confirm and getpass.getpass("Password (again): ") != password:
        raise PasswordInputError("the two passwords differ")
    return password
