"""The region's domain layer: one module per resource.

A service function takes a `Context` (the region's resources and who is acting) and typed
inputs (attrs values, already parsed by the HTTP handler), owns its transaction(s) and the
audit events they record, applies the domain rules, and returns typed results (db rows or
attrs values), never JSON.  It raises the errors in `errors.py`, which the HTTP layer maps
to status codes.

Allowed imports (checked by tests/test_layers.py):
    region/api      -> region/services, region/db (row types only), pure modules
    region/services -> region/db, pure modules (region/placement, region/netconstraints),
                       common/, region/vmhosts (rack calls), region/rpc
    region/db       -> nothing of the region but region/db and the secret box
A service never imports region/api; region never imports rack/.
"""
