"""Numbers as clients send them, read so that no text can cost more than a few microseconds.

Pure (no I/O), shared by the HTTP forms (`Form.integer`/`Form.number` in
region/api/params.py) and the compose request check (region/services/compose_request.py).
Only ASCII digits are numbers (int() and float() also take other scripts' digits,
`1_000`, `inf` and `nan`); text over `MAX_CHARS` is refused before any conversion (int()
of over 4,300 digits raises, and a huge value would overflow PostgreSQL's bigint anyway);
every value must lie within the caller's bounds.  Messages are Django's, as MAAS gives them.
"""

from __future__ import annotations

import math
import re

MAX_CHARS = 32
_INTEGER = re.compile(r"[+-]?[0-9]+")
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


class NumberError(ValueError):
    """The text is not a number within bounds; str() is the user's message."""


def read_integer(raw: str, *, minimum: int, maximum: int) -> int:
    text = _bounded(raw)
    if not _INTEGER.fullmatch(text):
        raise NumberError("Enter a whole number.")
    return _within(int(text), minimum, maximum)


def read_number(raw: str, *, minimum: float, maximum: float) -> float:
    """A finite decimal number; 1e400 is out of range, never infinity."""
    text = _bounded(raw)
    if not _DECIMAL.fullmatch(text):
        raise NumberError("Enter a number.")
    value = float(text)
    if math.isinf(value):  # an exponent past float's range: a bound is what it breaks
        raise NumberError(_range_message(value, minimum, maximum))
    return _within(value, minimum, maximum)


def _bounded(raw: str) -> str:
    text = raw.strip()
    if len(text) > MAX_CHARS:
        raise NumberError(f"Ensure this value has at most {MAX_CHARS} characters (it has {len(text)}).")
    return text


def _within(value, minimum, maximum):
    if not minimum <= value <= maximum:
        raise NumberError(_range_message(value, minimum, maximum))
    return value


def _range_message(value: float, minimum: float, maximum: float) -> str:
    if value < minimum:
        return f"Ensure this value is greater than or equal to {minimum}."
    return f"Ensure this value is less than or equal to {maximum}."
