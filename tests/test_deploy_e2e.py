"""Deploy end to end: a real region and rack, the private LXD, real cloud-init.

The Debian image (devstack/debian_image.py) is uploaded through boot-resources/ as MAAS's `tgz`;
a container reaches the region's port on its own loopback through an LXD proxy device, given
by a profile the VM host's `deploy_profiles` names, so its cloud-init reports over the webhook.
"""

from __future__ import annotations

import base64
import email
import gzip
import re
import shlex
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from devstack.debian_image import debian_image
from tests.conftest import make_user, region_box
from tests.fixtures import images
from tests.fixtures.http import Api
from tests.fixtures.lxd import lxc_json, unique
from tests.test_compose_lxd import bridges, lab, second_pool  # noqa: F401  (fixtures)

USER_DATA = b"#cloud-config\nwrite_files:\n  - {path: /var/tmp/from-user-data, content: written by the user's data}\n"
PROXY_PROFILE = "region-proxy"


def ssh_key() -> str:
    public = ed25519.Ed25519PrivateKey.generate().public_key()
    line = public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    return f"{line} alice@e2e"


def user_api(region, dsn: str, username: str) -> Api:
    return Api(region.api, make_user(dsn, region_box(region), username, admin=False))


@pytest.fixture
def alice(lxd_region, dsn) -> Api:
    return user_api(lxd_region, dsn, "alice")


@pytest.fixture
def bob(lxd_region, dsn) -> Api:
    return user_api(lxd_region, dsn, "bob")


def post_status(region, system_id: str, headers: dict) -> int:
    request = urllib.request.Request(f"{region.url}metadata/status/{system_id}", method="POST", headers=headers,
                                     data=b'{"event_type": "finish", "name": "modules-final", "result": "SUCCESS"}')
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status
    except urllib.error.HTTPError as e:
        return e.code


def lxc_in(lxd_server, project: str, *args: str, input: str | None = None) -> str:
    return lxd_server.lxc(*args, "--project", project, input=input)


def run_in(lxd_server, project: str, name: str, *command: str, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["lxc", "exec", name, "--project", project, "--", *command], env=lxd_server._env,
                          capture_output=True, text=True, input=input, timeout=120)


def wait_for_status(api: Api, system_id: str, final: tuple[str, ...], timeout: float = 420) -> dict:
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        machine = api.get(f"machines/{system_id}/").json()
        seen.append((machine["status_name"], machine["status_message"]))
        if machine["status_name"] in final:
            return machine
        time.sleep(2)
    raise AssertionError(f"still not {final}: {seen[-5:]}")


def upload(api: Api, path: Path, name: str, filetype: str) -> dict:
    content = path.read_bytes()
    resource = images.create(api, content, name=name, filetype=filetype)
    done = images.upload(api, resource, content, images.MAAS_CLI_CHUNK)
    assert images.the_file(done)["complete"], done
    return done


def check_schema(lxd_server, project: str, name: str, text: str, *command: str) -> subprocess.CompletedProcess:
    """Runs `command` on `text` written to a file in the container (its path replaces {})."""
    path = f"/tmp/{unique('check')}"
    written = run_in(lxd_server, project, name, "sh", "-c", f"cat > {shlex.quote(path)}", input=text)
    assert written.returncode == 0, written.stderr
    return run_in(lxd_server, project, name, *[path if c == "{}" else c for c in command])


def proxy_to_region(admin: Api, lxd_server, lxd_region, host: dict) -> None:
    """Deployed machines of `host` reach the region's port on their own loopback (a deploy profile)."""
    project = host["project"]
    lxc_in(lxd_server, project, "profile", "create", PROXY_PROFILE)
    lxc_in(lxd_server, project, "profile", "device", "add", PROXY_PROFILE, "region", "proxy",
           f"listen=tcp:127.0.0.1:{lxd_region.http_port}", f"connect=tcp:127.0.0.1:{lxd_region.http_port}",
           "bind=instance")
    updated = admin.put(f"vm-hosts/{host['id']}/", data={"deploy_profiles": PROXY_PROFILE})
    assert updated.status == 200 and updated.json()["deploy_profiles"] == [PROXY_PROFILE], updated.text


def test_a_container_is_deployed_with_real_cloud_init_and_reports_over_the_webhook(lab, lxd_server, lxd_region,
                                                                                    alice, bridges):
    admin, host = lab
    hid, project = host["id"], host["project"]
    proxy_to_region(admin, lxd_server, lxd_region, host)
    upload(admin, debian_image().rootfs_tgz, "custom/bookworm", "tgz")
    key = ssh_key()
    assert alice.post("sshkeys/", data={"op": "add", "key": key}).status in (200, 201)

    made = admin.post(f"vm-hosts/{hid}/", data={
        "op": "compose", "hostname": "web1", "cores": "1", "memory": "1024", "storage": "root:3",
        "instance_type": "container", "interfaces": "eth0:subnet=10.30.0.0/24,ip=10.30.0.60"})
    assert made.status == 200, made.text
    allocated = alice.post("machines/", data={"op": "allocate", "instance_type": "container", "mem": "1024"})
    assert allocated.status == 200, allocated.text
    sid, name = allocated.json()["system_id"], allocated.json()["instance_name"]
    assert sid == made.json()["system_id"]

    user_data = base64.b64encode(gzip.compress(USER_DATA)).decode()  # as Juju sends it
    reply = alice.post(f"machines/{sid}/", data={"op": "deploy", "distro_series": "custom/bookworm",
                                                 "user_data": user_data, "hwe_kernel": "ga-22.04"})
    assert reply.status == 200, reply.text
    assert reply.json()["status"] == 9 and reply.json()["status_message"].startswith("Deploying custom/bookworm")

    deployed = wait_for_status(alice, sid, ("Deployed", "Failed deployment"))
    assert deployed["status"] == 6 and deployed["status_message"] == "Deployed", deployed["status_message"]
    assert deployed["osystem"] and deployed["distro_series"] == "custom/bookworm"
    # The host now holds the image, and its details say so (by the fingerprint LXD knows it by).
    held = admin.get(f"vm-hosts/{hid}/").json()["images"]
    assert [(i["name"], i["copying"]) for i in held] == [("custom/bookworm", None)]
    # The rack reported the copy to the host as it went (DeployProgress), at most every 2 s.
    copied = re.findall(rf"deploy of {sid}: Copying image custom/bookworm to host {host['name']}: (\d+)% "
                        rf"\((fetching it from the region|importing it into LXD)\)", lxd_region.output())
    assert copied and ("100", "importing it into LXD") in copied, copied
    assert any(img["fingerprint"] == held[0]["fingerprint"]
               for img in lxc_json(lxd_server, f"/1.0/images?project={project}&recursion=1"))

    # Real cloud-init ran: the user's file, the owner's key, the hostname, the static address.
    assert run_in(lxd_server, project, name, "cat", "/var/tmp/from-user-data").stdout == "written by the user's data"
    keys = run_in(lxd_server, project, name, "sh", "-c", "cat /home/*/.ssh/authorized_keys").stdout
    assert key in keys
    assert run_in(lxd_server, project, name, "hostname").stdout.strip() == "web1"
    assert "10.30.0.60/24" in run_in(lxd_server, project, name, "ip", "-o", "addr", "show", "eth0").stdout
    config = lxc_json(lxd_server, f"/1.0/instances/{name}?project={project}")
    network = yaml.safe_load(config["config"]["cloud-init.network-config"])
    assert network == {"version": 2, "ethernets": {"eth0": {"addresses": ["10.30.0.60/24"],
                                                            "routes": [{"to": "0.0.0.0/0", "via": "10.30.0.1"}]}}}
    assert PROXY_PROFILE in config["profiles"]
    assert f"{sid} deployed (cloud-init reported modules-final)" in lxd_region.output()  # over the webhook

    # cloud-init's own checks on what vmyard generated.
    parts = [p for p in email.message_from_string(config["config"]["cloud-init.user-data"]).walk()
             if not p.is_multipart()]
    for part in parts:
        checked = check_schema(lxd_server, project, name, part.get_payload(decode=True).decode(),
                               "cloud-init", "schema", "--config-file", "{}")
        assert checked.returncode == 0 and "Valid cloud-config" in checked.stdout, checked.stdout + checked.stderr
    root = f"/tmp/{unique('netplan')}"
    converted = check_schema(lxd_server, project, name, config["config"]["cloud-init.network-config"],
                             "cloud-init", "devel", "net-convert", "--network-data", "{}", "--kind", "yaml",
                             "--output-kind", "netplan", "--distro", "debian", "--directory", root)
    assert converted.returncode == 0, converted.stderr
    generated = run_in(lxd_server, project, name, "netplan", "generate", "--root-dir", root)
    assert generated.returncode == 0, generated.stderr

    # Powered off it stays Deployed; released, its root disk is emptied and it is Ready again.
    assert admin.post(f"machines/{sid}/", data={"op": "power_off"}).status == 200
    assert alice.get(f"machines/{sid}/").json()["status_name"] == "Deployed"
    released = alice.post(f"machines/{sid}/", data={"op": "release"})
    assert released.status == 200, released.text
    assert released.json()["status_name"] == "Ready" and released.json()["status_message"] == ""
    erased = lxc_json(lxd_server, f"/1.0/instances/{name}?project={project}")
    assert not [k for k in erased["config"] if k.startswith("cloud-init.")]
    assert PROXY_PROFILE not in erased["profiles"] and erased["devices"] == config["devices"]
    assert "volatile.base_image" not in erased["config"]


def test_a_vm_image_is_deployed_but_cannot_start_here(lab, lxd_server, lxd_region, alice, bob, tmp_path):
    admin, host = lab
    hid, project = host["id"], host["project"]
    disk = tmp_path / "disk.qcow2"
    subprocess.run(["qemu-img", "create", "-f", "qcow2", str(disk), "64M"], check=True, capture_output=True)
    upload(admin, disk, "custom/tinyvm", "qcow2")
    made = admin.post(f"vm-hosts/{hid}/", data={"op": "compose", "hostname": "vm1", "cores": "1", "memory": "1024",
                                                "storage": "root:2"})
    assert made.status == 200, made.text
    sid = made.json()["system_id"]
    allocated = alice.post("machines/", data={"op": "allocate", "system_id": sid})
    assert allocated.status == 200, allocated.text
    name = allocated.json()["instance_name"]

    # Bad requests change nothing.
    assert bob.post(f"machines/{sid}/", data={"op": "deploy", "distro_series": "custom/tinyvm"}).status == 403
    for data, field in [({"distro_series": "custom/nosuch"}, "distro_series"),
                        ({"distro_series": "custom/tinyvm", "ephemeral_deploy": "true"}, "ephemeral_deploy"),
                        ({"distro_series": "custom/tinyvm",
                          "user_data": base64.b64encode(gzip.compress(b"#cloud-config\n")[:-8]).decode()},
                         "user_data")]:
        reply = alice.post(f"machines/{sid}/", data={"op": "deploy", **data})
        assert reply.status == 400 and field in reply.json(), reply.text
    assert alice.get(f"machines/{sid}/").json()["status_name"] == "Allocated"
    before = lxc_json(lxd_server, f"/1.0/instances/{name}?project={project}")
    assert not [k for k in before["config"] if k.startswith("cloud-init.")]

    reply = alice.post(f"machines/{sid}/", data={"op": "deploy", "distro_series": "tinyvm",
                                                 "user_data": "#cloud-config\npackages: []\n"})
    assert reply.status == 200 and reply.json()["status_name"] == "Deploying", reply.text
    # Only the machine's own token may report: anonymous or forged reports are refused.
    assert post_status(lxd_region, sid, {}) == 401
    forged = ('OAuth oauth_consumer_key="x", oauth_token="y", oauth_signature="%26z", '
              f'oauth_signature_method="PLAINTEXT", oauth_timestamp="{int(time.time())}", oauth_nonce="n"')
    assert post_status(lxd_region, sid, {"Authorization": forged}) == 401
    failed = wait_for_status(alice, sid, ("Deployed", "Failed deployment"), timeout=300)
    shown = lxd_server.lxc("config", "show", name, "--project", project)
    assert "cloud-init.user-data: |" in shown and "cloud-init.network-config:" in shown
    assert "source: cloud-init:config" in shown
    if failed["status_name"] == "Failed deployment":  # machines without KVM, like CI
        started = subprocess.run(["lxc", "start", name, "--project", project], env=lxd_server._env,
                                 capture_output=True, text=True)
        reason = started.stderr.split("Error: ", 1)[-1].splitlines()[0]
        assert failed["status_message"].startswith(f"Deployment failed: LXD could not start {name!r}")
        assert reason[:60] in failed["status_message"], (reason, failed["status_message"])

    released = alice.post(f"machines/{sid}/", data={"op": "release"})
    assert released.status == 200 and released.json()["status_name"] == "Ready", released.text
    erased = lxd_server.lxc("config", "show", name, "--project", project)
    assert "cloud-init.user-data" not in erased and "cloud-init:config" not in erased
