"""AMP argument types: attrs values on the wire, with an explicit size guard."""

from __future__ import annotations

import json
import zlib
from collections import OrderedDict
from typing import Any

import attrs
import cattrs
from twisted.protocols import amp

_converter = cattrs.Converter()

# One byte in front says how the rest is encoded, so small values stay cheap
# (plain JSON) and large ones are compressed.  The threshold lets a HostTarget
# (~5 KB, mostly base64 PEM that zlib shrinks by a fifth) travel uncompressed:
# compressing it cost more time on every host call than the bytes it saved.
_PLAIN = b"j"
_ZLIB = b"z"
_COMPRESS_ABOVE = 8192


# AMP limits one value to 65,535 bytes; larger encodings are split over the
# keys NAME, NAME.1, NAME.2 ... (a host with many VMs easily needs that).
MAX_CHUNKS = 32


class PayloadTooLarge(ValueError):
    """A value does not fit in MAX_CHUNKS AMP values even when compressed."""


def encode_value(value: Any) -> bytes:
    raw = json.dumps(_converter.unstructure(value), separators=(",", ":")).encode("utf-8")
    if len(raw) > _COMPRESS_ABOVE:
        data = _ZLIB + zlib.compress(raw, 6)
    else:
        data = _PLAIN + raw
    if len(data) > amp.MAX_VALUE_LENGTH * MAX_CHUNKS:
        raise PayloadTooLarge(
            f"{type(value).__name__} encodes to {len(data)} bytes, over "
            f"{MAX_CHUNKS} AMP values of {amp.MAX_VALUE_LENGTH}"
        )
    return data


def decode_value(data: bytes, cls: type) -> Any:
    tag, body = data[:1], data[1:]
    if tag == _ZLIB:
        body = zlib.decompress(body)
    elif tag != _PLAIN:
        raise ValueError(f"unknown encoding tag {tag!r}")
    return _converter.structure(json.loads(body), cls)


def _chunk_key(name: bytes, index: int) -> bytes:
    return name if index == 0 else name + b".%d" % index


class _Remembered:
    """The last `size` encodings (value -> bytes) and decodings (bytes -> value) of one frozen
    attrs class: the same host's target travels with every job, and encoding it (~30 µs) and
    decoding it (~50 µs, JSON and cattrs) each time would be done again on identical input."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._encoded: OrderedDict[Any, bytes] = OrderedDict()
        self._decoded: OrderedDict[bytes, Any] = OrderedDict()

    def encode(self, value: Any) -> bytes:
        return self._through(self._encoded, value, encode_value)

    def decode(self, data: bytes, cls: type) -> Any:
        return self._through(self._decoded, data, lambda d: decode_value(d, cls))

    def _through(self, kept: OrderedDict, key: Any, compute) -> Any:
        try:
            kept.move_to_end(key)
            return kept[key]
        except KeyError:
            pass
        except TypeError:  # a field holding an unhashable value: not remembered
            return compute(key)
        result = kept[key] = compute(key)
        if len(kept) > self.size:
            kept.popitem(last=False)
        return result


class AttrsArgument(amp.Argument):
    """Carries one attrs value (nested attrs, lists, dicts allowed), split over
    several AMP keys when its encoding exceeds one AMP value.

    `remember` (a frozen, hashable class only) keeps that many recent encodings and decodings.
    """

    def __init__(self, cls: type, optional: bool = False, remember: int = 0) -> None:
        super().__init__(optional=optional)
        self.cls = cls
        if remember and not (attrs.has(cls) and cls.__hash__ is not None and cls.__setattr__ is not object.__setattr__):
            raise TypeError(f"only a frozen attrs class can be remembered, not {cls!r}")
        self._remembered = _Remembered(remember) if remember else None

    def toString(self, inObject: Any) -> bytes:
        if self._remembered is not None and type(inObject) is self.cls:
            return self._remembered.encode(inObject)
        return encode_value(inObject)

    def fromString(self, inString: bytes) -> Any:
        if self._remembered is not None:
            return self._remembered.decode(inString, self.cls)
        return decode_value(inString, self.cls)

    def toBox(self, name: bytes, strings, objects, proto) -> None:
        value = self.retrieve(objects, amp._wireNameToPythonIdentifier(name), proto)
        if self.optional and value is None:
            return
        data = self.toString(value)
        step = amp.MAX_VALUE_LENGTH
        for index, start in enumerate(range(0, len(data), step)):
            strings[_chunk_key(name, index)] = data[start:start + step]

    def fromBox(self, name: bytes, strings, objects, proto) -> None:
        key = amp._wireNameToPythonIdentifier(name)
        first = self.retrieve(strings, name, proto)
        if self.optional and first is None:
            objects[key] = None
            return
        parts = [first]
        for index in range(1, MAX_CHUNKS):
            part = strings.pop(_chunk_key(name, index), None)
            if part is None:
                break
            parts.append(part)
        objects[key] = self.fromString(b"".join(parts))
