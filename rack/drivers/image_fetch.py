"""Fetching an image from the region, as every host driver does before it hands the image on.

`fetch_image` streams the region's file into a local file, checked against its size and sha256;
`ThrottledProgress` turns byte counts into the driver's occasional progress reports.
"""

from __future__ import annotations

import hashlib
import time
import urllib.parse

import requests

from common.hosterrors import DriverError
from common.models import ImageRef
from rack.drivers.base import CopyProgress

DOWNLOAD_TIMEOUT = (10.0, 120.0)  # (connect, read) seconds while fetching an image from the region
DOWNLOAD_CHUNK = 1 << 20
PROGRESS_INTERVAL = 2.0  # seconds between progress reports while an image is copied to a host
MAX_REDIRECTS = 3  # from a region without the image to one holding it


class ThrottledProgress:
    """The driver's progress callback, called at most every PROGRESS_INTERVAL seconds per stage
    (and at once on a stage's first and last bytes), never twice the same; a no-op without a
    callback."""

    def __init__(self, progress: CopyProgress | None) -> None:
        self.progress = progress
        self._last: tuple[str, int, float] | None = None  # stage, percent, when

    def __call__(self, stage: str, done: int, total: int) -> None:
        if self.progress is None:
            return
        percent = min(100, done * 100 // total) if total > 0 else 100
        now = time.monotonic()
        if self._last is not None and self._last[0] == stage and (
                percent == self._last[1] or (percent < 100 and now - self._last[2] < PROGRESS_INTERVAL)):
            return
        self._last = (stage, percent, now)
        self.progress(stage, percent)


def fetch_image(image: ImageRef, into, progress: ThrottledProgress) -> None:
    """The image from the region into `into`, checked against its size and sha256.  A region
    without the file redirects to one that has it; the redirect is followed with the same token
    (requests would drop the Authorization header on the way to another port)."""
    digest, received = hashlib.sha256(), 0
    session = requests.Session()
    session.trust_env = False  # the region is reached directly, never through an environment proxy
    url = image.url
    try:
        for _ in range(MAX_REDIRECTS + 1):
            with session.get(url, headers={"Authorization": f"Bearer {image.token}"}, stream=True,
                             timeout=DOWNLOAD_TIMEOUT, allow_redirects=False) as response:
                if response.status_code in (301, 302, 303, 307, 308) and response.headers.get("Location"):
                    url = urllib.parse.urljoin(url, response.headers["Location"])
                    continue
                if response.status_code != 200:
                    raise DriverError(f"the region refused the image download (HTTP {response.status_code}: "
                                      f"{response.text[:200]})")
                for chunk in response.iter_content(DOWNLOAD_CHUNK):
                    received += len(chunk)
                    if received > image.size:
                        raise DriverError(f"the image from the region is larger than its {image.size} bytes")
                    digest.update(chunk)
                    into.write(chunk)
                    progress("fetching", received, image.size)
                break
        else:
            raise DriverError(f"the image download was redirected more than {MAX_REDIRECTS} times")
    except requests.RequestException as e:
        raise DriverError(f"cannot fetch the image from the region: {e}") from None
    finally:
        session.close()
    if received != image.size or digest.hexdigest() != image.fingerprint:
        raise DriverError(f"the image from the region is damaged: {received} of {image.size} bytes, "
                          f"sha256 {digest.hexdigest()[:12]} instead of {image.fingerprint[:12]}")
