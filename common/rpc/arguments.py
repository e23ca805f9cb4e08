"""AMP argument types: attrs values on the wire, with an explicit size guard."""

from __future__ import annotations

import json
import zlib
from typing import Any

import cattrs
from twisted.protocols import amp

_converter = cattrs.Converter()

# One byte in front says how the rest is encoded, so small values stay cheap
# (plain JSON) and large ones are compressed.
_PLAIN = b"j"
_ZLIB = b"z"
_COMPRESS_ABOVE = 2048


class PayloadTooLarge(ValueError):
    """A value does not fit in one AMP value even when compressed."""


def encode_value(value: Any) -> bytes:
    raw = json.dumps(_converter.unstructure(value), separators=(",", ":")).encode("utf-8")
    if len(raw) > _COMPRESS_ABOVE:
        data = _ZLIB + zlib.compress(raw, 6)
    else:
        data = _PLAIN + raw
    if len(data) > amp.MAX_VALUE_LENGTH:
        raise PayloadTooLarge(
            f"{type(value).__name__} encodes to {len(data)} bytes, over AMP's {amp.MAX_VALUE_LENGTH}"
        )
    return data


def decode_value(data: bytes, cls: type) -> Any:
    tag, body = data[:1], data[1:]
    if tag == _ZLIB:
        body = zlib.decompress(body)
    elif tag != _PLAIN:
        raise ValueError(f"unknown encoding tag {tag!r}")
    return _converter.structure(json.loads(body), cls)


class AttrsArgument(amp.Argument):
    """Carries one attrs value (nested attrs, lists, dicts allowed)."""

    def __init__(self, cls: type, optional: bool = False) -> None:
        super().__init__(optional=optional)
        self.cls = cls

    def toString(self, inObject: Any) -> bytes:
        return encode_value(inObject)

    def fromString(self, inString: bytes) -> Any:
        return decode_value(inString, self.cls)
