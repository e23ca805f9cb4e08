"""The HTTP session of an LXD client: requests' own, minus per-request work LXD never needs.

`requests.Session.request` merges cookie jars, environment and proxy settings and hooks into
every request and runs its redirect machinery on every answer; an LXD client authenticated by
its TLS certificate uses none of them, and urllib3's pool adds its own bookkeeping around each
exchange.  On this 2-core machine that costs ~0.9 ms of CPU per request (a compose and a delete
make five), next to LXD's own 2-12 ms.  A plain API request (params, json or bytes, headers,
timeout) is therefore prepared as requests prepares it, with the session's headers, and sent
over a connection the session keeps per host (lxd_http.KeptConnection), built from the mounted
PinnedAdapter's TLS context and pin; it comes back as the same `requests.Response`, and
requests' own errors are raised as before.  While that connection is busy, or when the adapter
is not a PinnedAdapter (or verify/cert ask for more), the request goes to the session's adapter
instead.  Anything else (streams, a session with cookies, hooks, proxies, auth or an environment
to read) takes requests' own path, and so does a redirect, which that path then follows.
"""

from __future__ import annotations

import functools
import re
import threading
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.cookies import extract_cookies_to_jar
from requests.structures import CaseInsensitiveDict

from rack.drivers.lxd_http import KeptConnection
from rack.drivers.lxd_tls import PinnedAdapter

_PLAIN_ARGS = frozenset({"params", "json", "data", "headers", "timeout", "allow_redirects"})


class LXDSession(requests.Session):
    def __init__(self) -> None:
        super().__init__()
        self._kept: dict[tuple[str, int], KeptConnection] = {}
        self._kept_guard = threading.Lock()

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if not self._plain(kwargs):
            return super().request(method, url, **kwargs)
        prepared = self._prepared(method, url, kwargs)
        adapter = self.get_adapter(prepared.url)
        kept = self._kept_for(prepared.url, adapter)
        if kept is not None and kept.lock.acquire(blocking=False):
            try:
                response = kept.send(prepared, kwargs.get("timeout"))
            finally:
                kept.lock.release()
        else:
            response = adapter.send(prepared, timeout=kwargs.get("timeout"), verify=self.verify, cert=self.cert)
        if response.is_redirect and kwargs.get("allow_redirects", True):
            response.close()
            return super().request(method, url, **kwargs)
        if "set-cookie" in response.headers:
            extract_cookies_to_jar(self.cookies, prepared, response.raw)
        response.content  # noqa: B018 (read now, as requests does when not streaming)
        return response

    def close(self) -> None:
        with self._kept_guard:
            kept, self._kept = list(self._kept.values()), {}
        for connection in kept:
            connection.close()
        super().close()

    def _prepared(self, method: str, url: str, kwargs: dict[str, Any]) -> requests.PreparedRequest:
        params = kwargs.get("params")
        key = _params_key(params)
        if key is None or type(url) is not str:
            merged = CaseInsensitiveDict(self.headers)
            merged.update(kwargs.get("headers") or {})
            prepared = requests.PreparedRequest()
            prepared.prepare(method=method.upper(), url=url, params=params, json=kwargs.get("json"),
                             data=kwargs.get("data"), headers={k: v for k, v in merged.items() if v is not None})
            return prepared
        # PreparedRequest.prepare's own steps, with what they would compute the same way every
        # time (the URL, ~0.1 ms; the checked headers) remembered, and none for cookies (a plain
        # session has none), hooks, or credentials in a URL that cannot hold any.
        prepared = requests.PreparedRequest()
        prepared.prepare_method(method.upper())
        prepared.url = _prepared_url(url, key)
        extra = kwargs.get("headers")
        prepared.headers = _checked_headers(tuple(self.headers.items()),
                                            tuple(extra.items()) if extra else ()).copy()
        prepared.prepare_body(kwargs.get("data"), None, kwargs.get("json"))
        if "@" in prepared.url:
            prepared.prepare_auth(None)
        return prepared

    def _kept_for(self, url: str, adapter: requests.adapters.BaseAdapter) -> KeptConnection | None:
        """The session's connection to the URL's host, when the request may take it."""
        if not isinstance(adapter, PinnedAdapter) or self.verify is not False or self.cert is not None:
            return None
        origin = _ORIGIN.match(url)
        key = _https_host_port(origin.group() if origin else url)
        if key is None:
            return None
        kept = self._kept.get(key)
        if kept is None or kept.adapter is not adapter:
            with self._kept_guard:
                kept = self._kept.get(key)
                if kept is None or kept.adapter is not adapter:
                    if kept is not None:
                        kept.close()  # the adapter was replaced: its TLS context and pin with it
                    kept = self._kept[key] = KeptConnection(key[0], key[1], adapter)
        return kept

    def _plain(self, kwargs: dict[str, Any]) -> bool:
        data, timeout = kwargs.get("data"), kwargs.get("timeout")
        return (kwargs.keys() <= _PLAIN_ARGS and isinstance(data, (bytes, type(None)))
                and isinstance(timeout, (int, float, tuple, type(None)))
                and not (self.trust_env or self.cookies or self.proxies or self.auth or self.params
                         or any(self.hooks.values()) or self.stream))


def _params_key(params: object) -> tuple[tuple[str, str | int], ...] | None:
    """`params` as a cache key when it is None or a dict of str to str or int (what pylxd sends);
    typed exactly, so that 1, 1.0 and True, which hash alike but print apart, never share a URL."""
    if params is None:
        return ()
    if type(params) is dict and all(type(k) is str and type(v) in (str, int) for k, v in params.items()):
        return tuple(params.items())
    return None


# An absolute http(s) URL whose every character requests' URL preparation leaves as it is (no
# user info, query, fragment or percent sign; unreserved characters in the path, no "." or ".."
# segment), as pylxd builds LXD's (`/1.0/operations/<uuid>/wait` is a new URL for every operation).
_PLAIN_URL = re.compile(r"(https?://[A-Za-z0-9.\-]+(?::[0-9]+)?|https?://\[[0-9A-Fa-f:.]+\](?::[0-9]+)?)"
                        r"(/[A-Za-z0-9._~/\-]*)")


def _prepared_url(url: str, params: tuple[tuple[str, str | int], ...]) -> str:
    """requests' prepared form of the URL with these parameters: for a plain URL on an origin
    requests writes unchanged, the URL itself and the parameters' query string (each worked out
    by requests once); otherwise requests' own preparation (remembered per URL)."""
    plain = _PLAIN_URL.fullmatch(url)
    if plain is None or not _origin_kept(plain.group(1)) or _has_dot_segment(plain.group(2)):
        return _requests_url(url, params)
    query = _query(params)
    return f"{url}?{query}" if query else url


def _has_dot_segment(path: str) -> bool:
    """A "." or ".." segment, which requests (urllib3) resolves away."""
    return "/." in path and any(segment in (".", "..") for segment in path.split("/"))


@functools.lru_cache(maxsize=256)
def _requests_url(url: str, params: tuple[tuple[str, str | int], ...]) -> str:
    prepared = requests.PreparedRequest()
    prepared.prepare_url(url, list(params))
    return prepared.url


@functools.lru_cache(maxsize=64)
def _origin_kept(origin: str) -> bool:
    """Whether requests writes "<origin>/" as it is (it would lower-case a host name, say)."""
    return _requests_url(origin + "/", ()) == origin + "/"


@functools.lru_cache(maxsize=256)
def _query(params: tuple[tuple[str, str | int], ...]) -> str:
    return _requests_url("http://localhost/", params).partition("?")[2]


_ORIGIN = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^/?#]*")  # scheme://netloc, as urlsplit splits it


@functools.lru_cache(maxsize=256)
def _https_host_port(url: str) -> tuple[str, int] | None:
    """(host, port) of an https URL or origin (remembered per origin), None for another scheme."""
    parts = urlsplit(url)
    if parts.scheme != "https":
        return None
    return parts.hostname or "", parts.port or 443


@functools.lru_cache(maxsize=64)
def _checked_headers(session: tuple[tuple[str, Any], ...], extra: tuple[tuple[str, Any], ...]
                     ) -> CaseInsensitiveDict[Any]:
    """The session's headers with the request's over them, None dropped, as requests checks and
    keeps them (the caller copies the result: preparing a body adds headers)."""
    merged = CaseInsensitiveDict(dict(session))
    merged.update(dict(extra))
    prepared = requests.PreparedRequest()
    prepared.prepare_headers({k: v for k, v in merged.items() if v is not None})
    return prepared.headers
