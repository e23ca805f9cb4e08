"""Users and their API tokens (a password exchanged for one: region/services/login.py).

Admins create and delete users (the API and `vmyard-region createuser` share one path);
a user who still owns machines is deleted only when they are handed to someone else.
"""

from __future__ import annotations

import re

import attrs

from region.db import events, machines, users
from region.db.machines import MachineQuery
from region.db.users import ApiToken, User
from region.services.context import Context
from region.services.errors import FieldError, Forbidden, InvalidInput, NotFound, Refused

MIN_PASSWORD_LENGTH = 8
MAX_EMAIL_LENGTH = 254
# Django's username rule, as MAAS has it.
_USERNAME_RE = re.compile(r"^[\w.@+-]{1,150}$", re.ASCII)
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+$")


@attrs.frozen
class NewUser:
    username: str
    email: str
    password: str = attrs.field(repr=False)
    is_superuser: bool = False


def _text_problem(value: str) -> str | None:
    """Why PostgreSQL (or the password hash) cannot take `value`, or None."""
    if "\x00" in value:
        return "Null characters are not allowed."
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "Enter valid Unicode text (no lone surrogates)."
    return None


def check_new_user(new: NewUser) -> None:
    """InvalidInput naming every field that breaks the rules."""
    errors: dict[str, list[str]] = {}
    for field in ("username", "email", "password"):
        problem = _text_problem(getattr(new, field))
        if problem:
            errors[field] = [problem]
    if "username" not in errors and not _USERNAME_RE.match(new.username):
        errors["username"] = ["Enter a valid username: 1-150 letters, digits and @/./+/-/_ characters."]
    if "email" not in errors and new.email and (len(new.email) > MAX_EMAIL_LENGTH
                                               or not _EMAIL_RE.match(new.email)):
        errors["email"] = ["Enter a valid email address."]
    if "password" not in errors and len(new.password) < MIN_PASSWORD_LENGTH:
        errors["password"] = [f"This password is too short. It must contain at least {MIN_PASSWORD_LENGTH} "
                              f"characters."]
    if errors:
        raise InvalidInput(errors)


def create_user_thd(cur, new: NewUser, *, created_by: str | None) -> User:
    """Check and store the user (password hashed) with an audit event; `created_by` is the
    acting admin's name (None: the region's own admin CLI)."""
    check_new_user(new)
    user = users.create_user_thd(cur, new.username, new.password, new.email, is_superuser=new.is_superuser)
    kind = "administrator" if user.is_superuser else "user"
    events.record_thd(cur, "USER_CREATED", f"{kind} {user.username} created", level="AUDIT", username=created_by,
                      object_type="user", object_id=user.username)
    return user


def _require_admin(ctx: Context, what: str) -> None:
    if not ctx.is_admin:
        raise Forbidden(f"Only an administrator may {what}.")


async def create_user(ctx: Context, new: NewUser) -> User:
    _require_admin(ctx, "create users")
    return await ctx.db.run(create_user_thd, new, created_by=ctx.username)


async def delete_user(ctx: Context, username: str, transfer_to: str | None = None) -> None:
    """Delete the user and their API keys.  If they own machines, `transfer_to` (a username)
    takes them over as they are; without it the delete is Refused, naming the machines."""
    _require_admin(ctx, "delete users")
    if username == ctx.username:
        raise Refused("An administrator cannot self-delete.")

    def delete_thd(cur):
        user = users.get_user_thd(cur, username)
        heir = None
        if transfer_to is not None:
            try:
                heir = users.get_user_thd(cur, transfer_to)
            except NotFound:
                raise FieldError("transfer_resources_to", f"No user is named {transfer_to!r}.") from None
            if heir.id == user.id:
                raise FieldError("transfer_resources_to", "Name another user: this one is being deleted.")
        owned = machines.list_thd(cur, MachineQuery(owner_id=user.id))
        if owned and heir is None:
            named = ", ".join(f"{m.hostname} ({m.system_id})" for m in owned)
            raise Refused(f"User {username} cannot be deleted: they own {len(owned)} machine(s): {named}. "
                          f"Release them, or give transfer_resources_to=<username> to hand them over.")
        if owned:
            machines.transfer_owner_thd(cur, user.id, heir.id)
            ctx.audit_thd(cur, "USER_RESOURCES_TRANSFERRED",
                          f"{len(owned)} machine(s) of {username} transferred to {heir.username}", "user", username)
        users.delete_user_thd(cur, user.id)
        ctx.audit_thd(cur, "USER_DELETED", f"user {username} deleted", "user", username)

    await ctx.db.run(delete_thd)


def _audit_thd(ctx: Context, cur, description: str) -> None:
    """Token events are AUTHORISATION events about the acting user."""
    ctx.audit_thd(cur, "AUTHORISATION", description, "user", ctx.username)


async def list_users(ctx: Context) -> list[User]:
    return await ctx.db.run(users.list_users_thd)


async def get_user(ctx: Context, username: str) -> User:
    return await ctx.db.run(users.get_user_thd, username)


async def list_tokens(ctx: Context) -> list[ApiToken]:
    return await ctx.db.run(users.list_tokens_thd, ctx.box, ctx.actor.id)


async def create_token(ctx: Context, name: str) -> ApiToken:
    def create_thd(cur):
        token = users.create_token_thd(cur, ctx.box, ctx.actor.id, name)
        _audit_thd(ctx, cur, "Created token.")
        return token

    return await ctx.db.run(create_thd)


async def delete_token(ctx: Context, token_key: str) -> None:
    def delete_thd(cur):
        users.delete_token_thd(cur, ctx.actor.id, token_key)
        _audit_thd(ctx, cur, "Deleted token.")

    await ctx.db.run(delete_thd)


async def rename_token(ctx: Context, token: str, name: str) -> None:
    """`token`: the whole API key (consumer:token:secret), or only its token key."""
    parts = token.split(":")
    token_key = parts[1] if len(parts) == 3 else token

    def rename_thd(cur):
        users.rename_token_thd(cur, ctx.actor.id, token_key, name)
        _audit_thd(ctx, cur, "Modified consumer name of token.")

    await ctx.db.run(rename_thd)
