"""`vmyard images` against a real region: upload in 4 MiB chunks with a progress bar, resume, list, delete."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from region.cli import user as cli
from region.cli.image_cli import CHUNK
from tests.fixtures.images import put_chunk, rootfs_tgz


@pytest.fixture
def vmyard(region, admin_api, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    assert cli.main(["login", "lab", region.url, admin_api.apikey]) == 0
    capsys.readouterr()

    def run(*args: str) -> tuple[int, str, str]:
        code = cli.main(list(args))
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


def test_upload_list_delete(vmyard, tmp_path):
    image = tmp_path / "root.tgz"
    content = rootfs_tgz(image, random_bytes=CHUNK + 1000)
    code, out, err = vmyard("images", "upload", str(image), "--name", "bookworm", "--title", "Bookworm")
    assert code == 0, err
    assert "custom/bookworm (amd64/generic)" in out and "complete" in out
    assert "100%" in err and err.count("\r") == 3  # drawn before, and after each of the two chunks

    code, out, _ = vmyard("--json", "images", "list")
    (listed,) = json.loads(out)
    (image_set,) = listed["sets"].values()
    assert image_set["files"]["root-tgz"]["sha256"] == hashlib.sha256(content).hexdigest()
    table = vmyard("images", "list")[1].splitlines()
    assert table[0].split()[:3] == ["ID", "NAME", "ARCHITECTURE"] and "complete" in table[1]

    assert vmyard("images", "delete", str(listed["id"]))[0] == 0
    assert json.loads(vmyard("--json", "images", "list")[1]) == []


def test_upload_resumes_where_the_region_stopped_receiving(vmyard, admin_api, tmp_path):
    image = tmp_path / "root.tgz"
    content = rootfs_tgz(image, random_bytes=300_000)
    started = admin_api.post("boot-resources/", data={
        "name": "custom/resumed", "architecture": "amd64/generic", "filetype": "tgz",
        "sha256": hashlib.sha256(content).hexdigest(), "size": str(len(content))}).json()
    assert put_chunk(admin_api, started, content[:100_000]).status == 200

    code, out, err = vmyard("images", "upload", str(image), "--name", "custom/resumed")
    assert code == 0, err
    assert f"boot resource {started['id']}: complete" in out


def test_refusals_are_reported(vmyard, tmp_path):
    code, _, err = vmyard("images", "upload", str(tmp_path / "missing.tgz"), "--name", "x")
    assert code == 1 and "cannot read" in err
    blob = tmp_path / "blob"
    blob.write_bytes(os.urandom(100))
    code, _, err = vmyard("images", "upload", str(blob), "--name", "custom/blob")
    assert code == 1 and "not a readable root filesystem tarball" in err
