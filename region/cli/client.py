"""A small synchronous MAAS-API client for the `vmyard` CLI: profiles, OAuth signing."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import attrs
from oauthlib import oauth1

from common.tls import write_private


class ClientError(Exception):
    """Something the user should read; the CLI prints it and exits 1."""


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "vmyard"


def api_url(url: str) -> str:
    """http://h:5240/MAAS/ -> http://h:5240/MAAS/api/2.0/ (as the maas CLI does)."""
    url = url.rstrip("/") + "/"
    if not url.rstrip("/").endswith("/api/2.0"):
        url += "api/2.0/"
    return url


@attrs.frozen
class Profile:
    name: str
    url: str  # the API root, ending in /api/2.0/
    apikey: str = attrs.field(repr=False)

    @property
    def credentials(self) -> tuple[str, str, str]:
        parts = self.apikey.split(":")
        if len(parts) != 3:
            raise ClientError("an API key has the form consumer_key:token_key:token_secret")
        return parts[0], parts[1], parts[2]


class ProfileStore:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path or config_dir() / "profiles.json"

    def _load(self) -> dict[str, Any]:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return {"profiles": {}, "default": None}

    def save(self, profile: Profile) -> None:
        data = self._load()
        data["profiles"][profile.name] = {"url": profile.url, "apikey": profile.apikey}
        data["default"] = profile.name
        write_private(self.path, json.dumps(data, indent=2))

    def remove(self, name: str) -> None:
        data = self._load()
        if data["profiles"].pop(name, None) is None:
            raise ClientError(f"no profile named {name!r}")
        if data["default"] == name:
            data["default"] = next(iter(data["profiles"]), None)
        write_private(self.path, json.dumps(data, indent=2))

    def get(self, name: str | None) -> Profile:
        data = self._load()
        name = name or os.environ.get("VMYARD_PROFILE") or data.get("default")
        if not name or name not in data["profiles"]:
            raise ClientError("not logged in: run `vmyard login PROFILE URL APIKEY` first"
                              if not name else f"no profile named {name!r}; see `vmyard profiles`")
        entry = data["profiles"][name]
        return Profile(name, entry["url"], entry["apikey"])

    def names(self) -> list[str]:
        return sorted(self._load()["profiles"])


@attrs.define
class ApiClient:
    profile: Profile
    timeout: float = 30.0

    def _sign(self, url: str, method: str) -> dict[str, str]:
        consumer, token, secret = self.profile.credentials
        client = oauth1.Client(consumer, client_secret="", resource_owner_key=token,
                               resource_owner_secret=secret, signature_method=oauth1.SIGNATURE_PLAINTEXT,
                               realm="OAuth")
        _, headers, _ = client.sign(url, method)
        return dict(headers)

    def call(self, method: str, path: str, *, op: str | None = None,
             data: dict[str, Any] | None = None, query: dict[str, Any] | None = None,
             raw: bytes | None = None) -> Any:
        query = dict(query or {})
        if op:
            query["op"] = op
        url = self.profile.url + path.lstrip("/")
        if query:
            url += "?" + urllib.parse.urlencode(query, doseq=True)
        body = None
        headers = self._sign(url, method)
        headers["Accept"] = "application/json"
        if data is not None:
            body = urllib.parse.urlencode({k: v for k, v in data.items() if v is not None}, doseq=True).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        if raw is not None:  # e.g. a chunk of an image upload
            body = raw
            headers["Content-Type"] = "application/octet-stream"
        request = urllib.request.Request(url, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
                ctype = response.headers.get("Content-Type", "")
        except urllib.error.HTTPError as e:
            raise ClientError(_describe_http_error(e)) from None
        except urllib.error.URLError as e:
            raise ClientError(f"cannot reach {self.profile.url}: {e.reason}") from None
        if not raw:
            return None
        return json.loads(raw) if ctype.startswith("application/json") else raw.decode()


def _describe_http_error(e: urllib.error.HTTPError) -> str:
    body = e.read().decode(errors="replace").strip()
    if e.code == 401:
        return "the server rejected your API key (401): log in again with a valid key"
    if e.code == 400 and body.startswith("{"):
        try:
            fields = json.loads(body)
            return "; ".join(f"{k}: {' '.join(v)}" for k, v in fields.items())
        except ValueError:
            pass
    return f"{e.code} {e.reason}: {body}" if body else f"{e.code} {e.reason}"
