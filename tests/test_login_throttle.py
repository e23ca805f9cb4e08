"""Login floods: throttled per username-and-address and per address, without starving other requests.

The throttle's arithmetic is tested with an injected clock; the rest against a real region, with
clients on other loopback addresses (127.0.0.0/8 all reach the region's 127.0.0.1).
"""

from __future__ import annotations

import http.client
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

import attrs

from region.services import login
from region.services.login import FIRST_DELAY, FREE_ADDRESS_FAILURES, FREE_FAILURES, MAX_DELAY, LoginThrottle
from tests.conftest import make_user, region_box
from tests.fixtures.http import Reply


@attrs.define
class FakeClock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


def fail(throttle: LoginThrottle, times: int, username: str = "admin", address: str = "192.0.2.1") -> None:
    for _ in range(times):
        assert throttle.admit(username, address) == 0


def test_failures_beyond_the_free_ones_wait_twice_as_long_each_time_up_to_the_maximum():
    clock = FakeClock()
    throttle = LoginThrottle(clock)
    fail(throttle, FREE_FAILURES)
    waits = []
    for _ in range(10):
        assert throttle.admit("admin", "192.0.2.1") == 0  # admitted, and counted as failed
        waits.append(throttle.admit("admin", "192.0.2.1"))  # the next one has to wait
        clock.now += waits[-1]
    assert waits == [min(FIRST_DELAY * 2 ** n, MAX_DELAY) for n in range(10)]
    assert max(waits) == MAX_DELAY


def test_a_success_starts_the_username_afresh_and_other_addresses_are_never_blocked_by_it():
    clock = FakeClock()
    throttle = LoginThrottle(clock)
    fail(throttle, FREE_FAILURES + 1)
    assert throttle.admit("admin", "192.0.2.1") > 0
    assert throttle.admit("admin", "192.0.2.99") == 0, "the real admin, elsewhere, gets in"
    throttle.succeeded("admin", "192.0.2.99")
    clock.now += MAX_DELAY
    assert throttle.admit("admin", "192.0.2.1") == 0
    throttle.succeeded("admin", "192.0.2.1")
    fail(throttle, FREE_FAILURES)  # all free again


def test_one_address_trying_many_usernames_is_throttled_as_a_whole():
    throttle = LoginThrottle(FakeClock())
    for n in range(FREE_ADDRESS_FAILURES + 1):
        assert throttle.admit(f"user{n}", "192.0.2.7") == 0
    assert throttle.admit("someone-else", "192.0.2.7") == FIRST_DELAY
    assert throttle.admit("someone-else", "192.0.2.8") == 0


def test_counts_are_forgotten_after_a_quiet_spell_and_their_number_is_bounded(monkeypatch):
    clock = FakeClock()
    throttle = LoginThrottle(clock)
    fail(throttle, FREE_FAILURES + 1)
    clock.now += login.FORGET_AFTER + 1
    fail(throttle, FREE_FAILURES)

    monkeypatch.setattr(login, "MAX_TRACKED", 10)
    for n in range(50):
        clock.now += 1
        throttle.admit("admin", f"198.51.100.{n}")
    assert len(throttle._counts) <= 10


# -- against a real region ----------------------------------------------------------------------

def login_from(region, address: str, **form: str) -> Reply:
    """POST accounts/authenticate/ from `address` (a loopback address of this machine)."""
    conn = http.client.HTTPConnection("127.0.0.1", region.http_port, timeout=60, source_address=(address, 0))
    try:
        conn.request("POST", "/MAAS/accounts/authenticate/", urllib.parse.urlencode(form),
                     {"Content-Type": "application/x-www-form-urlencoded"})
        r = conn.getresponse()
        return Reply(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    finally:
        conn.close()


def flood(region, attempts: list[tuple[str, str]], other_request) -> tuple[list[Reply], list[int]]:
    """`attempts` (address, username) with wrong passwords, 64 at a time, while `other_request`
    runs repeatedly; the login replies and the other request's statuses."""
    with ThreadPoolExecutor(65) as pool:
        logins = [pool.submit(login_from, region, address, username=name, password="wrong")
                  for address, name in attempts]
        others = []
        while not all(f.done() for f in logins) or not others:
            others.append(other_request())
        return [f.result(timeout=120) for f in logins], others


def test_a_login_flood_gets_429s_and_leaves_the_api_and_the_real_user_alone(region, dsn, admin_api):
    make_user(dsn, region_box(region), "carol", admin=False)  # password "pw-carol"

    def zones() -> int:
        started = time.monotonic()
        status = admin_api.get("zones/").status
        assert time.monotonic() - started < 30, "zones/ hung behind the logins"
        return status

    replies, others = flood(region, [("127.0.0.1", "carol")] * 400, zones)
    assert set(others) == {200}
    statuses = [r.status for r in replies]
    assert set(statuses) <= {401, 429, 503} and statuses.count(429) > 300, statuses
    throttled = next(r for r in replies if r.status == 429)
    assert 1 <= int(throttled.headers["retry-after"]) <= MAX_DELAY

    assert login_from(region, "127.0.0.2", username="carol", password="pw-carol").status == 200, \
        "another address is not blocked"
    deadline = time.monotonic() + 2 * MAX_DELAY
    while (again := login_from(region, "127.0.0.1", username="carol", password="pw-carol")).status == 429:
        assert time.monotonic() < deadline
        time.sleep(int(again.headers["retry-after"]))
    assert again.status == 200, again.text
    assert login_from(region, "127.0.0.1", username="carol", password="wrong").status == 401, \
        "the success started carol's count afresh"

    # Many addresses and unknown names at once: the hash pool is busy, the database pool is not.
    spread = [(f"127.0.1.{n % 32 + 1}", f"ghost{n}") for n in range(400)]
    replies, others = flood(region, spread, zones)
    assert set(others) == {200}
    assert {r.status for r in replies} <= {401, 429, 503}
    busy = [r for r in replies if r.status == 503]
    assert all(r.headers.get("retry-after") for r in busy)
    assert admin_api.get("version/").status == 200


def test_overlong_credentials_are_a_400_naming_the_field(region):
    for form, field in [({"username": "u" * 151, "password": "x"}, "username"),
                        ({"username": "carol", "password": "x" * 1025}, "password")]:
        reply = login_from(region, "127.0.0.3", **form)
        assert reply.status == 400 and field in reply.json()
