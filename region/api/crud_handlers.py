"""Table-driven collection and item handlers: parse -> one `region.services.crud` call -> render.

A resource subclasses `CrudCollection` (GET lists, POST creates) and `CrudItem` (GET, PUT,
DELETE one), setting its `Table`, how to read the request (`spec`, `changes`, `key`,
`filters`) and how to render one result.  The actions are written once, here; `docs`
gives each its docstring for the resource (the describe/ document and the maas CLI read
them).
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar

from region.api.handler import ACTION_ATTR, Call, Handler, restful
from region.api.site import Response
from region.services import crud
from region.services.crud import Table


def _documented(action: Callable, doc: str) -> Callable:
    """`action` under another docstring (the marks that make it an action stay)."""
    async def documented(self, call: Call):
        return await action(self, call)

    documented.__doc__ = doc
    setattr(documented, ACTION_ATTR, getattr(action, ACTION_ATTR))
    return documented


class _TableHandler(Handler):
    table: Table
    render: Callable[[Any], dict]
    docs: ClassVar[dict[str, str]] = {}  # action name -> its docstring for this resource

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        for name, doc in cls.__dict__.get("docs", {}).items():
            setattr(cls, name, _documented(getattr(cls, name), doc))


class CrudCollection(_TableHandler):
    def filters(self, call: Call) -> dict[str, Any]:
        """Keyword arguments of the table's list_thd (e.g. the parent in the path)."""
        return {}

    def spec(self, call: Call) -> Any:
        """The create input, parsed from the request (raises BadRequest naming bad fields)."""
        raise NotImplementedError

    @restful("GET")
    async def read(self, call: Call):
        """List them all."""
        return [self.render(found) for found in await crud.list_all(call.ctx, self.table, **self.filters(call))]

    @restful("POST", admin_only=True)
    async def create(self, call: Call):
        """Create one."""
        return self.render(await crud.create(call.ctx, self.table, self.spec(call)))


class CrudItem(_TableHandler):
    key_arg: str = "id"

    def key(self, call: Call) -> Any:
        """What the table's functions find the row by."""
        return call.path_args[self.key_arg]

    def changes(self, call: Call) -> Any:
        """The update input, parsed from the request (raises BadRequest naming bad fields)."""
        raise NotImplementedError

    @restful("GET")
    async def read(self, call: Call):
        """Read one."""
        return self.render(await crud.get(call.ctx, self.table, self.key(call)))

    @restful("PUT", admin_only=True)
    async def update(self, call: Call):
        """Update one."""
        return self.render(await crud.update(call.ctx, self.table, self.key(call), self.changes(call)))

    @restful("DELETE", admin_only=True)
    async def delete(self, call: Call):
        """Delete one."""
        await crud.delete(call.ctx, self.table, self.key(call))
        return Response(204)
