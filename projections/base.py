"""A small projection framework: a projection handles batches of events in global order.

A runner (``projections.runner``) reads the global order after a projection's checkpoint
in batches and, in one transaction, applies a batch's read-model writes and moves the
checkpoint: a crash at any point neither skips nor double-applies an event. Handlers are
idempotent on their own too: each read-model row remembers the (stream, version) it has
reached, so an event it has seen is passed over.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

from django.db import connection, models

from eventstore import RecordedEvent


class ProjectionError(Exception):
    """A projection cannot apply an event; the batch rolled back, the checkpoint stayed."""

    code = "projection_failed"


class Projection(ABC):
    """Base of the projections: a name, the tables it owns, and a batch handler."""

    name: ClassVar[str]
    models: ClassVar[tuple[type[models.Model], ...]]

    @abstractmethod
    def handle(self, events: Sequence[RecordedEvent]) -> None:
        """Apply a batch of events (global order, whole appends) to the read models."""

    def reset(self) -> None:
        """Empty the read models (a rebuild then replays everything into them)."""
        for model in self.models:
            model._default_manager.all().delete()


def insert_rows(
    model: type[models.Model], columns: Sequence[str], rows: Sequence[Sequence[object]]
) -> None:
    """Insert many rows into a read-model table: COPY on PostgreSQL, batched INSERTs else.

    Rebuilds write hundreds of thousands of rows; building a model instance for each is
    most of their cost, so rows are plain tuples in ``columns`` order.
    """
    if not rows:
        return
    if connection.vendor == "postgresql":
        statement = f"COPY {model._meta.db_table} ({', '.join(columns)}) FROM STDIN"
        with connection.cursor() as cursor, cursor.cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)
    else:
        model._default_manager.bulk_create(
            [model(**dict(zip(columns, row, strict=True))) for row in rows], batch_size=500
        )
