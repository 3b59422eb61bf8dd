"""Every difference between PostgreSQL and SQLite, behind one backend object per vendor.

``backend()`` picks it once from the default connection's vendor; the rest of the store
asks it instead of branching on the vendor. ``base`` says what a backend does;
``postgres`` and ``sqlite`` do it.
"""

from __future__ import annotations

import functools

from django.core.exceptions import ImproperlyConfigured
from django.db import connection

from .base import GUARD, ROWS_PER_STATEMENT, Backend, Load, Triggers, VersionMismatch
from .postgres import APPEND_CHANNEL, PostgresBackend
from .sqlite import SqliteBackend

__all__ = [
    "APPEND_CHANNEL",
    "GUARD",
    "ROWS_PER_STATEMENT",
    "Backend",
    "Load",
    "PostgresBackend",
    "SqliteBackend",
    "Triggers",
    "VersionMismatch",
    "backend",
]


@functools.cache
def backend() -> Backend:
    """The backend of the default connection's vendor (which never changes in a process).

    Raises:
        ImproperlyConfigured: the database is neither PostgreSQL nor SQLite (the store's
            migrations refuse those too).
    """
    vendor = connection.vendor
    if vendor == PostgresBackend.vendor:
        return PostgresBackend()
    if vendor == SqliteBackend.vendor:
        return SqliteBackend()
    raise ImproperlyConfigured(f"the event store runs on PostgreSQL or SQLite, not {vendor}")
