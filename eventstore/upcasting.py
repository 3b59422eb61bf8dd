"""Upcasters turn an old schema version's payload into the current one on read.

Stored rows stay as written; an upcaster is registered per (event type, from version) and
maps version ``n`` to ``n + 1``. Reading applies them in a chain up to the newest.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Payload = dict[str, Any]
Upcaster = Callable[[Payload], Payload]

_UPCASTERS: dict[tuple[str, int], Upcaster] = {}


def register_upcaster(event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
    """Register a function that upcasts ``event_type`` from ``from_version`` to the next.

    Args:
        event_type: the stored event type, e.g. ``MoneyDeposited``.
        from_version: the schema version the function accepts; it returns the payload of
            ``from_version + 1``.

    Raises:
        ValueError: an upcaster for that type and version is already registered.
    """

    def decorator(function: Upcaster) -> Upcaster:
        key = (event_type, from_version)
        if key in _UPCASTERS and _UPCASTERS[key] is not function:
            raise ValueError(f"an upcaster for {event_type} v{from_version} is already registered")
        _UPCASTERS[key] = function
        return function

    return decorator


def unregister_upcaster(event_type: str, from_version: int) -> None:
    """Remove a registered upcaster (for tests)."""
    _UPCASTERS.pop((event_type, from_version), None)


def has_upcasters() -> bool:
    """Whether any upcaster is registered (reads skip the lookup when none is)."""
    return bool(_UPCASTERS)


def needs_upcast(event_type: str, schema_version: int) -> bool:
    """Whether a stored event of this type and schema version has an upcaster to run."""
    return (event_type, schema_version) in _UPCASTERS


def upcast(event_type: str, schema_version: int, data: Payload) -> tuple[int, Payload]:
    """Return the newest schema version and payload reachable from the stored one."""
    if not _UPCASTERS:
        return schema_version, data
    while (function := _UPCASTERS.get((event_type, schema_version))) is not None:
        data = function(data)
        schema_version += 1
    return schema_version, data
