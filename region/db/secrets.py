"""The `secrets` table: named values, encrypted with the region key."""

from __future__ import annotations

import secrets as _random

from region.secretbox import SecretBox

ENROLLMENT_SECRET = "rack-enrollment-secret"
ONE_TIME_PREFIX = "rack-enrollment-once:"  # + a random suffix: secrets that enrol one rack
REGION_CA = "region-ca"  # JSON {"key": PEM, "cert": PEM}


def put_thd(cur, box: SecretBox, name: str, value: str) -> None:
    cur.execute(
        "INSERT INTO secrets (name, value) VALUES (%s, %s)"
        " ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value, updated = now()",
        (name, box.encrypt(value)),
    )


def get_thd(cur, box: SecretBox, name: str) -> str | None:
    cur.execute("SELECT value FROM secrets WHERE name = %s", (name,))
    row = cur.fetchone()
    return None if row is None else box.decrypt(row[0])


def get_or_create_thd(cur, box: SecretBox, name: str, make) -> str:
    """Read a secret, or store make() under a lock if nobody has yet."""
    # Several regions may start together; the advisory lock makes one of them
    # create the value and the others read it.
    cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", ("secret:" + name,))
    value = get_thd(cur, box, name)
    if value is None:
        value = make()
        put_thd(cur, box, name, value)
    return value


def delete_thd(cur, name: str) -> None:
    cur.execute("DELETE FROM secrets WHERE name = %s", (name,))


# -- rack enrolment secrets ---------------------------------------------------------------------

def new_enrolment_secret() -> str:
    return _random.token_urlsafe(24)


def enrolment_secrets_thd(cur, box: SecretBox) -> list[tuple[str, str]]:
    """(secret name, value) for the shared secret and every one-time secret."""
    cur.execute("SELECT name FROM secrets WHERE name = %s OR name LIKE %s ORDER BY name",
                (ENROLLMENT_SECRET, ONE_TIME_PREFIX + "%"))
    return [(name, get_thd(cur, box, name)) for (name,) in cur.fetchall()]


def create_one_time_secret_thd(cur, box: SecretBox) -> str:
    value = new_enrolment_secret()
    put_thd(cur, box, ONE_TIME_PREFIX + _random.token_hex(8), value)
    return value


def rotate_shared_secret_thd(cur, box: SecretBox) -> str:
    value = new_enrolment_secret()
    put_thd(cur, box, ENROLLMENT_SECRET, value)
    return value
