"""The maas CLI's way of working (login, commands from describe/, its encodings) against a real region and LXD."""

from __future__ import annotations

import pytest

from tests.clients.maas_cli import CliError, Profile, encode_multipart
from tests.fixtures.lxd import lxc_json, unique


def no_banner(profile: Profile, reply) -> None:
    """The CLI prints 'run maas refresh' when a reply's API hash differs from the profile's."""
    assert reply.headers.get("x-maas-api-hash") in (None, profile.description["hash"])


def test_login_checks_the_key_then_reads_describe(region, admin_api):
    profile = Profile.login(region.url, admin_api.apikey)
    assert profile.url == region.api
    commands = profile.commands()
    assert {"vm-hosts", "vm-host", "pods", "pod", "machines", "machine", "tags", "tag", "account", "users",
            "version", "zones", "zone"} <= set(commands)
    assert {"read", "update", "delete", "compose", "refresh", "parameters", "add-tag", "remove-tag"} <= \
        set(commands["vm-host"])
    assert {"create-authorisation-token", "list-authorisation-tokens", "delete-authorisation-token",
            "update-token-name"} <= set(commands["account"])
    assert profile.run("users", "whoami").json()["username"] == "admin"
    assert profile.run("version", "read").json()["version"]

    consumer, token, _ = admin_api.apikey.split(":")
    with pytest.raises(CliError, match="rejected your API key"):
        Profile.login(region.url, f"{consumer}:{token}:wrongsecret")


def test_multipart_parts_are_base64_with_a_quoted_boundary():
    body, headers = encode_multipart([("storage", "root:1"), ("name", "ü")])
    assert headers["Content-Type"].startswith('multipart/form-data; boundary="')
    assert body.count(b"Content-Transfer-Encoding: base64") == 2 and b"root:1" not in body


def test_vm_host_commands_built_from_describe_against_real_lxd(lxd_region, lxd_api, lxd_server):
    profile = Profile.login(lxd_region.url, lxd_api.apikey)
    name, project = unique("cli"), unique("cliproj")
    created = profile.run("vm-hosts", "create", "type=lxd", f"power_address={lxd_server.address}",
                          f"password={lxd_server.trust_password}", f"name={name}", f"project={project}", "tags=x,y")
    assert created.status == 200 and created.content_type == "application/json", created.body
    host = created.json()
    host_id = str(host["id"])
    assert host["state"] == "ready" and host["tags"] == ["x", "y"]
    no_banner(profile, created)

    listed = profile.run("vm-hosts", "read")
    assert listed.url.endswith("/MAAS/api/2.0/vm-hosts/") and host["id"] in [h["id"] for h in listed.json()]
    read = profile.run("vm-host", "read", host_id)
    assert read.method == "GET" and read.url == f"{lxd_region.url}api/2.0/vm-hosts/{host_id}/"
    assert read.json()["name"] == name
    assert profile.run("pod", "read", host_id).json()["resource_uri"] == f"/MAAS/api/2.0/pods/{host_id}/"

    refreshed = profile.run("vm-host", "refresh", host_id)  # no data: no body, Content-Length: 0
    assert refreshed.url.endswith(f"/vm-hosts/{host_id}/?op=refresh") and refreshed.status == 200, refreshed.body
    with pytest.raises(CliError, match="unrecognized arguments"):
        profile.run("vm-host", "parameters", host_id, "x=y")  # its doc has no :param lines
    assert set(profile.run("vm-host", "parameters", host_id).json()) >= {"power_address", "project"}
    tagged = profile.run("vm-host", "add-tag", host_id, "tag=z")
    assert tagged.url.endswith("?op=add_tag") and tagged.json()["tags"] == ["x", "y", "z"]
    updated = profile.run("vm-host", "update", host_id, f"name={name}-2")
    assert updated.method == "PUT" and updated.json()["name"] == f"{name}-2" and updated.json()["resource_uri"]

    composed = profile.run("vm-host", "compose", host_id, "cores=1", "memory=1024", "storage=root:1",
                           f"hostname={name}-vm")
    assert composed.status == 200, composed.body
    system_id = composed.json()["system_id"]
    machine = profile.run("machine", "read", system_id).json()
    assert machine["hostname"] == f"{name}-vm" and machine["status_name"] == "Ready"
    instance = lxc_json(lxd_server, f"/1.0/instances/{machine['instance_name']}?project={project}")
    assert instance["config"]["limits.memory"] == str(1024 * 2**20)

    assert profile.run("tags", "create", "name=cli-tag", "comment=from the cli").status == 200
    nodes = profile.run("tag", "update-nodes", "cli-tag", f"add={system_id}")
    assert nodes.json() == {"added": 1, "removed": 0}
    assert [m["system_id"] for m in profile.run("tag", "machines", "cli-tag").json()] == [system_id]
    assert "cli-tag" in profile.run("machine", "read", system_id).json()["tag_names"]

    deleted_machine = profile.run("machine", "delete", system_id)
    assert deleted_machine.status == 204 and deleted_machine.content_type
    assert lxc_json(lxd_server, f"/1.0/instances?project={project}") == []

    deleted = profile.run("vm-host", "delete", host_id, "decompose=true")
    assert deleted.method == "DELETE" and deleted.url.endswith(f"/vm-hosts/{host_id}/?decompose=true")
    assert deleted.status == 204 and deleted.content_type == "text/plain" and deleted.body == b""
    no_banner(profile, deleted)
    gone = profile.run("vm-host", "read", host_id)
    assert gone.status == 404 and gone.content_type.startswith("text/plain")
