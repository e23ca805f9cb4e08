"""Request parameters as MAAS clients send them.

Query string plus body, where the body is `application/x-www-form-urlencoded`
(gomaasapi: Terraform, Juju) or `multipart/form-data` with base64 parts and
repeated fields (python-libmaas, the maas CLI).  Twisted only parses POST
bodies and keeps one value of a repeated multipart field on older versions,
so we parse every body ourselves.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Callable, TypeVar
from urllib.parse import parse_qsl

from region.api.errors import ApiError, BadRequest
from region.number_input import NumberError, read_integer, read_number

# Bounds that keep parsing cheap whatever a client sends (the whole body is capped at the
# transport, region/api/web.py).  MAAS (Django) allows 1,000 fields a request.
MAX_FORM_BODY = 2 * 1024 * 1024
MAX_FIELDS = 1000


class PayloadTooLarge(ApiError):
    status = 413


def check_text(field: str, value: str) -> None:
    """PostgreSQL text cannot hold NUL, and UTF-8 cannot hold a lone surrogate: refuse both."""
    if "\x00" in value:
        raise BadRequest.field(field, "NUL characters are not allowed.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest.field(field, "The value is not valid Unicode (lone surrogate).") from None


class Params:
    """A read-only multi-dict of str -> [str], and the bytes of file parts (multipart parts
    with a filename, e.g. the maas CLI's `content@=FILE`) by name."""

    def __init__(self, data: dict[str, list[str]] | None = None) -> None:
        self._data: dict[str, list[str]] = data or {}
        self._files: dict[str, bytes] = {}

    def __contains__(self, name: str) -> bool:
        return name in self._data

    def keys(self):
        return self._data.keys()

    def get(self, name: str, default: str | None = None) -> str | None:
        values = self._data.get(name)
        return values[-1] if values else default

    def getlist(self, name: str, *, split_commas: bool = False) -> list[str]:
        values = self._data.get(name, [])
        if not split_commas:
            return list(values)
        return [v.strip() for value in values for v in value.split(",") if v.strip()]

    def add(self, name: str, value: str) -> None:
        check_text(name if name.isprintable() else "field name", name)
        check_text(name, value)
        self._count = getattr(self, "_count", 0) + 1
        if self._count > MAX_FIELDS:
            raise BadRequest(f"Too many fields: at most {MAX_FIELDS} are accepted in one request.")
        self._data.setdefault(name, []).append(value)

    def add_file(self, name: str, content: bytes) -> None:
        """A file part: kept as bytes; also a text field when it is text (as before files were
        told apart), so a client sending a text field as a file still reaches it."""
        check_text(name if name.isprintable() else "field name", name)
        self._files[name] = content
        try:
            text = content.decode("utf-8")
        except UnicodeDecodeError:
            return
        if "\x00" not in text:
            self.add(name, text)

    def file(self, name: str) -> bytes | None:
        return self._files.get(name)

    def as_dict(self) -> dict[str, list[str]]:
        return {k: list(v) for k, v in self._data.items()}


def _decode(raw: bytes, where: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(f"{where} is not valid UTF-8") from None


def parse_query(raw_query: bytes, into: Params) -> None:
    for k, v in parse_qsl(_decode(raw_query, "the query string"), keep_blank_values=True):
        into.add(k, v)


FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data", "application/json", "")


def is_form(content_type: str) -> bool:
    """Whether a body of this type carries form fields (others, e.g. an upload, are raw)."""
    return content_type.split(";", 1)[0].strip().lower() in FORM_TYPES


def parse_body(content_type: str, body: bytes, into: Params, limit: int = MAX_FORM_BODY) -> None:
    """Add the form fields of `body` to `into`; the size (at most `limit`: a handler taking
    files inline may allow more than MAX_FORM_BODY) and field count are checked before any
    parsing (byte counts run at C speed), so a hostile body costs almost nothing."""
    if not body.strip():
        return
    ctype = content_type.split(";", 1)[0].strip().lower()
    if ctype in FORM_TYPES:
        if len(body) > limit:
            raise PayloadTooLarge(f"The form is over {limit} bytes.")
        separator = b"&" if ctype != "multipart/form-data" else _boundary(content_type)
        if separator and body.count(separator) > MAX_FIELDS + 1:
            raise BadRequest(f"Too many fields: at most {MAX_FIELDS} are accepted in one request.")
    if ctype == "application/x-www-form-urlencoded" or not ctype:
        parse_query(body, into)
    elif ctype == "multipart/form-data":
        _parse_multipart(content_type, body, into)
    elif ctype == "application/json":
        _parse_json(body, into)
    # Other types carry no form fields (e.g. a raw upload); ignore them.


def _boundary(content_type: str) -> bytes | None:
    m = re.search(r'boundary="?([^";]+)"?', content_type, re.IGNORECASE)
    return ("--" + m.group(1)).encode("latin-1", "replace") if m else None


_PART_NAME = re.compile(r'(?:^|;)\s*name\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]+))', re.IGNORECASE)
_TRANSFER_ENCODING = re.compile(rb"^content-transfer-encoding:\s*(\S+)", re.IGNORECASE | re.MULTILINE)
_DISPOSITION = re.compile(rb"^content-disposition:\s*(.*?)\s*$", re.IGNORECASE | re.MULTILINE)
_FILENAME = re.compile(r'(?:^|;)\s*filename\*?\s*=', re.IGNORECASE)


def _parse_multipart(content_type: str, body: bytes, into: Params) -> None:
    """RFC 7578 form data, split by hand in one linear pass (the email package is ~100x slower).

    Parts may be base64 (the maas CLI sends them so); fields repeat; a part without a name
    is ignored; an empty body (libmaas sends one with DELETE) has no fields.
    """
    delimiter = _boundary(content_type)
    if delimiter is None:
        raise BadRequest("malformed multipart body: no boundary in the Content-Type")
    chunks = body.split(delimiter)
    if len(chunks) < 2:
        return
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            break  # the closing delimiter
        head, sep, payload = chunk.partition(b"\r\n\r\n")
        if not sep:
            raise BadRequest("malformed multipart body: a part has no header/body separator")
        disposition = _DISPOSITION.search(head)
        disposition_text = disposition.group(1).decode("utf-8", "replace") if disposition else ""
        m = _PART_NAME.search(disposition_text)
        if m is None:
            continue
        name = m.group(1).replace('\\"', '"') if m.group(1) is not None else m.group(2)
        payload = payload[:-2] if payload.endswith(b"\r\n") else payload
        encoding = _TRANSFER_ENCODING.search(head)
        if encoding and encoding.group(1).lower() == b"base64":
            try:
                payload = base64.b64decode(payload, validate=False)
            except (binascii.Error, ValueError):
                raise BadRequest.field(name, "malformed base64 part") from None
        if _FILENAME.search(disposition_text):
            into.add_file(name, payload)
        else:
            into.add(name, _decode(payload, f"field {name!r}"))


def _parse_json(body: bytes, into: Params) -> None:
    import json

    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as e:  # json's C parser stops deep nesting itself
        raise BadRequest(f"malformed JSON body: {e}") from None
    if not isinstance(data, dict):
        raise BadRequest("a JSON body must be an object")
    for k, v in data.items():
        for item in v if isinstance(v, list) else [v]:
            if isinstance(item, bool):
                item = "true" if item else "false"
            into.add(k, "" if item is None else str(item))


# -- typed field readers: each raises BadRequest naming the field ----------

_NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")
Number = TypeVar("Number", int, float)


class Form:
    """Collects field errors so one 400 reports all of them."""

    def __init__(self, params: Params) -> None:
        self.params = params
        self.errors: dict[str, list[str]] = {}

    def error(self, field: str, message: str) -> None:
        self.errors.setdefault(field, []).append(message)

    def text(self, field: str, *, required: bool = False, max_length: int = 1024) -> str | None:
        value = self.params.get(field)
        if value is None or (required and not value.strip()):
            if required:
                self.error(field, "This field is required.")
            return None
        if len(value) > max_length:
            self.error(field, f"Ensure this value has at most {max_length} characters (it has {len(value)}).")
            return None
        return value

    def integer(self, field: str, *, minimum: int, maximum: int, required: bool = False) -> int | None:
        """A whole number in [minimum, maximum] (ASCII digits, at most a few dozen characters)."""
        raw = self._present(field, required)
        return None if raw is None else self._read(field, read_integer, raw, minimum, maximum)

    def number(self, field: str, *, minimum: float, maximum: float, required: bool = False) -> float | None:
        """A finite decimal number in [minimum, maximum]: never inf, nan or 1e400."""
        raw = self._present(field, required)
        return None if raw is None else self._read(field, read_number, raw, minimum, maximum)

    def numbers(self, field: str, *, minimum: float, maximum: float) -> list[float]:
        """Every non-empty value of a repeated field, each read as `number` reads one."""
        found = [self._read(field, read_number, raw, minimum, maximum)
                 for raw in self.params.getlist(field) if raw.strip()]
        return [v for v in found if v is not None]

    def _present(self, field: str, required: bool) -> str | None:
        raw = self.params.get(field)
        if raw is None or not raw.strip():
            if required:
                self.error(field, "This field is required.")
            return None
        return raw

    def _read(self, field: str, reader: Callable[..., Number], raw: str, minimum: Number,
              maximum: Number) -> Number | None:
        try:
            return reader(raw, minimum=minimum, maximum=maximum)
        except NumberError as e:
            self.error(field, str(e))
            return None

    def name(self, field: str = "name", *, required: bool = False) -> str | None:
        value = self.text(field, required=required, max_length=256)
        if value is not None and not _NAME_RE.match(value):
            self.error(field, "Enter a valid name: letters, digits, '-' and '_' only.")
            return None
        return value

    def check(self) -> None:
        if self.errors:
            raise BadRequest(self.errors)
