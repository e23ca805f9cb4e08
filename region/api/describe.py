"""describe/: the API description python-libmaas and the maas CLI bind to.

The document is built from the handler declarations (`path`, `@restful`,
`@operation`, docstrings), in the shape MAAS serves:

    {"doc": "MAAS API", "hash": <sha1>, "resources": [{"name", "anon", "auth"}, ...],
     "handlers": [<the anon handlers>, <the auth handlers>]}

Each handler is `{name, doc, params, path, uri, actions}` and each action
`{name, method, op, restful, doc}`.  Handlers whose actions are all anonymous
are described as `anon` only, those with none as `auth` only; a handler with
both gets an `Anon<Name>` entry holding just the anonymous actions.

python-libmaas 0.6.8 sends every call to the handler's absolute `uri`, so it
is built from the request's Host header; the hash leaves it out, so it is
the same for every request and every region running the same code.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json

from region.api.handler import Action, Call, Handler, restful
from region.api.site import API_PREFIX


def _action_json(action: Action) -> dict:
    return {"name": action.name, "method": action.method, "op": action.op,
            "restful": action.op is None, "doc": inspect.cleandoc(action.doc) or None}


def _handler_doc(cls: type[Handler]) -> str:
    return inspect.cleandoc(cls.doc or cls.__dict__.get("__doc__") or cls.__name__)


def _handler_json(cls: type[Handler], name: str, actions: list[Action]) -> dict:
    return {"name": name, "doc": _handler_doc(cls), "params": cls.params(), "path": API_PREFIX + cls.path,
            "actions": [_action_json(a) for a in sorted(actions, key=lambda a: a.name)]}


def _resource_json(cls: type[Handler]) -> dict | None:
    actions = cls.actions()
    if not actions:
        return None
    anonymous = [a for a in actions if a.anonymous]
    name = cls.__name__
    if len(anonymous) == len(actions):
        return {"name": name, "anon": _handler_json(cls, name, actions), "auth": None}
    anon = _handler_json(cls, "Anon" + name, anonymous) if anonymous else None
    return {"name": name, "anon": anon, "auth": _handler_json(cls, name, actions)}


def describe_hash(document: dict) -> str:
    """sha1 of the canonical JSON of the document without its request-specific `uri`s."""
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha1(canonical.encode("ascii")).hexdigest()


@functools.lru_cache(maxsize=8)
def describe_skeleton(handlers: tuple[type[Handler], ...]) -> dict:
    """The document without `uri`s, with its hash (computed once per handler list)."""
    described = [h for h in handlers if not getattr(h, "hidden_from_describe", False)]
    resources = [r for r in map(_resource_json, described) if r is not None]
    resources.sort(key=lambda r: r["name"])
    document = {
        "doc": "MAAS API",
        "resources": resources,
        "handlers": [r["anon"] for r in resources if r["anon"]] + [r["auth"] for r in resources if r["auth"]],
    }
    return {**document, "hash": describe_hash(document)}


def with_uris(skeleton: dict, base: str) -> dict:
    """A copy of the document whose handlers carry `uri` = `base` + `path`."""
    def handler(h: dict | None) -> dict | None:
        return None if h is None else {**h, "uri": base + h["path"]}

    return {
        "doc": skeleton["doc"],
        "hash": skeleton["hash"],
        "resources": [{**r, "anon": handler(r["anon"]), "auth": handler(r["auth"])} for r in skeleton["resources"]],
        "handlers": [handler(h) for h in skeleton["handlers"]],
    }


def api_handlers() -> tuple[type[Handler], ...]:
    from region.api import API_HANDLERS  # region.api imports this module first

    return tuple(API_HANDLERS)


class DescribeHandler(Handler):
    """The description of this API (for python-libmaas and the maas CLI)."""

    path = "describe/"
    hidden_from_describe = True  # as in MAAS, describe/ does not describe itself

    @restful("GET", anonymous=True)
    async def read(self, call: Call):
        """The API description: handlers, their actions and absolute URIs."""
        return with_uris(describe_skeleton(api_handlers()), call.absolute(""))
