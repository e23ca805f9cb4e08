"""The `secrets` table: named values, encrypted with the region key."""

from __future__ import annotations

from region.secretbox import SecretBox

ENROLLMENT_SECRET = "rack-enrollment-secret"
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
