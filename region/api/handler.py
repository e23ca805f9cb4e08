"""Declarative API handlers, MAAS style.

A handler is a class with a `path` pattern and methods marked with
`@restful(HTTP_METHOD)` (MAAS's read/create/update/delete) or
`@operation(HTTP_METHOD, "name")` (selected with `?op=name`).  The same
declarations drive dispatch here and, later, the `describe/` document.
"""

from __future__ import annotations

import re
from typing import Any, Awaitable, Callable

import attrs

from region.api.params import Params
from region.services.context import Context

ACTION_ATTR = "_vmyard_action"


@attrs.frozen
class Action:
    method: str  # GET, POST, PUT, DELETE
    op: str | None  # None for the restful CRUD action
    anonymous: bool
    admin_only: bool
    func_name: str
    doc: str

    @property
    def name(self) -> str:
        if self.op is not None:
            return self.op
        return {"GET": "read", "POST": "create", "PUT": "update", "DELETE": "delete"}[self.method]


def _mark(method: str, op: str | None, anonymous: bool, admin_only: bool):
    def decorate(func: Callable[..., Awaitable[Any]]):
        setattr(func, ACTION_ATTR, (method, op, anonymous, admin_only))
        return func

    return decorate


def restful(method: str, *, anonymous: bool = False, admin_only: bool = False):
    return _mark(method, None, anonymous, admin_only)


def operation(method: str, op: str, *, anonymous: bool = False, admin_only: bool = False):
    return _mark(method, op, anonymous, admin_only)


@attrs.define
class Call:
    """Everything a handler method gets about one request."""

    region: Any  # region.app.Region
    user: Any  # region.db.users.User | None
    params: Params
    path_args: dict[str, str]
    host: str  # the Host header, for absolute URIs
    scheme: str
    client: str = ""  # the peer's IP address
    body: Any = None  # the request's body file: raw uploads read it in a thread, never whole
    declared_length: str | None = None  # the Content-Length header (None: chunked or absent)

    def absolute(self, path: str) -> str:
        return f"{self.scheme}://{self.host}{path}"

    @property
    def ctx(self) -> Context:
        """The service context for this request: the region and the authenticated user."""
        return Context(self.region, self.user)


_ACTIONS: dict[type, tuple[Action, ...]] = {}  # by handler class


class Handler:
    """Base class: subclasses set `path` (relative to the API root) and actions."""

    path: str = ""
    doc: str = ""

    def __init__(self, region) -> None:
        self.region = region

    @classmethod
    def actions(cls) -> tuple[Action, ...]:
        """The class's actions, by name; found once per class (every request asks, and scanning the
        class's attributes cost ~60 µs a time)."""
        found = _ACTIONS.get(cls)
        if found is None:
            found = _ACTIONS[cls] = cls._find_actions()
        return found

    @classmethod
    def _find_actions(cls) -> tuple[Action, ...]:
        found = []
        for attr in dir(cls):
            func = getattr(cls, attr)
            marked = getattr(func, ACTION_ATTR, None)
            if marked:
                method, op, anonymous, admin_only = marked
                found.append(Action(method, op, anonymous, admin_only, attr, (func.__doc__ or "").strip()))
        return tuple(sorted(found, key=lambda a: a.name))

    @classmethod
    def pattern(cls) -> re.Pattern[str]:
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", cls.path)
        return re.compile("^" + regex + "$")

    @classmethod
    def params(cls) -> list[str]:
        return re.findall(r"\{(\w+)\}", cls.path)

    def has_method(self, method: str) -> bool:
        """Whether any action (with or without an op) answers this HTTP method."""
        method = "GET" if method == "HEAD" else method
        return any(a.method == method for a in self.actions())

    def has_anonymous_action(self, method: str) -> bool:
        """Whether any action for this HTTP method may run without credentials."""
        method = "GET" if method == "HEAD" else method
        return any(a.anonymous and a.method == method for a in self.actions())

    def find_action(self, method: str, op: str | None) -> Action | None:
        if method == "HEAD":
            method = "GET"
        for action in self.actions():
            if action.method == method and action.op == op:
                return action
        return None
