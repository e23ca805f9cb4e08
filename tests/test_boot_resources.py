"""boot-resources/ against a real region and PostgreSQL: upload in chunks, convert, list, serve, delete."""

from __future__ import annotations

import gzip
import hashlib
import http.client
import io
import json
import os
import socket
import subprocess
import tarfile
import types
import urllib.error
import urllib.parse
import urllib.request

import pytest

from devstack.oauth import plaintext_header
from region.db.images import BootResource, ResourceFile
from region.services import images
from region.services.context import Context
from tests.conftest import make_user, region_box
from tests.fixtures.http import Api
from tests.fixtures.images import MAAS_CLI_CHUNK, create, put_chunk, rootfs_tgz, the_file, upload, upload_uri


def rack_context(region) -> Context:
    config = types.SimpleNamespace(url=region.url, data_dir=region.data_dir)
    return Context(types.SimpleNamespace(box=region_box(region), config=config))


def fetch(url: str, token: str, headers: dict | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def as_row(resource: dict) -> BootResource:
    file = the_file(resource)
    file_id = int(file["upload_uri"].rstrip("/").rsplit("/", 1)[1])
    return BootResource(resource["id"], resource["name"], resource["architecture"], resource["type"],
                        resource["title"], "", "", resource["state"], resource["lxd_fingerprint"], None, None, None,
                        (ResourceFile(file_id, file["filename"], file["filetype"], file["size"], file["sha256"],
                                      file["received"]),))


def test_chunked_tgz_upload_completes_is_listed_and_served_to_racks(region, admin_api, tmp_path):
    content = rootfs_tgz(tmp_path / "root.tgz")
    resource = create(admin_api, content)
    assert resource["type"] == "Uploaded" and resource["state"] == "uploading"
    assert not the_file(resource)["complete"]
    done = upload(admin_api, resource, content, 50_000)  # several chunks
    assert done["state"] == "complete" and the_file(done)["complete"]
    (listed,) = admin_api.get("boot-resources/").json()
    assert {"id", "name", "architecture", "type", "resource_uri", "subarches", "title", "sets"} <= set(listed)
    assert listed["name"] == "custom/tiny" and listed["architecture"] == "amd64/generic"
    assert listed["resource_uri"] == f"/MAAS/api/2.0/boot-resources/{listed['id']}/"
    (image_set,) = listed["sets"].values()
    assert image_set["complete"] and image_set["progress"] == 100.0
    assert the_file(listed)["sha256"] == hashlib.sha256(content).hexdigest()

    url, token = images.image_url_for_rack(rack_context(region), as_row(done))
    status, served = fetch(url, token)
    assert status == 200 and hashlib.sha256(served).hexdigest() == done["lxd_fingerprint"]
    with tarfile.open(fileobj=io.BytesIO(served)) as unified:
        names = unified.getnames()
        assert names[0] == "metadata.yaml" and "rootfs/usr/bin/blob" in names
        assert unified.getmember("rootfs/usr/bin/blob-link").linkname == "rootfs/usr/bin/blob"
        assert unified.getmember("rootfs/bin").linkname == "usr/bin"
    status, part = fetch(url, token, {"Range": "bytes=0-99"})
    assert status == 206 and part == served[:100]

    status, _ = fetch(url, token[:-1] + ("0" if token[-1] != "0" else "1"))
    assert status == 403
    status, _ = fetch(url.replace(done["lxd_fingerprint"], "0" * 64), token)
    assert status == 403


def test_expired_or_malformed_tokens_are_refused(region, admin_api, tmp_path, monkeypatch):
    content = rootfs_tgz(tmp_path / "root.tgz", random_bytes=1000)
    done = upload(admin_api, create(admin_api, content), content, len(content))
    monkeypatch.setattr(images, "TOKEN_LIFETIME", -1)
    url, token = images.image_url_for_rack(rack_context(region), as_row(done))
    assert fetch(url, token)[0] == 403
    for garbage in ("9" * 5000 + ".00", "\u00b2\u00b2.ab", token.split(".")[0] + ".\u00e9", ""):
        assert fetch(url, garbage)[0] == 403
    with pytest.raises(urllib.error.HTTPError) as unsigned:
        urllib.request.urlopen(url, timeout=10)
    assert unsigned.value.code == 403


def test_maas_cli_flow_4mib_chunks_and_lxd_imports_it(region, admin_api, tmp_path, lxd_server):
    content = rootfs_tgz(tmp_path / "big.tgz", random_bytes=9 * 1024 * 1024)
    assert len(content) > 2 * MAAS_CLI_CHUNK
    body, ctype = _multipart({"name": "custom/big", "architecture": "amd64/generic", "filetype": "tgz",
                              "sha256": hashlib.sha256(content).hexdigest(), "size": str(len(content))})
    reply = admin_api.post("boot-resources/", body=body, headers={"Content-Type": ctype})
    assert reply.status == 201, reply.text
    done = upload(admin_api, reply.json(), content, MAAS_CLI_CHUNK)
    assert done["state"] == "complete"

    url, token = images.image_url_for_rack(rack_context(region), as_row(done))
    status, served = fetch(url, token)
    assert status == 200
    tarball = tmp_path / "unified.tar"
    tarball.write_bytes(served)
    lxd_server.lxc("image", "import", str(tarball))
    try:
        info = lxd_server.lxc("image", "info", done["lxd_fingerprint"])
        assert done["lxd_fingerprint"] in info
    finally:
        lxd_server.lxc("image", "delete", done["lxd_fingerprint"])


def _multipart(fields: dict[str, str]) -> tuple[bytes, str]:
    boundary = "vmyard-test-boundary"
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n' for k, v in fields.items()]
    return ("".join(parts) + f"--{boundary}--\r\n").encode(), f"multipart/form-data; boundary={boundary}"


def test_upload_resumes_after_a_restart_and_a_torn_write(start_region, dsn, tmp_path):
    region = start_region("resume")
    api = Api(region.api, make_user(dsn, region_box(region), "admin", admin=True))
    content = rootfs_tgz(tmp_path / "root.tgz")
    resource = create(api, content)
    chunk = 40_000
    for offset in (0, chunk):
        assert put_chunk(api, resource, content[offset:offset + chunk]).status == 200
    region.stop()
    # A write torn by the crash leaves bytes past what was recorded; the next chunk replaces them.
    with open(region.data_dir / "images" / f"upload-{resource['id']}", "ab") as f:
        f.write(b"torn write")
    region.start().wait_ready()
    again = api.get(f"boot-resources/{resource['id']}/").json()
    assert the_file(again)["received"] == 2 * chunk and again["state"] == "uploading"
    done = upload(api, resource, content[2 * chunk:], chunk)
    assert done["state"] == "complete"


def test_wrong_sha256_fails_the_upload_and_removes_its_bytes(region, admin_api, tmp_path):
    content = rootfs_tgz(tmp_path / "root.tgz", random_bytes=1000)
    resource = create(admin_api, content, sha256="0" * 64)
    reply = put_chunk(admin_api, resource, content)
    assert reply.status == 400 and "sha256" in reply.json()
    assert admin_api.get(f"boot-resources/{resource['id']}/").json()["state"] == "failed"
    assert not (region.data_dir / "images" / f"upload-{resource['id']}").exists()
    assert put_chunk(admin_api, resource, content).status == 409


def test_bad_chunks_and_bad_forms_are_refused_cleanly(region, admin_api, user_api, tmp_path):
    content = rootfs_tgz(tmp_path / "root.tgz", random_bytes=1000)
    resource = create(admin_api, content)
    rid = resource["id"]

    oversized = put_chunk(admin_api, resource, content + b"x")
    assert oversized.status == 400 and "past its size" in oversized.text
    empty = put_chunk(admin_api, resource, b"")
    assert empty.status == 400
    assert put_chunk(user_api, resource, content[:10]).status == 403
    assert admin_api.put(f"boot-resources/{rid}/upload/{as_row(resource).main_file.id + 1000}/", body=b"x",
                         headers={"Content-Type": "application/octet-stream"}).status == 404

    chunked = _send_chunked(admin_api, upload_uri(resource), content[:10])
    assert chunked == 400
    _send_short_body(admin_api, upload_uri(resource), declared=1000, sent=content[:500])
    assert the_file(admin_api.get(f"boot-resources/{rid}/").json())["received"] == 0

    bad_type = admin_api.post("boot-resources/", data={
        "name": "custom/other", "architecture": "amd64/generic", "filetype": "iso", "sha256": "a" * 64, "size": "10"})
    assert bad_type.status == 400 and "filetype" in bad_type.json()
    bad_fields = admin_api.post("boot-resources/", data={"name": "custom/x y", "architecture": "amd64/generic",
                                                         "sha256": "zz", "size": "-1"})
    assert bad_fields.status == 400 and {"name", "sha256", "size"} <= set(bad_fields.json())
    assert user_api.post("boot-resources/", data={"name": "custom/mine", "architecture": "amd64/generic",
                                                   "sha256": "a" * 64, "size": "10"}).status == 403
    too_big = admin_api.post("boot-resources/", data={"name": "custom/huge", "architecture": "amd64/generic",
                                                     "sha256": "a" * 64, "size": str(1 << 40)})
    assert too_big.status == 400 and "bytes free" in too_big.text
    duplicate = admin_api.post("boot-resources/", data={"name": "custom/tiny", "architecture": "amd64/generic",
                                                        "sha256": "a" * 64, "size": "10"})
    assert duplicate.status == 400
    assert [r["id"] for r in admin_api.get("boot-resources/").json()] == [rid]

    done = upload(admin_api, resource, content, len(content))
    assert done["state"] == "complete"


def test_delete_removes_the_files(region, admin_api, user_api, tmp_path):
    content = rootfs_tgz(tmp_path / "root.tgz", random_bytes=1000)
    done = upload(admin_api, create(admin_api, content), content, len(content))
    lxd_file = region.data_dir / "images" / f"lxd-{done['lxd_fingerprint']}.tar"
    assert lxd_file.is_file()
    assert user_api.delete(f"boot-resources/{done['id']}/").status == 403
    assert admin_api.delete(f"boot-resources/{done['id']}/").status == 204
    assert not lxd_file.exists()
    assert admin_api.get(f"boot-resources/{done['id']}/").status == 404
    assert admin_api.get("boot-resources/").json() == []


def test_compressed_disk_image_becomes_an_lxd_vm_image(region, admin_api, tmp_path, lxd_server):
    disk = bytearray(4 * 1024 * 1024)
    disk[1024 * 1024:1024 * 1024 + 70_000] = os.urandom(70_000)
    content = gzip.compress(bytes(disk))
    done = upload(admin_api, create(admin_api, content, name="custom/disk", filetype="ddgz"), content, 30_000)
    assert done["state"] == "complete" and the_file(done)["filename"] == "root-dd.gz"
    assert not (region.data_dir / "images" / f"upload-{done['id']}").exists()

    url, token = images.image_url_for_rack(rack_context(region), as_row(done))
    status, served = fetch(url, token)
    assert status == 200
    tarball = tmp_path / "vm.tar"
    tarball.write_bytes(served)
    with tarfile.open(tarball) as unified:
        assert unified.getnames() == ["metadata.yaml", "rootfs.img"]
        unified.extract("rootfs.img", tmp_path, filter="data")
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(tmp_path / "rootfs.img")],
                                     check=True, capture_output=True, text=True).stdout)
    assert info["format"] == "qcow2" and info["virtual-size"] == len(disk)
    lxd_server.lxc("image", "import", str(tarball))
    try:
        assert "virtual-machine" in lxd_server.lxc("image", "info", done["lxd_fingerprint"]).lower()
    finally:
        lxd_server.lxc("image", "delete", done["lxd_fingerprint"])

    broken = os.urandom(1000)
    refused = put_chunk(admin_api, create(admin_api, broken, name="custom/broken", filetype="ddxz"), broken)
    assert refused.status == 400 and "ddxz" in refused.text


def test_lxd_unified_tarball_is_kept_as_uploaded(region, admin_api, tmp_path):
    unified = tmp_path / "unified.tar"
    with tarfile.open(unified, "w") as tar:
        for name, data in (("metadata.yaml", b"architecture: x86_64\ncreation_date: 1\n"), ("rootfs/etc/x", b"x")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    content = unified.read_bytes()
    done = upload(admin_api, create(admin_api, content, name="custom/unified", filetype="lxd"), content, 4096)
    assert done["state"] == "complete" and done["lxd_fingerprint"] == hashlib.sha256(content).hexdigest()

    not_lxd = rootfs_tgz(tmp_path / "root.tgz", random_bytes=100)
    refused = put_chunk(admin_api, create(admin_api, not_lxd, name="custom/notlxd", filetype="lxd"), not_lxd)
    assert refused.status == 400 and "metadata.yaml" in refused.text


def _signed_headers(api: Api, path: str) -> dict[str, str]:
    url = urllib.parse.urljoin(api.base, path)
    return {"Authorization": plaintext_header(api.apikey, url, "PUT"), "Content-Type": "application/octet-stream"}


def _send_chunked(api: Api, path: str, data: bytes) -> int:
    base = urllib.parse.urlsplit(api.base)
    conn = http.client.HTTPConnection(base.hostname, base.port, timeout=30)
    try:
        conn.request("PUT", path, body=iter([data]), headers=_signed_headers(api, path), encode_chunked=True)
        return conn.getresponse().status
    finally:
        conn.close()


def _send_short_body(api: Api, path: str, *, declared: int, sent: bytes) -> None:
    """A client that dies mid-chunk: the region never sees a whole request, so nothing is written."""
    base = urllib.parse.urlsplit(api.base)
    head = "".join(f"{k}: {v}\r\n" for k, v in _signed_headers(api, path).items())
    with socket.create_connection((base.hostname, base.port), timeout=10) as s:
        s.sendall(f"PUT {path} HTTP/1.1\r\nHost: {base.netloc}\r\nContent-Length: {declared}\r\n{head}\r\n".encode()
                  + sent)

