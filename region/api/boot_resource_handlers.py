"""boot-resources/ (MAAS 2.0 shapes): images, uploaded in chunks, listed with their set and file."""

from __future__ import annotations

import re

from region.api.errors import BadRequest, NotFound
from region.api.handler import Call, Handler, operation, restful
from region.api.params import Form
from region.api.site import API_PREFIX, Response
from region.api.web import MAX_REQUEST_BODY
from region.db.images import BootResource, NewResource
from region.services import image_sync
from region.services import images as image_service
from region.services.image_sync import BootSource

MAX_IMAGE_SIZE = 1 << 40
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_ARCHITECTURE = re.compile(r"^[a-z0-9_]+/[a-z0-9_.-]+$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _uri(resource_id: int) -> str:
    return f"{API_PREFIX}boot-resources/{resource_id}/"


def boot_resource_json(r: BootResource) -> dict:
    progress = round(100.0 * r.received / r.size, 1) if r.size else 0.0
    return {
        "id": r.id, "type": r.rtype, "name": r.name, "architecture": r.architecture,
        "subarches": r.architecture.split("/", 1)[1], "title": r.title, "resource_uri": _uri(r.id),
        "state": r.state, "lxd_fingerprint": r.lxd_fingerprint,
        "sets": {r.version: {
            "version": r.version, "label": r.label, "size": r.size, "complete": r.complete,
            "progress": 100.0 if r.complete else progress,
            "files": {f.filename: {
                "filename": f.filename, "filetype": f.filetype, "sha256": f.sha256, "size": f.size,
                "complete": r.complete or (r.state == "uploading" and f.whole), "received": f.received,
                "upload_uri": f"{_uri(r.id)}upload/{f.id}/",
            } for f in r.files},
        }},
    }


def _path_id(call: Call, name: str) -> int:
    value = call.path_args[name]
    if not value.isdigit() or len(value) > 9:
        raise NotFound("No BootResource matches the given query.")
    return int(value)


def _new_resource(call: Call, content: bytes | None) -> NewResource:
    """The form; with inline `content`, size and sha256 may be left out (they are then the
    file's own) and, when given, must match it (size here, sha256 once the file is hashed)."""
    form = Form(call.params)
    name = form.text("name", required=True, max_length=128)
    architecture = form.text("architecture", required=True, max_length=64)
    sha256 = form.text("sha256", required=content is None, max_length=64) or ""
    size = form.integer("size", minimum=1, maximum=MAX_IMAGE_SIZE, required=content is None)
    title = form.text("title", max_length=256) or ""
    filetype = form.text("filetype", max_length=16) or "tgz"
    if content is not None:
        if not content:
            form.error("content", "The file is empty.")
        elif size is not None and size != len(content):
            form.error("size", f"size is {size}, but the content has {len(content)} bytes.")
        size = len(content)
    if name is not None and "/" not in name:
        name = f"custom/{name}"  # as MAAS names an uploaded image
    if name is not None and not _NAME.match(name):
        form.error("name", "Enter os/release (e.g. custom/bookworm): letters, digits, '.', '_' and '-'.")
    if architecture is not None and "/" not in architecture:
        architecture = f"{architecture}/generic"
    if architecture is not None and not _ARCHITECTURE.match(architecture):
        form.error("architecture", "Enter arch/subarch, e.g. amd64/generic.")
    if sha256 and not _SHA256.match(sha256.lower()):
        form.error("sha256", "Enter the file's sha256 as 64 hex digits.")
    form.check()
    return NewResource(name, architecture, title, filetype, size, sha256.lower())


class BootResourcesHandler(Handler):
    """Manage the boot resources (images)."""

    path = "boot-resources/"
    # A POST may carry the image inline (`content`): its form may be as large as any request.
    max_form_body = MAX_REQUEST_BODY

    @restful("GET")
    async def read(self, call: Call):
        """List the boot resources, oldest first, each with its set and file."""
        return [boot_resource_json(r) for r in await image_service.list_all(call.ctx)]

    @restful("POST", admin_only=True)
    async def create(self, call: Call):
        """Record an uploaded image; then PUT its bytes, in chunks, to the file's upload_uri.

        :param name: Required. os/release, e.g. custom/bookworm (a bare name gets custom/).
        :type name: String
        :param architecture: Required. arch/subarch, e.g. amd64/generic.
        :type architecture: String
        :param sha256: Required. The file's sha256; checked when the last chunk arrives.
        :type sha256: String
        :param size: Required. The file's size in bytes.
        :type size: Int
        :param title: Optional. A title for the image.
        :type title: String
        :param filetype: Optional. tgz (a root filesystem tarball; default), lxd (an LXD unified
            tarball), a disk image: ddraw, ddgz, ddxz, qcow2, or one file of an LXD split image:
            lxd-meta (its metadata tarball) and lxd-rootfs (a squashfs, containers) or lxd-disk
            (a qcow2, VMs), each POSTed with the same name and architecture (the second adds its
            file to the resource still receiving the first).
        :type filetype: String
        :param content: Optional. The file itself, as a multipart file part (small files: the
            whole request is at most 16 MiB); the image is then complete at once, and size and
            sha256 are optional (checked when given).
        :type content: File
        """
        content = call.params.file("content")
        new = _new_resource(call, content)
        if content is not None:
            return Response(201, boot_resource_json(await image_service.create_inline(call.ctx, new, content)))
        return Response(201, boot_resource_json(await image_service.create(call.ctx, new)))


    @operation("POST", "import", admin_only=True)
    async def import_(self, call: Call):
        """Sync the images of the configured boot source now (in the background).

        Progress shows in each resource's sets{}.progress; op=is_importing says when it is over.
        """
        started = await image_sync.start_import(call.ctx)
        return Response(200, "Import of boot resources started" if started else
                        "Import of boot resources is already running", "text/plain")

    @operation("GET", "is_importing")
    async def is_importing(self, call: Call):
        """Whether a sync from the boot source is running (true or false)."""
        return await image_sync.is_importing(call.ctx)


def _iso(value) -> str | None:
    return value.isoformat() if value is not None else None


def boot_source_json(source: BootSource) -> dict:
    state = source.state
    return {
        "id": 1, "url": source.url, "keyring_filename": "", "keyring_data": "",
        "resource_uri": f"{API_PREFIX}boot-sources/1/", "releases": list(source.releases),
        "arches": list(source.arches), "image_type": source.image_type, "importing": state.importing,
        "last_sync_started": _iso(state.started), "last_sync_finished": _iso(state.finished),
        "last_sync_error": state.error,
    }


class BootSourcesHandler(Handler):
    """The simplestreams source images are synced from (boot_source_url; none when unset)."""

    path = "boot-sources/"

    @restful("GET")
    async def read(self, call: Call):
        """List the boot source (its URL, releases, architectures, and how its last sync went)."""
        return [boot_source_json(s) for s in await image_sync.boot_sources(call.ctx)]


class BootSourceHandler(Handler):
    """The configured boot source."""

    path = "boot-sources/{id}/"

    @restful("GET")
    async def read(self, call: Call):
        """Read the boot source."""
        found = await image_sync.boot_sources(call.ctx)
        if call.path_args["id"] != "1" or not found:
            raise NotFound("No BootSource matches the given query.")
        return boot_source_json(found[0])


class BootResourceHandler(Handler):
    """Manage one boot resource."""

    path = "boot-resources/{id}/"

    @restful("GET")
    async def read(self, call: Call):
        """Read a boot resource."""
        return boot_resource_json(await image_service.get(call.ctx, _path_id(call, "id")))

    @restful("DELETE", admin_only=True)
    async def delete(self, call: Call):
        """Delete a boot resource and its files."""
        await image_service.delete(call.ctx, _path_id(call, "id"))
        return Response(204)


class BootResourceFileUploadHandler(Handler):
    """Receive a boot resource file's bytes."""

    path = "boot-resources/{id}/upload/{file_id}/"

    @restful("PUT", admin_only=True)
    async def update(self, call: Call):
        """Append the raw body (Content-Type: application/octet-stream) to the file.

        Content-Length is required and gives the chunk's size; the chunk that completes the
        file checks its sha256.
        """
        if call.declared_length is None or not call.declared_length.isdigit():
            raise BadRequest("Send each chunk with a Content-Length (chunked transfer is not accepted).")
        length = int(call.declared_length)
        if call.body is None or call.body.seek(0, 2) != length:
            raise BadRequest(f"The body does not match its Content-Length of {length} bytes.")
        resource = await image_service.upload_chunk(call.ctx, _path_id(call, "id"), _path_id(call, "file_id"),
                                                    call.body, length)
        return boot_resource_json(resource)
