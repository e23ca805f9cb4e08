"""`vmyard images list|upload|sync|delete`: boot resources, uploaded in 4 MiB chunks as the maas CLI does.

An upload that stopped part way (same name, architecture, size and sha256, still uploading)
resumes from the bytes the region already has.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path
from typing import BinaryIO

from region.cli.client import ApiClient, ClientError
from region.cli.table import human_bytes, render_table

CHUNK = 1 << 22  # the maas CLI's chunk size
COLUMNS = [("ID", "id"), ("NAME", "name"), ("ARCHITECTURE", "architecture"), ("TYPE", "type"),
           ("FILETYPE", "filetype"), ("SIZE", "size_h"), ("STATE", "state"), ("PROGRESS", "progress_h")]
SYNC_POLL = 1.0  # seconds between progress looks of `images sync --wait`
FILETYPES = ("tgz", "lxd", "ddraw", "ddgz", "ddxz", "qcow2")


def the_file(resource: dict) -> dict:
    (image_set,) = resource["sets"].values()
    (file,) = image_set["files"].values()
    return file


def _row(resource: dict) -> dict:
    (image_set,) = resource["sets"].values()
    file = the_file(resource)
    return {**resource, "filetype": file["filetype"], "size_h": human_bytes(file["size"]),
            "progress_h": f"{image_set['progress']:g}%"}


def _size_and_sha256(f: BinaryIO) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    while block := f.read(CHUNK):
        digest.update(block)
        size += len(block)
    return size, digest.hexdigest()


class ProgressBar:
    """One line on stderr, redrawn in place."""

    WIDTH = 30

    def __init__(self, total: int) -> None:
        self.total = total

    def show(self, done: int) -> None:
        filled = self.WIDTH * done // self.total
        sys.stderr.write(f"\r[{'#' * filled}{' ' * (self.WIDTH - filled)}] {100 * done // self.total:3d}% "
                         f"{human_bytes(done)} of {human_bytes(self.total)}")
        if done >= self.total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def _resumable(client: ApiClient, name: str, architecture: str, size: int, sha256: str) -> dict | None:
    for resource in client.call("GET", "boot-resources/"):
        file = the_file(resource)
        if (resource["name"], resource["architecture"]) == (name, architecture) and resource["state"] == "uploading" \
                and (file["size"], file["sha256"]) == (size, sha256):
            return resource
    return None


def cmd_upload(args, client: ApiClient) -> None:
    path = Path(args.file)
    name = args.name if "/" in args.name else f"custom/{args.name}"
    try:
        f = path.open("rb")
    except OSError as e:
        raise ClientError(f"cannot read {path}: {e.strerror}") from None
    with f:
        size, sha256 = _size_and_sha256(f)
        resource = _resumable(client, name, args.architecture, size, sha256) or client.call(
            "POST", "boot-resources/", data={"name": name, "architecture": args.architecture, "title": args.title,
                                             "filetype": args.filetype, "size": size, "sha256": sha256})
        file = the_file(resource)
        done = file["received"]
        bar = ProgressBar(size)
        bar.show(done)
        f.seek(done)
        while done < size:
            chunk = f.read(CHUNK)
            resource = client.call("PUT", file["upload_uri"].split("/api/2.0/", 1)[1], raw=chunk)
            done += len(chunk)
            bar.show(done)
    print(f"Uploaded {resource['name']} ({resource['architecture']}) as boot resource {resource['id']}: "
          f"{resource['state']}.")


def cmd_list(args, client: ApiClient) -> None:
    resources = client.call("GET", "boot-resources/")
    print(json.dumps(resources, indent=2) if args.json else render_table(COLUMNS, [_row(r) for r in resources]))


def cmd_delete(args, client: ApiClient) -> None:
    client.call("DELETE", f"boot-resources/{args.id}/")
    print(f"Deleted boot resource {args.id}.")


def _syncing_progress(client: ApiClient) -> tuple[int, int]:
    """Bytes done and total over the synced images."""
    done = total = 0
    for resource in client.call("GET", "boot-resources/"):
        if resource["type"] == "Synced":
            file = the_file(resource)
            total += file["size"]
            done += file["size"] if resource["state"] == "complete" else file["received"]
    return done, total


def cmd_sync(args, client: ApiClient) -> None:
    print(client.call("POST", "boot-resources/", op="import", data={}))
    if not args.wait:
        return
    bar = None
    while True:
        importing = client.call("GET", "boot-resources/", op="is_importing")
        done, total = _syncing_progress(client)
        if total:
            bar = bar or ProgressBar(total)
            bar.total = total
            bar.show(done if importing else total)
        if not importing:
            break
        time.sleep(SYNC_POLL)
    (source,) = client.call("GET", "boot-sources/")
    if source["last_sync_error"]:
        raise ClientError(f"the sync finished with errors: {source['last_sync_error']}")
    print("Images are in sync with the boot source.")


def add_images_parser(sub) -> None:
    p = sub.add_parser("images", aliases=["boot-resources"], help="list, upload and delete images")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("list", help="list images").set_defaults(func=cmd_list, needs_client=True)
    u = actions.add_parser("upload", help="upload an image file in 4 MiB chunks (resumes a stopped upload)")
    u.add_argument("file", metavar="FILE")
    u.add_argument("--name", required=True, help="os/release, e.g. custom/bookworm (a bare name gets custom/)")
    u.add_argument("--architecture", default="amd64/generic", help="arch/subarch (default amd64/generic)")
    u.add_argument("--filetype", choices=FILETYPES, default="tgz",
                   help="tgz: root filesystem tarball (default); lxd: LXD unified tarball; or a disk image")
    u.add_argument("--title", default="", help="a title for the image")
    u.set_defaults(func=cmd_upload, needs_client=True)
    s = actions.add_parser("sync", help="sync images from the region's boot source now")
    s.add_argument("--wait", action="store_true", help="show progress on stderr until the sync is over")
    s.set_defaults(func=cmd_sync, needs_client=True)
    d = actions.add_parser("delete", help="delete an image and its files")
    d.add_argument("id", type=int, metavar="ID")
    d.set_defaults(func=cmd_delete, needs_client=True)
