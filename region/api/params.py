"""Request parameters as MAAS clients send them.

Query string plus body, where the body is `application/x-www-form-urlencoded`
(gomaasapi: Terraform, Juju) or `multipart/form-data` with base64 parts and
repeated fields (python-libmaas, the maas CLI).  Twisted only parses POST
bodies and keeps one value of a repeated multipart field on older versions,
so we parse every body ourselves.
"""

from __future__ import annotations

import re
from email.parser import BytesParser
from email.policy import HTTP
from urllib.parse import parse_qsl

from region.api.errors import BadRequest

MAX_BODY = 16 * 1024 * 1024


class Params:
    """A read-only multi-dict of str -> [str]."""

    def __init__(self, data: dict[str, list[str]] | None = None) -> None:
        self._data: dict[str, list[str]] = data or {}

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
        self._data.setdefault(name, []).append(value)

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


def parse_body(content_type: str, body: bytes, into: Params) -> None:
    if not body.strip():
        return
    ctype = content_type.split(";", 1)[0].strip().lower()
    if ctype == "application/x-www-form-urlencoded" or not ctype:
        parse_query(body, into)
    elif ctype == "multipart/form-data":
        _parse_multipart(content_type, body, into)
    elif ctype == "application/json":
        _parse_json(body, into)
    # Other types carry no form fields (e.g. a raw upload); ignore them.


def _parse_multipart(content_type: str, body: bytes, into: Params) -> None:
    head = b"MIME-Version: 1.0\r\nContent-Type: " + content_type.encode("latin-1") + b"\r\n\r\n"
    try:
        message = BytesParser(policy=HTTP).parsebytes(head + body)
    except Exception as e:  # the email package raises many kinds
        raise BadRequest(f"malformed multipart body: {e}") from None
    if not message.is_multipart():
        return  # an empty multipart body (libmaas sends one with DELETE) has no fields
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not name:
            continue
        payload = part.get_payload(decode=True) or b""
        into.add(str(name), _decode(payload, f"field {name!r}"))


def _parse_json(body: bytes, into: Params) -> None:
    import json

    try:
        data = json.loads(body)
    except ValueError as e:
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

    def name(self, field: str = "name", *, required: bool = False) -> str | None:
        value = self.text(field, required=required, max_length=256)
        if value is not None and not _NAME_RE.match(value):
            self.error(field, "Enter a valid name: letters, digits, '-' and '_' only.")
            return None
        return value

    def check(self) -> None:
        if self.errors:
            raise BadRequest(self.errors)
