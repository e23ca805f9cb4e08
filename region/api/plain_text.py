"""Plain-text answers for the resources that sit outside the API router (images, metadata)."""

from __future__ import annotations

from twisted.web import server


def finish_text(request: server.Request, status: int, message: str) -> None:
    """Answer `request` with `status` and `message` as UTF-8 text, and finish it."""
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
    request.write(message.encode())
    request.finish()
