"""The vmyard and vmyard-region command lines against a real region."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest

from tests.fixtures.daemons import REPO


@pytest.fixture
def cli(tmp_path):
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config"), "PYTHONPATH": str(REPO)}

    def run(*args: str, module: str = "region.cli.user", stdin: str = "") -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                              env=env, cwd=REPO, timeout=120, input=stdin)

    run.config = tmp_path / "config" / "vmyard" / "profiles.json"
    return run


def test_admin_commands_then_user_cli(region, dsn, cli):
    base = ["--data-dir", str(region.data_dir), "--database-dsn", dsn]
    admin = lambda *a, **kw: cli(*base, *a, module="region.cli.admin", **kw)  # noqa: E731

    created = admin("createadmin", "--username", "root", "--password-stdin", "--email", "r@x", stdin="root-pw-1\n")
    assert created.returncode == 0 and "created administrator root" in created.stdout, created.stderr
    dup = admin("createadmin", "--username", "root", "--password-stdin", stdin="root-pw-1\n")
    assert dup.returncode == 1 and "already exists" in dup.stderr

    key = admin("apikey", "--username", "root").stdout.strip()
    assert key.count(":") == 2
    assert admin("apikey", "--username", "root").stdout.strip() == key, "apikey shows the existing key"
    new = admin("apikey", "--username", "root", "--generate").stdout.strip()
    assert new != key and new.count(":") == 2, "--generate prints only the new key"
    assert admin("apikey", "--username", "root").stdout.split() == [key, new]
    assert admin("apikey", "--username", "root", "--delete", new).returncode == 0
    assert admin("apikey", "--username", "root").stdout.split() == [key]
    assert admin("apikey", "--username", "nobody").returncode == 1
    assert admin("migrate").stdout.startswith("the schema is up to date")
    secret = admin("enrol-secret").stdout.strip()
    assert len(secret) >= 24
    rotated = admin("enrol-secret", "--rotate").stdout.strip()
    assert rotated != secret and admin("enrol-secret").stdout.strip() == rotated

    bad = cli("login", "lab", region.url, "a:b:c")
    assert bad.returncode == 1 and "rejected your API key" in bad.stderr
    assert not cli.config.exists(), "a failed login saves nothing"
    login = cli("login", "lab", region.url, key)
    assert login.returncode == 0, login.stderr
    assert stat.S_IMODE(cli.config.stat().st_mode) == 0o600

    assert cli("zones", "create", "lab", "--description", "Lab").returncode == 0
    table = cli("zones", "list").stdout.splitlines()
    assert table[0].split() == ["ID", "NAME", "DESCRIPTION"]
    assert any(line.split()[1:] == ["lab", "Lab"] for line in table[1:])
    refused = cli("zones", "delete", "default")
    assert refused.returncode == 1 and "cannot be deleted" in refused.stderr
    badname = cli("zones", "create", "bad name")
    assert badname.returncode == 1 and "name:" in badname.stderr

    assert cli("pools", "create", "gpu").returncode == 0
    assert cli("pools", "update", "gpu", "--description", "GPUs").returncode == 0
    pools = json.loads(cli("--json", "pools", "list").stdout)
    assert [(p["name"], p["description"]) for p in pools] == [("default", "Default pool"), ("gpu", "GPUs")]
    assert cli("pools", "delete", "gpu").returncode == 0

    racks = cli("racks")
    assert racks.returncode == 0 and racks.stdout.split()[:3] == ["SYSTEM_ID", "HOSTNAME", "STATUS"]


def test_users_are_created_without_a_password_in_argv(region, dsn, cli):
    base = ["--data-dir", str(region.data_dir), "--database-dsn", dsn]
    admin = lambda *a, **kw: cli(*base, *a, module="region.cli.admin", **kw)  # noqa: E731

    no_tty = admin("createadmin", "--username", "root")
    assert no_tty.returncode == 1 and "--password-stdin" in no_tty.stderr, "without a terminal nobody is asked"
    short = admin("createuser", "--username", "ann", "--password-stdin", stdin="short\n")
    assert short.returncode == 1 and "password: This password is too short" in short.stderr
    assert "no password in stdin" in admin("createuser", "--username", "ann", "--password-stdin").stderr
    visible = admin("createadmin", "--username", "root", "--password", "root-pw-1")
    assert visible.returncode == 0 and "visible to other users" in visible.stderr
    made = admin("createuser", "--username", "ann", "--email", "ann@example.com", "--password-stdin",
                 stdin="ann-pw-12\n")
    assert made.returncode == 0 and "created user ann" in made.stdout, made.stderr

    key = admin("apikey", "--username", "root").stdout.strip()
    assert cli("login", "lab", region.url, key).returncode == 0
    created = cli("users", "create", "bob", "--email", "bob@example.com", "--password-stdin", stdin="bob-pw-12\n")
    assert created.returncode == 0, created.stderr
    assert [line.split() for line in cli("users", "list").stdout.splitlines()] == [
        ["USERNAME", "EMAIL", "ADMIN"], ["root", "yes"], ["ann", "ann@example.com", "no"],
        ["bob", "bob@example.com", "no"]]
    assert json.loads(cli("--json", "users", "show", "ann").stdout)["email"] == "ann@example.com"
    refused = cli("users", "create", "bad name", "--password-stdin", stdin="long enough\n")
    assert refused.returncode == 1 and "username:" in refused.stderr
    assert cli("users", "delete", "bob").stdout.strip() == "Deleted user bob."
    assert cli("users", "delete", "ann", "--transfer-to", "root").returncode == 0
    assert [u["username"] for u in json.loads(cli("--json", "users", "list").stdout)] == ["root"]


def test_cli_without_login_says_what_to_do(cli):
    out = cli("racks")
    assert out.returncode == 1 and "vmyard login" in out.stderr
