"""A stand-in for the maas CLI's request building, written from its observed behaviour.

What the real CLI does (see /work/shared/spec/clients.md §2) and this reproduces:

- `login`: a signed `GET users/?op=whoami` (401: "The MAAS server rejected
  your API key."), then an unsigned `GET describe/` whose Content-Type must be
  exactly `application/json`.
- Commands come from the describe document: `VmHostHandler` -> `vm-host`,
  action `add_tag` -> `add-tag`; auth actions first, then anon ones, the first
  of each name wins.  Positionals fill the handler's `params`; `key=value`
  arguments are accepted only when the action doc's body has `:param`.
- The URL is the profile URL's scheme and host plus the handler's `path`
  (not its `uri`), with `?op=` for operations.  GET and DELETE put data in
  the query; POST and PUT send multipart with base64 parts when there is
  data, otherwise no body and `Content-Length: 0`.
- Signing is OAuth PLAINTEXT without a realm.  Every reply must carry a
  Content-Type (the CLI calls `.endswith` on it), 204s included.
"""

from __future__ import annotations

import email.policy
import http.client
import json
import re
import urllib.parse
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

import attrs
from oauthlib import oauth1


class CliError(Exception):
    pass


@attrs.frozen
class CliReply:
    method: str
    url: str
    status: int
    content_type: str
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


def api_url(url: str) -> str:
    url = url if url.endswith("/") else url + "/"
    return url if re.search(r"/api/\d+\.\d+/$", urllib.parse.urlsplit(url).path) else url + "api/2.0/"


def handler_command_name(name: str) -> str:
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "-", name).lower()
    return words.removesuffix("-handler").removesuffix("handler")


def allows_key_value_arguments(doc: str | None) -> bool:
    body = (doc or "").split("\n\n", 1)[1] if "\n\n" in (doc or "") else ""
    return ":param" in body


def encode_multipart(fields: list[tuple[str, str]]) -> tuple[bytes, dict[str, str]]:
    message = MIMEMultipart("form-data")
    for name, value in fields:
        part = MIMEText(value, "plain", "utf-8")  # utf-8 text parts are base64-encoded
        part.add_header("Content-Disposition", "form-data", name=name)
        message.attach(part)
    raw = message.as_bytes(policy=email.policy.HTTP)
    _, body = raw.split(b"\r\n\r\n", 1)
    return body, {"Content-Type": message["Content-Type"], "MIME-Version": "1.0"}


def _sign(apikey: str, url: str) -> str:
    consumer, token, secret = apikey.split(":")
    client = oauth1.Client(consumer, client_secret="", resource_owner_key=token, resource_owner_secret=secret,
                           signature_method=oauth1.SIGNATURE_PLAINTEXT)
    return client.sign(url)[1]["Authorization"]


def _send(method: str, url: str, apikey: str | None, body: bytes | None = None,
          headers: dict[str, str] | None = None) -> CliReply:
    parts = urllib.parse.urlsplit(url)
    headers = dict(headers or {})
    if apikey:
        headers["Authorization"] = _sign(apikey, url)
    if body is None and method in ("POST", "PUT"):
        headers["Content-Length"] = "0"
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=300)
    try:
        conn.request(method, parts.path + (f"?{parts.query}" if parts.query else ""), body=body, headers=headers)
        r = conn.getresponse()
        reply_headers = {k.lower(): v for k, v in r.getheaders()}
        content_type = reply_headers.get("content-type")
        if content_type is None:
            raise CliError("'NoneType' object has no attribute 'endswith'")  # what the real CLI dies with
        return CliReply(method, url, r.status, content_type, reply_headers, r.read())
    finally:
        conn.close()


@attrs.define
class Profile:
    url: str  # …/MAAS/api/2.0/
    apikey: str
    description: dict

    @classmethod
    def login(cls, url: str, apikey: str) -> "Profile":
        url = api_url(url)
        check = _send("GET", url + "users/?op=whoami", apikey)
        if check.status == 401:
            raise CliError("The MAAS server rejected your API key.")
        if check.status != 200:
            raise CliError(f"The MAAS server gave an unexpected response: {check.status}")
        described = _send("GET", url + "describe/", None)
        if described.status != 200:
            raise CliError(f"{described.status}: {described.body!r}")
        if described.content_type != "application/json":
            raise CliError(f"Expected application/json, got: {described.content_type}")
        return cls(url, apikey, described.json())

    def commands(self) -> dict[str, dict[str, tuple[dict, dict]]]:
        found: dict[str, dict[str, tuple[dict, dict]]] = {}
        for resource in self.description["resources"]:
            handler = resource["auth"] or resource["anon"]
            actions = found.setdefault(handler_command_name(resource["name"]), {})
            for source in (resource["auth"], resource["anon"]):
                for action in (source or {}).get("actions", []):
                    actions.setdefault(action["name"].replace("_", "-"), (handler, action))
        return found

    def run(self, handler_command: str, action_command: str, *args: str) -> CliReply:
        handler, action = self.commands()[handler_command][action_command]
        params = handler["params"]
        if len(args) < len(params):
            raise CliError(f"the following arguments are required: {', '.join(params[len(args):])}")
        positionals, rest = args[:len(params)], args[len(params):]
        if rest and not allows_key_value_arguments(action["doc"]):
            raise CliError(f"unrecognized arguments: {' '.join(rest)}")
        data = [tuple(arg.split("=", 1)) for arg in rest]
        split = urllib.parse.urlsplit(self.url)
        url = f"{split.scheme}://{split.netloc}" + handler["path"].format(**dict(zip(params, positionals)))
        query = [("op", action["op"])] if action["op"] else []
        body = headers = None
        if action["method"] in ("GET", "DELETE"):
            query += data
        elif data:
            body, headers = encode_multipart(data)
        if query:
            url += "?" + urllib.parse.urlencode(query)
        return _send(action["method"], url, self.apikey, body, headers)
