"""Logging in with a password: the one anonymous action that costs real CPU, so it is guarded.

- The stored hash is read in a short transaction and checked on a pool of its own
  (HASH_THREADS): a flood of logins queues there, never on the database pool that every other
  request needs, and no database connection is held while hashing.
- Unknown and inactive users cost a hash check too, so timing does not tell which names exist.
- Failed attempts are throttled per username *from one address* and per address: a few are
  free, then each waits twice as long as the last, never more than MAX_DELAY.  Counting a
  username per address means a flood from one place cannot lock its owner out from another;
  the per-address count stops one client trying many usernames; and at most MAX_IN_PROGRESS
  logins run at once region-wide, which bounds what many addresses together can cost.
- The counts live in this region process's memory: they guard this process's resources.
"""

from __future__ import annotations

import functools
import math
import time
from typing import Callable

import attrs
from twisted.logger import Logger

from common.logsafe import loggable
from common.threadpools import LazyThreadPool
from region.db import users
from region.db.users import ApiToken, User
from region.services.context import Context
from region.services.errors import Throttled, Unavailable

log = Logger()

HASH_THREADS = 2
MAX_IN_PROGRESS = 16
FREE_FAILURES = 5  # per username and address
FREE_ADDRESS_FAILURES = 20  # per address, whatever the usernames
FIRST_DELAY = 1.0
MAX_DELAY = 60.0
FORGET_AFTER = 15 * 60.0  # seconds without a failure before a count starts again from zero
MAX_TRACKED = 100_000  # counts kept at most; the oldest are dropped beyond that


@functools.cache
def _dummy_hash() -> str:
    """What an unknown username is checked against, so it costs what a wrong password does.
    Made on first use, in the hash pool: at import it added ~0.25 s to every region start."""
    return users.hash_password("not a password anyone has")


@attrs.frozen
class LoginAttempt:
    username: str
    password: str = attrs.field(repr=False)
    consumer: str | None  # the token name to find or make; None: any of the user's tokens
    address: str  # the client's IP address


@attrs.define
class _Failures:
    count: int = 0
    last: float = 0.0
    blocked_until: float = 0.0


class LoginThrottle:
    """Failed-login counts with growing, bounded delays.  `clock` is injectable for tests.

    An attempt is counted as failed when admitted and forgiven when it succeeds, so a burst of
    parallel attempts is throttled before any of them has finished hashing.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._counts: dict[tuple[str, ...], _Failures] = {}

    def admit(self, username: str, address: str) -> float:
        """0 when this attempt may go ahead (and it is counted), else the seconds left to wait."""
        now = self._clock()
        limits = ((("user", address, username), FREE_FAILURES), (("address", address), FREE_ADDRESS_FAILURES))
        wait = max(self._current(key, now).blocked_until - now for key, _ in limits)
        if wait > 0:
            return wait
        for key, free in limits:
            failures = self._current(key, now)
            failures.count += 1
            failures.last = now
            if failures.count > free:
                over = min(failures.count - free - 1, 16)  # 2**16 s is far past MAX_DELAY already
                failures.blocked_until = now + min(FIRST_DELAY * 2 ** over, MAX_DELAY)
        self._bound()
        return 0.0

    def succeeded(self, username: str, address: str) -> None:
        """The right password: the username starts afresh and the address is not charged for it."""
        self._counts.pop(("user", address, username), None)
        failures = self._counts.get(("address", address))
        if failures is not None:
            failures.count = max(0, failures.count - 1)

    def _current(self, key: tuple[str, ...], now: float) -> _Failures:
        failures = self._counts.get(key)
        if failures is None or (now - failures.last > FORGET_AFTER and now >= failures.blocked_until):
            failures = self._counts[key] = _Failures()
        return failures

    def _bound(self) -> None:
        if len(self._counts) <= MAX_TRACKED:
            return
        oldest = sorted(self._counts, key=lambda k: self._counts[k].last)
        for key in oldest[:len(oldest) - MAX_TRACKED // 2]:
            del self._counts[key]


@attrs.define
class LoginGuard:
    """What this region process holds for logins: the throttle and the password-hash pool."""

    throttle: LoginThrottle = attrs.field(factory=LoginThrottle)
    hash_pool: LazyThreadPool = attrs.field(factory=lambda: LazyThreadPool("region-password-hash", HASH_THREADS))
    in_progress: int = 0


_guard = LoginGuard()


async def authenticate(ctx: Context, attempt: LoginAttempt, guard: LoginGuard = _guard) -> ApiToken | None:
    """The user's token named `attempt.consumer` (any of theirs when None), made if there is none;
    None when the username or password is wrong.  Raises as `verify` does."""
    user = await verify(ctx, attempt, guard)
    if user is None:
        return None
    return await ctx.db.run(_token_thd, attrs.evolve(ctx, actor=user), attempt.consumer)


async def verify(ctx: Context, attempt: LoginAttempt, guard: LoginGuard = _guard) -> User | None:
    """The user when the password is right, else None (the failure is counted).  Raises Throttled
    after too many failures and Unavailable while too many logins are already in progress."""
    if guard.in_progress >= MAX_IN_PROGRESS:
        raise Unavailable("Too many logins are in progress; try again shortly.", retry_after=1)
    wait = guard.throttle.admit(attempt.username, attempt.address)
    if wait:
        raise Throttled("Too many failed logins; try again later.", retry_after=math.ceil(wait))
    guard.in_progress += 1
    try:
        user = await _check_password(ctx, attempt, guard)
    finally:
        guard.in_progress -= 1
    if user is None:
        log.info("failed login as {username} from {address}", username=loggable(attempt.username),
                 address=loggable(attempt.address))
        return None
    guard.throttle.succeeded(attempt.username, attempt.address)
    return user


async def _check_password(ctx: Context, attempt: LoginAttempt, guard: LoginGuard) -> User | None:
    record = await ctx.db.run(users.login_record_thd, attempt.username)
    stored = record[1] if record is not None else await guard.hash_pool.run(_dummy_hash)
    matches = await guard.hash_pool.run(users.check_password, stored, attempt.password)
    return record[0] if record is not None and matches else None


def _token_thd(cur, ctx: Context, consumer: str | None) -> ApiToken:
    """`ctx.actor` proved who they are with their password."""
    users.record_login_thd(cur, ctx.actor.id)
    existing = [t for t in users.list_tokens_thd(cur, ctx.box, ctx.actor.id) if consumer is None or t.name == consumer]
    if existing:
        token, what = existing[0], "Retrieved API (OAuth) token."
    else:
        token, what = users.create_token_thd(cur, ctx.box, ctx.actor.id, consumer or ""), "Created API (OAuth) token."
    ctx.audit_thd(cur, "AUTHORISATION", what, "user", ctx.username)
    return token
