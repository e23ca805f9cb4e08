"""Values from the network made fit for one log line.

A client controls what it sends: a newline in a host name would forge a second log line,
and a megabyte of it would flood the log.  Every untrusted value that reaches a log line
goes through `loggable`.
"""

from __future__ import annotations

LOG_VALUE_LIMIT = 200


def loggable(value: str | bytes | None, limit: int = LOG_VALUE_LIMIT) -> str:
    """`value` with control characters escaped (\\n, \\x1b, ...) and at most `limit` characters."""
    if value is None:
        return "-"
    text = value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)
    clipped = len(text) > limit
    text = text[:limit]
    if not text.isprintable():
        text = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
    return text + (f"...({len(value)} characters)" if clipped else "")
