"""Lookups of what a request names, shared by every service that takes a zone or pool."""

from __future__ import annotations

from region.db import named
from region.db.named import NamedKind, NamedObject
from region.services.errors import FieldError, NotFound

CHOICE = "Select a valid choice. That choice is not one of the available choices."


def named_choice_thd(cur, kind: NamedKind, field: str, key: str | int | None, *,
                     echo_value: bool = False) -> NamedObject:
    """The zone or resource pool `key` (id or name) chosen in `field`; None: the default one.

    An unknown key is a FieldError with Django's choice message; `echo_value` names the
    value in it instead ("Select a valid choice. <value> is not ..."), as compose does.
    """
    if key is None:
        return named.get_default_thd(cur, kind)
    try:
        return named.get_thd(cur, kind, key)
    except NotFound:
        message = f"Select a valid choice. {key} is not one of the available choices." if echo_value else CHOICE
        raise FieldError(field, message) from None
