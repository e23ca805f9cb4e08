"""Images on several regions: an image uploaded to one region is served to racks through any
other (a 307 to the holder, followed by the rack with the same token); files a resource deleted
elsewhere left behind are swept.  Two real regions on one
PostgreSQL, each with its own data dir."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import time

import pytest
import pytest_twisted
import requests

from common.hosterrors import DriverError
from common.models import ImageRef
from rack.drivers.image_fetch import ThrottledProgress, fetch_image
from region.db.images import NewResource
from region.services import images
from tests.fixtures.http import Api
from tests.fixtures.services import service_region  # noqa: F401  (fixture)
from tests.fixtures.images import create, rootfs_tgz, upload
from tests.test_boot_resources import as_row, rack_context


def test_a_region_without_the_image_sends_racks_to_the_one_that_has_it(region, admin_api, start_region, tmp_path):
    key_copy = tmp_path / "shared.key"
    shutil.copy(region.data_dir / "region.key", key_copy)
    second = start_region("second", extra=["--secret-key-file", str(key_copy)])
    content = rootfs_tgz(tmp_path / "root.tgz", random_bytes=300_000)
    done = upload(admin_api, create(admin_api, content), content, 100_000)
    fingerprint = done["lxd_fingerprint"]
    assert not (second.data_dir / "images" / f"lxd-{fingerprint}.tar").exists()

    # as the second region hands the image to a rack: its own URL, a token signed with the shared key
    as_second = rack_context(region)
    as_second.region.config.url = second.url
    url, token = images.image_url_for_rack(as_second, as_row(done))
    assert url == f"{second.url}images/{fingerprint}"
    redirected = requests.get(url, headers={"Authorization": f"Bearer {token}"}, allow_redirects=False, timeout=30)
    assert redirected.status_code == 307
    assert redirected.headers["Location"] == f"{region.url}images/{fingerprint}"

    # The rack's own download follows the redirect with its token and checks the bytes.
    size = (region.data_dir / "images" / f"lxd-{fingerprint}.tar").stat().st_size
    received = io.BytesIO()
    fetch_image(ImageRef(fingerprint, url, token, size, "tgz"), received, ThrottledProgress(None))
    assert hashlib.sha256(received.getvalue()).hexdigest() == fingerprint

    # No redirect for a bad token or an unknown image; nothing at all once the image is deleted.
    bad = requests.get(url, headers={"Authorization": f"Bearer {token[:-1]}x"}, allow_redirects=False, timeout=30)
    assert bad.status_code == 403 and "Location" not in bad.headers
    assert Api(second.api, admin_api.apikey).delete(f"boot-resources/{done['id']}/").status == 204
    with pytest.raises(DriverError, match="HTTP 404"):
        fetch_image(ImageRef(fingerprint, url, token, size, "tgz"), io.BytesIO(), ThrottledProgress(None))


@pytest_twisted.ensureDeferred
async def test_the_sweep_removes_old_files_no_resource_has(service_region):
    """A resource deleted through another region leaves its files on this one until the sweep."""
    ctx = service_region.as_user("admin")
    content = rootfs_tgz(service_region.config.data_dir / "root.tgz", random_bytes=1000)
    kept = await images.create_inline(ctx, NewResource("custom/kept", "amd64/generic", "", "tgz", len(content), ""),
                                      content)
    folder = images.images_dir(ctx)
    orphans = [folder / f"lxd-{'e' * 64}.tar", folder / "upload-999999"]
    fresh = folder / f"lxd-{'d' * 64}.tar"  # may be an image being recorded right now
    for path in [*orphans, fresh]:
        path.write_bytes(b"left behind")
    hour_ago = time.time() - images.SWEEP_MIN_AGE - 60
    for path in [*orphans, folder / f"lxd-{kept.lxd_fingerprint}.tar"]:
        os.utime(path, (hour_ago, hour_ago))
    await images.sweep_files(ctx)
    assert sorted(p.name for p in folder.iterdir()) == sorted([f"lxd-{kept.lxd_fingerprint}.tar", fresh.name])
