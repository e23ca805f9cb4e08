"""GET /MAAS/images/<fingerprint>: racks fetch LXD images here with a short-lived bearer token.

The token (from `services.images.image_url_for_rack`, given to a rack inside its RPC call)
names one image and expires within minutes.  The file is streamed by Twisted's static
File producer, with Range requests, never read whole.
"""

from __future__ import annotations

from twisted.web import resource, server, static

from region.services import images as image_service
from region.services.context import Context
from region.services.errors import Forbidden, NotFound

IMAGES_PREFIX = "/MAAS/images/"


def _text(request: server.Request, status: int, message: str) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
    return message.encode()


class ImageDownloadResource(resource.Resource):
    isLeaf = True

    def __init__(self, region) -> None:
        super().__init__()
        self.region = region

    def render_GET(self, request: server.Request):
        fingerprint = request.path[len(IMAGES_PREFIX):].decode("latin-1")
        scheme, _, token = (request.getHeader(b"authorization") or b"").decode("latin-1").partition(" ")
        if scheme.lower() != "bearer":
            return _text(request, 403, "An image token is required (Authorization: Bearer TOKEN).")
        try:
            path = image_service.image_file_for_token(Context(self.region), fingerprint, token.strip())
        except Forbidden as e:
            return _text(request, 403, str(e))
        except NotFound as e:
            return _text(request, 404, str(e))
        return static.File(str(path), defaultType="application/octet-stream").render_GET(request)

    render_HEAD = render_GET
