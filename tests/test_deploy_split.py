"""LXD split images (metadata tarball + squashfs or qcow2 rootfs) uploaded through boot-resources/
as two files of one resource, each in 4 MiB chunks, then deployed: a container with real
cloud-init to Deployed, a VM built from its image (VMs cannot start here).  Real region, rack
and LXD; the container reaches the region through the proxy profile of tests/test_deploy_e2e.py."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

from tests.fixtures import images
from tests.fixtures.http import Api
from tests.fixtures.lxd import lxc_json
from tests.fixtures.split_image import debian_squashfs, metadata_tarball, qcow2_disk
from tests.test_compose_lxd import bridges, lab, second_pool  # noqa: F401  (fixtures)
from tests.test_deploy_e2e import USER_DATA, alice, proxy_to_region, run_in, wait_for_status  # noqa: F401


def upload_split(api: Api, name: str, metadata: Path, rootfs: Path, rootfs_type: str) -> dict:
    """POST each file (the second joins the resource of the first), then PUT each in chunks."""
    contents = {"lxd-meta": metadata.read_bytes(), rootfs_type: rootfs.read_bytes()}
    first = images.create(api, contents["lxd-meta"], name=name, filetype="lxd-meta")
    both = images.create(api, contents[rootfs_type], name=name, filetype=rootfs_type)
    assert both["id"] == first["id"] and both["state"] == "uploading"
    (image_set,) = both["sets"].values()
    files = {f["filetype"]: f for f in image_set["files"].values()}
    assert set(files) == set(contents) and len({f["upload_uri"] for f in files.values()}) == 2
    reply = None
    for filetype in (rootfs_type, "lxd-meta"):
        content, path = contents[filetype], files[filetype]["upload_uri"].removeprefix("/MAAS/api/2.0/")
        for offset in range(0, len(content), images.MAAS_CLI_CHUNK):
            reply = api.put(path, body=content[offset:offset + images.MAAS_CLI_CHUNK],
                            headers={"Content-Type": "application/octet-stream"})
            assert reply.status == 200, reply.text
        if filetype == rootfs_type:  # one file in: the image waits for the other
            assert reply.json()["state"] == "uploading"
    done = reply.json()
    assert done["state"] == "complete", done
    # LXD's fingerprint of a split image: the sha256 of the metadata tarball followed by the rootfs.
    assert done["lxd_fingerprint"] == hashlib.sha256(contents["lxd-meta"] + contents[rootfs_type]).hexdigest()
    return done


def test_split_images_deploy_a_container_with_cloud_init_and_build_a_vm(lab, lxd_server, lxd_region, alice,
                                                                         bridges, tmp_path):
    admin, host = lab
    hid, project = host["id"], host["project"]
    proxy_to_region(admin, lxd_server, lxd_region, host)

    container_image = upload_split(admin, "custom/split", metadata_tarball(tmp_path / "meta.tar", "split"),
                                   debian_squashfs(), "lxd-rootfs")
    vm_image = upload_split(admin, "custom/splitvm", metadata_tarball(tmp_path / "vm-meta.tar", "split vm"),
                            qcow2_disk(tmp_path / "disk.qcow2"), "lxd-disk")
    duplicate = admin.post("boot-resources/", data={"name": "custom/split", "architecture": "amd64/generic",
                                                   "filetype": "lxd-meta", "sha256": "a" * 64, "size": "10"})
    assert duplicate.status == 400 and "name" in duplicate.json()

    made = admin.post(f"vm-hosts/{hid}/", data={
        "op": "compose", "hostname": "split1", "cores": "1", "memory": "1024", "storage": "root:3",
        "instance_type": "container", "interfaces": "eth0:subnet=10.30.0.0/24,ip=10.30.0.61"})
    assert made.status == 200, made.text
    allocated = alice.post("machines/", data={"op": "allocate", "system_id": made.json()["system_id"]})
    assert allocated.status == 200, allocated.text
    sid, name = allocated.json()["system_id"], allocated.json()["instance_name"]
    reply = alice.post(f"machines/{sid}/", data={"op": "deploy", "distro_series": "custom/split",
                                                 "user_data": base64.b64encode(USER_DATA).decode()})
    assert reply.status == 200, reply.text
    deployed = wait_for_status(alice, sid, ("Deployed", "Failed deployment"))
    assert deployed["status_name"] == "Deployed", deployed["status_message"]
    assert run_in(lxd_server, project, name, "cat", "/var/tmp/from-user-data").stdout == "written by the user's data"
    instance = lxc_json(lxd_server, f"/1.0/instances/{name}?project={project}")
    assert instance["config"]["volatile.base_image"] == container_image["lxd_fingerprint"]
    assert lxc_json(lxd_server, f"/1.0/images/{container_image['lxd_fingerprint']}?project={project}")["type"] \
        == "container"

    # LXD gives VMs no bind=instance proxy device: the VM is deployed without the proxy profile.
    cleared = admin.put(f"vm-hosts/{hid}/", data={"deploy_profiles": ""})
    assert cleared.status == 200 and cleared.json()["deploy_profiles"] == [], cleared.text
    vm = admin.post(f"vm-hosts/{hid}/", data={"op": "compose", "hostname": "splitvm1", "cores": "1",
                                              "memory": "1024", "storage": "root:2"})
    assert vm.status == 200, vm.text
    vm_allocated = alice.post("machines/", data={"op": "allocate", "system_id": vm.json()["system_id"]})
    assert vm_allocated.status == 200, vm_allocated.text
    vm_sid, vm_name = vm_allocated.json()["system_id"], vm_allocated.json()["instance_name"]
    wrong_kind = alice.post(f"machines/{vm_sid}/", data={"op": "deploy", "distro_series": "custom/split"})
    assert wrong_kind.status == 400 and "distro_series" in wrong_kind.json(), wrong_kind.text
    reply = alice.post(f"machines/{vm_sid}/", data={"op": "deploy", "distro_series": "custom/splitvm"})
    assert reply.status == 200, reply.text
    ended = wait_for_status(alice, vm_sid, ("Deployed", "Failed deployment"), timeout=300)
    built = lxc_json(lxd_server, f"/1.0/instances/{vm_name}?project={project}")
    assert built["config"].get("volatile.base_image") == vm_image["lxd_fingerprint"], ended["status_message"]
    assert "cloud-init.user-data" in built["config"]
    assert lxc_json(lxd_server, f"/1.0/images/{vm_image['lxd_fingerprint']}?project={project}")["type"] \
        == "virtual-machine"
