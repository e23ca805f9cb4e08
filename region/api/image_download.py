"""GET /MAAS/images/<fingerprint>: racks fetch LXD images here with a short-lived bearer token.

The token (from `services.images.image_url_for_rack`, given to a rack inside its RPC call)
names one image and expires within minutes.  The file is streamed by Twisted's static
File producer, with Range requests, never read whole.  A region that does not hold the file
answers 307 with the URL of one that does (regions share one database, not their data dirs);
racks follow it with the same token.
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.logger import Logger
from twisted.web import resource, server, static

from common.logsafe import loggable
from region.api.plain_text import finish_text
from region.services import images as image_service
from region.services.context import Context
from region.services.errors import Forbidden, NotFound

IMAGES_PREFIX = "/MAAS/images/"
log = Logger()


class ImageDownloadResource(resource.Resource):
    isLeaf = True

    def __init__(self, region) -> None:
        super().__init__()
        self.region = region

    def render_GET(self, request: server.Request):
        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))
        defer.ensureDeferred(self._serve(request, gone))
        return server.NOT_DONE_YET

    render_HEAD = render_GET

    async def _serve(self, request: server.Request, gone: list[bool]) -> None:
        fingerprint = request.path[len(IMAGES_PREFIX):].decode("latin-1")
        scheme, _, token = (request.getHeader(b"authorization") or b"").decode("latin-1").partition(" ")
        try:
            if scheme.lower() != "bearer":
                raise Forbidden("An image token is required (Authorization: Bearer TOKEN).")
            found = await image_service.find_image(Context(self.region), fingerprint, token.strip())
        except Forbidden as e:
            found, status, message = None, 403, str(e)
        except NotFound as e:
            found, status, message = None, 404, str(e)
        except Exception:
            log.failure("serving image {fingerprint} failed", fingerprint=loggable(fingerprint))
            found, status, message = None, 503, "The region cannot serve the image now; try again shortly."
        if gone:
            return
        if found is None:
            finish_text(request, status, message)
        elif isinstance(found, str):
            request.setHeader(b"Location", found.encode())
            finish_text(request, 307, f"The image is on another region: {found}")
        else:
            body = static.File(str(found), defaultType="application/octet-stream").render_GET(request)
            if body is not server.NOT_DONE_YET:
                request.write(body)
                request.finish()
