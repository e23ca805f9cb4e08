"""Users and their API tokens: the actor's own tokens, and a password exchanged for one."""

from __future__ import annotations

import attrs

from region.db import users
from region.db.users import ApiToken, User
from region.services.context import Context


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


async def authenticate(ctx: Context, username: str, password: str, consumer: str | None) -> ApiToken | None:
    """The user's token named `consumer` (any of theirs when None), made if there is none;
    None when the username or password is wrong."""
    def authenticate_thd(cur):
        user = users.authenticate_password_thd(cur, username, password)
        if user is None:
            return None
        existing = [t for t in users.list_tokens_thd(cur, ctx.box, user.id) if consumer is None or t.name == consumer]
        if existing:
            token, what = existing[0], "Retrieved API (OAuth) token."
        else:
            token, what = users.create_token_thd(cur, ctx.box, user.id, consumer or ""), "Created API (OAuth) token."
        _audit_thd(attrs.evolve(ctx, actor=user), cur, what)  # the password proved who is acting
        return token

    return await ctx.db.run(authenticate_thd)
