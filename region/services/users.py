"""Users and their API tokens (a password exchanged for one: region/services/login.py)."""

from __future__ import annotations

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
