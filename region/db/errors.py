"""Errors the db layer raises for callers to render (API: HTTP 400/404)."""

from __future__ import annotations


class NotFound(LookupError):
    def __init__(self, what: str) -> None:
        super().__init__(f"No {what} matches the given query.")
        self.what = what


class FieldError(ValueError):
    """Bad value for one field; rendered as {"field": ["message"]}."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class Refused(ValueError):
    """The request is well-formed but not allowed (e.g. deleting a default)."""
