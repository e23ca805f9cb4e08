"""The HTTP session of an LXD client: requests' own, minus per-request work LXD never needs.

`requests.Session.request` merges cookie jars, environment and proxy settings and hooks into
every request and runs its redirect machinery on every answer; an LXD client authenticated by
its TLS certificate uses none of them.  On this 2-core machine that work costs ~0.5-1 ms of
CPU per request (a compose and a delete make five), next to LXD's own 2-12 ms.  A plain API
request (params, json or bytes, headers, timeout) therefore goes straight to the session's
adapter, through the same pinned connection pool, with the session's headers, verify and cert,
and comes back as the same `requests.Response`; requests' own errors are raised as before.
Anything else (streams, a session with cookies, hooks, proxies, auth or an environment to
read) takes requests' own path, and so does a redirect, which that path then follows.
"""

from __future__ import annotations

from typing import Any

import requests
from requests.cookies import extract_cookies_to_jar
from requests.structures import CaseInsensitiveDict

_PLAIN_ARGS = frozenset({"params", "json", "data", "headers", "timeout", "allow_redirects"})


class LXDSession(requests.Session):
    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if not self._plain(kwargs):
            return super().request(method, url, **kwargs)
        headers = CaseInsensitiveDict(self.headers)
        headers.update(kwargs.get("headers") or {})
        prepared = requests.PreparedRequest()
        prepared.prepare(method=method.upper(), url=url, params=kwargs.get("params"), json=kwargs.get("json"),
                         data=kwargs.get("data"),
                         headers={k: v for k, v in headers.items() if v is not None})
        response = self.get_adapter(url).send(prepared, timeout=kwargs.get("timeout"), verify=self.verify,
                                              cert=self.cert)
        if response.is_redirect and kwargs.get("allow_redirects", True):
            response.close()
            return super().request(method, url, **kwargs)
        if "set-cookie" in response.headers:
            extract_cookies_to_jar(self.cookies, prepared, response.raw)
        response.content  # noqa: B018 (read now, as requests does when not streaming)
        return response

    def _plain(self, kwargs: dict[str, Any]) -> bool:
        data = kwargs.get("data")
        return (kwargs.keys() <= _PLAIN_ARGS and isinstance(data, (bytes, type(None)))
                and not (self.trust_env or self.cookies or self.proxies or self.auth or self.params
                         or any(self.hooks.values()) or self.stream))
