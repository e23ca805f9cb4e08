"""POST boot-resources/ with the file inline (a multipart `content` file part, as the maas CLI
can send a small file): against a real region and PostgreSQL."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import tarfile

from tests.fixtures.images import rootfs_tgz, the_file

BOUNDARY = "vmyard-inline-boundary"


def _form(fields: dict[str, str], content: bytes, *, base64_part: bool = False) -> tuple[bytes, dict]:
    """A multipart form as the maas CLI builds it: text fields, then the file part."""
    parts = [f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    head = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="content"; filename="content"\r\n' \
           "Content-Type: application/octet-stream\r\n"
    if base64_part:
        parts.append(f"{head}Content-Transfer-Encoding: base64\r\n\r\n".encode() + base64.b64encode(content) + b"\r\n")
    else:
        parts.append(f"{head}\r\n".encode() + content + b"\r\n")
    body = b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


def _images_dir(region) -> list[str]:
    images = os.path.join(region.data_dir, "images")
    return sorted(os.listdir(images)) if os.path.isdir(images) else []


def test_inline_content_makes_a_complete_image_at_once(region, admin_api, tmp_path):
    content = rootfs_tgz(tmp_path / "root.tgz", random_bytes=20_000)
    assert b"\x00" in content  # binary: not readable as a text field
    body, headers = _form({"name": "custom/inline", "architecture": "amd64/generic", "filetype": "tgz",
                           "sha256": hashlib.sha256(content).hexdigest()}, content)
    reply = admin_api.post("boot-resources/", body=body, headers=headers)
    assert reply.status == 201, reply.text
    done = reply.json()
    assert done["state"] == "complete" and the_file(done)["complete"]
    assert the_file(done)["size"] == len(content) and the_file(done)["received"] == len(content)
    assert _images_dir(region) == [f"lxd-{done['lxd_fingerprint']}.tar"]  # no staging file left
    with tarfile.open(os.path.join(region.data_dir, "images", f"lxd-{done['lxd_fingerprint']}.tar")) as unified:
        assert "rootfs/usr/bin/blob" in unified.getnames()

    # base64 parts (as the maas CLI encodes them), size and sha256 left to the region; this form
    # may be larger than other forms (2 MiB), up to the request limit (16 MiB)
    bigger = rootfs_tgz(tmp_path / "bigger.tgz", random_bytes=6 * 1024 * 1024)
    body, headers = _form({"name": "custom/inline64", "architecture": "amd64/generic"}, bigger, base64_part=True)
    assert len(body) > 8 * 1024 * 1024
    reply = admin_api.post("boot-resources/", body=body, headers=headers)
    assert reply.status == 201, reply.text
    assert the_file(reply.json())["sha256"] == hashlib.sha256(bigger).hexdigest()
    too_big = admin_api.post("zones/", body=body, headers=headers)  # other endpoints keep the form limit
    assert too_big.status == 413


def test_bad_inline_content_is_a_400_and_leaves_nothing(region, admin_api, tmp_path):
    content = rootfs_tgz(tmp_path / "root.tgz", random_bytes=1000)
    before = _images_dir(region)
    body, headers = _form({"name": "custom/badsum", "architecture": "amd64/generic", "sha256": "0" * 64}, content)
    reply = admin_api.post("boot-resources/", body=body, headers=headers)
    assert reply.status == 400 and "sha256" in reply.json(), reply.text

    body, headers = _form({"name": "custom/badsize", "architecture": "amd64/generic", "size": "7"}, content)
    reply = admin_api.post("boot-resources/", body=body, headers=headers)
    assert reply.status == 400 and "size" in reply.json(), reply.text

    not_a_tarball = io.BytesIO(os.urandom(3000)).getvalue()
    body, headers = _form({"name": "custom/junk", "architecture": "amd64/generic"}, not_a_tarball)
    reply = admin_api.post("boot-resources/", body=body, headers=headers)
    assert reply.status == 400 and "content" in reply.json(), reply.text

    assert admin_api.get("boot-resources/").json() == []
    assert _images_dir(region) == before
