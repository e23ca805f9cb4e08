"""Secrets are encrypted in PostgreSQL and never logged."""

from __future__ import annotations

import json
from region.db import secrets
from region.db.pool import run_sync
from tests.conftest import region_box
from tests.fixtures.postgres import pg_dump as _pg_dump


def test_secrets_and_api_keys_are_not_in_a_database_dump(region, dsn, admin_api):
    box = region_box(region)
    enrol = run_sync(dsn, secrets.get_thd, box, secrets.ENROLLMENT_SECRET)
    ca = json.loads(run_sync(dsn, secrets.get_thd, box, secrets.REGION_CA))
    token_secret = admin_api.apikey.split(":")[2]
    dump = _pg_dump(dsn)
    assert "CREATE TABLE public.secrets" in dump
    for needle, what in [(enrol, "enrolment secret"), (token_secret, "API token secret"),
                         (ca["key"].splitlines()[1], "CA private key")]:
        assert needle not in dump, f"{what} stored in clear"
    for line in region.output().splitlines():
        assert enrol not in line and token_secret not in line


def test_passwords_are_hashed(region, dsn, admin_api):
    dump = _pg_dump(dsn)
    assert "pw-admin" not in dump
    assert "scrypt$" in dump
