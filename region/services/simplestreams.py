"""Simplestreams (the Ubuntu cloud images' and LXD's image server format): pure parsing and choice.

An index (`streams/v1/index.json`) names product files; a product file lists products (one
release of one OS on one architecture, maybe a variant), each with dated versions whose items
are the files.  vmyard wants, per chosen release and architecture, the newest version's root
filesystem tarball (`root.tar.xz`, for containers) or its qcow2 disk (`disk-kvm.img`, else
`disk1.img`, for VMs); the region makes the LXD image hosts are given from that one file.
"""

from __future__ import annotations

import re
from typing import Any

import attrs

INDEX_PATH = "streams/v1/index.json"
# instance type -> the item ftypes that make its image, best first, and the resource's filetype
# (the upload filetype it matches: tgz is any root filesystem tarball, qcow2 a disk).
WANTED_FTYPES = {"container": ("root.tar.xz",), "virtual-machine": ("disk-kvm.img", "disk1.img")}
FILETYPES = {"container": "tgz", "virtual-machine": "qcow2"}
MAX_ITEM_SIZE = 1 << 40
_SHA256 = re.compile(r"[0-9a-f]{64}")
_NAME_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_SAFE_PATH = re.compile(r"[A-Za-z0-9._+~:/-]{1,1024}")


class BadStream(ValueError):
    """The document is not the simplestreams shape vmyard reads."""


@attrs.frozen
class Selection:
    """One file to sync: the newest version of a release's image of one kind on one architecture."""

    release: str
    arch: str
    image_type: str  # container | virtual-machine
    version: str
    ftype: str  # the item's ftype, e.g. root.tar.xz
    path: str  # relative to the source's URL
    sha256: str
    size: int
    title: str

    @property
    def name(self) -> str:
        return f"ubuntu/{self.release}"

    @property
    def architecture(self) -> str:
        return f"{self.arch}/generic"

    @property
    def filetype(self) -> str:
        return FILETYPES[self.image_type]


def _mapping(value: Any, what: str) -> dict:
    if not isinstance(value, dict):
        raise BadStream(f"{what} is not a JSON object")
    return value


def product_files(index: Any) -> list[str]:
    """The paths of the index's image product files (datatype image-downloads)."""
    entries = _mapping(_mapping(index, "the index").get("index"), "the index's 'index'")
    paths = []
    for entry in entries.values():
        if isinstance(entry, dict) and entry.get("datatype") == "image-downloads" \
                and str(entry.get("format", "")).startswith("products:"):
            path = entry.get("path")
            if not isinstance(path, str) or not safe_path(path):
                raise BadStream(f"the index names a product file with a bad path: {path!r}")
            paths.append(path)
    return sorted(paths)


def safe_path(path: str) -> bool:
    """A path inside the source: relative, no '..', no scheme (no ':' before the first '/';
    LXD's server has one in its version directories)."""
    parts = path.split("/")
    return bool(_SAFE_PATH.fullmatch(path)) and parts[0] not in ("", ".") and ":" not in parts[0] \
        and ".." not in parts


def _item(items: dict, ftypes: tuple[str, ...]) -> tuple[str, dict] | None:
    by_ftype = {item.get("ftype"): item for item in items.values() if isinstance(item, dict)}
    for ftype in ftypes:
        if ftype in by_ftype:
            return ftype, by_ftype[ftype]
    return None


def _selection(product: dict, image_type: str) -> Selection | None:
    versions = product.get("versions")
    if not isinstance(versions, dict):
        return None
    for version in sorted((v for v in versions if isinstance(v, str)), reverse=True):
        items = versions[version].get("items") if isinstance(versions[version], dict) else None
        found = _item(items, WANTED_FTYPES[image_type]) if isinstance(items, dict) else None
        if found is None:
            continue
        ftype, item = found
        path, sha256, size = item.get("path"), item.get("sha256"), item.get("size")
        if not (isinstance(path, str) and safe_path(path) and isinstance(sha256, str) and _SHA256.fullmatch(sha256)
                and isinstance(size, int) and 0 < size <= MAX_ITEM_SIZE and len(version) <= 64):
            raise BadStream(f"version {version!r} of {product.get('release')!r} has a malformed {ftype} item")
        title = str(product.get("release_title") or product.get("release"))[:200]
        return Selection(product["release"], product["arch"], image_type, version, ftype, path, sha256, size,
                         f"Ubuntu {title}")
    return None


def select(products_doc: Any, releases: tuple[str, ...], arches: tuple[str, ...], image_type: str) -> list[Selection]:
    """For each wanted Ubuntu release and architecture found in the product file, its newest
    image of `image_type`.  LXD's server has variants: only `cloud` ones have cloud-init."""
    products = _mapping(_mapping(products_doc, "the product file").get("products"), "the products")
    chosen: dict[tuple[str, str], Selection] = {}
    for product in products.values():
        if not isinstance(product, dict) or str(product.get("os", "")).lower() != "ubuntu":
            continue
        release, arch = product.get("release"), product.get("arch")
        if release not in releases or arch not in arches or product.get("variant", "cloud") != "cloud":
            continue
        if not (_NAME_PART.fullmatch(release) and _NAME_PART.fullmatch(arch)):
            continue
        found = _selection(product, image_type)
        if found is None:
            continue
        current = chosen.get((release, arch))
        if current is None or found.version > current.version:
            chosen[(release, arch)] = found
    return [chosen[key] for key in sorted(chosen)]
