"""The UI's files, read once at start-up and served from memory.

Assets live under static/<version>/ where the version is a hash of their content, so a browser
may cache them for a year and still never runs an old script after an upgrade; the page itself
is never cached (it names the version)."""

from __future__ import annotations

import hashlib
import mimetypes
from pathlib import Path

import attrs
from twisted.web import server

STATIC_DIR = Path(__file__).parent / "static"
PAGE = "index.html"
_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
          ".html": "text/html; charset=utf-8", ".svg": "image/svg+xml"}
# Scripts and styles only from the region itself; the page cannot be framed (clickjacking).
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


@attrs.frozen
class Assets:
    version: str
    files: dict[str, tuple[bytes, str]]  # relative path -> (content, content type)
    page: bytes

    @classmethod
    def load(cls, directory: Path = STATIC_DIR) -> "Assets":
        files = {}
        digest = hashlib.sha256()
        for path in sorted(p for p in directory.rglob("*") if p.is_file()):
            name = path.relative_to(directory).as_posix()
            content = path.read_bytes()
            digest.update(name.encode() + b"\0" + content)
            ctype = _TYPES.get(path.suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"
            files[name] = (content, ctype)
        version = digest.hexdigest()[:16]
        page = files.pop(PAGE)[0].replace(b"{{VERSION}}", version.encode())
        return cls(version, files, page)

    def render_page(self, request: server.Request) -> bytes:
        request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
        request.setHeader(b"Cache-Control", b"no-cache")
        _security_headers(request)
        return self.page

    def render_asset(self, request: server.Request, relative: str) -> bytes:
        version, _, name = relative.partition("/")
        found = self.files.get(name)
        if found is None:
            request.setResponseCode(404)
            request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
            return b"No such file."
        content, ctype = found
        request.setHeader(b"Content-Type", ctype.encode())
        # Another version's name (a page loaded before an upgrade) gets today's file, uncached.
        cache = b"public, max-age=31536000, immutable" if version == self.version else b"no-cache"
        request.setHeader(b"Cache-Control", cache)
        _security_headers(request)
        return content


def _security_headers(request: server.Request) -> None:
    request.setHeader(b"Content-Security-Policy", CSP.encode())
    request.setHeader(b"X-Content-Type-Options", b"nosniff")
    request.setHeader(b"Referrer-Policy", b"same-origin")
