"""The append-only tables. Rows are written only by ``appending`` and ``snapshots``.

Immutability is enforced twice: here (the ORM refuses every write) and in the database
(triggers installed by migration 0002 refuse UPDATE, DELETE and TRUNCATE, raw SQL too).
"""

from __future__ import annotations

from typing import Any, NoReturn

from django.db import models

from .errors import ImmutableRecordError


class AppendOnlyQuerySet(models.QuerySet[Any]):
    """A QuerySet that can read but never change rows."""

    def _refuse(self, operation: str) -> NoReturn:
        raise ImmutableRecordError(model=self.model.__name__, operation=operation)

    def update(self, **kwargs: Any) -> NoReturn:
        self._refuse("QuerySet.update()")

    def delete(self) -> NoReturn:
        self._refuse("QuerySet.delete()")

    def _raw_delete(self, using: Any) -> NoReturn:
        self._refuse("QuerySet._raw_delete()")

    def bulk_update(self, objs: Any, fields: Any, batch_size: Any = None) -> NoReturn:
        self._refuse("QuerySet.bulk_update()")

    def bulk_create(self, objs: Any, *args: Any, **kwargs: Any) -> NoReturn:
        self._refuse("QuerySet.bulk_create()")

    def update_or_create(self, *args: Any, **kwargs: Any) -> NoReturn:
        self._refuse("QuerySet.update_or_create()")

    def create(self, **kwargs: Any) -> NoReturn:
        self._refuse("QuerySet.create()")

    def get_or_create(self, *args: Any, **kwargs: Any) -> NoReturn:
        self._refuse("QuerySet.get_or_create()")


class AppendOnlyModel(models.Model):
    """Base of the immutable models: ``save()`` and ``delete()`` always refuse."""

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> NoReturn:
        operation = "save() of a new row" if self._state.adding else "save() of a stored row"
        raise ImmutableRecordError(model=type(self).__name__, operation=operation)

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise ImmutableRecordError(model=type(self).__name__, operation="delete()")


class Event(AppendOnlyModel):
    position = models.BigAutoField(primary_key=True)
    event_id = models.UUIDField(unique=True)
    stream_id = models.UUIDField()
    stream_type = models.CharField(max_length=100)
    version = models.PositiveIntegerField()
    event_type = models.CharField(max_length=100)
    schema_version = models.PositiveSmallIntegerField()
    data = models.JSONField()
    metadata = models.JSONField()
    occurred_at = models.DateTimeField()
    recorded_at = models.DateTimeField()
    # All events of one append share a commit id (the store's head position + 1 when the
    # append took the lock), so a reader of the global order never splits an append.
    commit_id = models.BigIntegerField()
    hash = models.CharField(max_length=64)
    # The application's Ed25519 signature (base64) over the stream's head after the append,
    # on the stream's last event of each append (eventstore.signing); NULL on the events
    # before it in the same append (the signed head's chain covers them) and on events
    # written before signing began (SigningEpoch).
    # NULL, not "": "unsigned" is what SQL tests (signature IS NOT NULL), as on the
    # unsigned segment's rows that the migration added the columns to.
    signature = models.CharField(max_length=100, null=True, blank=True)  # noqa: DJ001
    key_id = models.CharField(max_length=40, null=True, blank=True)  # noqa: DJ001

    class Meta:
        db_table = "events"
        ordering = ["position"]
        constraints = [
            models.UniqueConstraint(fields=["stream_id", "version"], name="events_stream_version")
        ]
        # Each index costs every append (it is written under the append lock): only those
        # a query of the product uses; migration 0004 names the query of each.
        indexes = [
            models.Index(fields=["event_type", "position"], name="events_type_position"),
            models.Index(fields=["stream_type", "position"], name="events_stype_position"),
            models.Index(fields=["occurred_at"], name="events_occurred"),
            models.Index(fields=["stream_id", "occurred_at"], name="events_stream_occurred"),
        ]

    def __str__(self) -> str:
        return f"#{self.position} {self.event_type} {self.stream_id} v{self.version}"


class Snapshot(AppendOnlyModel):
    id = models.BigAutoField(primary_key=True)
    stream_id = models.UUIDField()
    stream_type = models.CharField(max_length=100)
    version = models.PositiveIntegerField()
    schema_version = models.PositiveSmallIntegerField()
    state = models.JSONField()
    created_at = models.DateTimeField()
    # The hash of the stream's event at ``version`` (what the state was computed from) and
    # the application's signature over (stream, version, schema version, anchor, state).
    anchor_hash = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001
    signature = models.CharField(max_length=100, null=True, blank=True)  # noqa: DJ001
    key_id = models.CharField(max_length=40, null=True, blank=True)  # noqa: DJ001

    class Meta:
        db_table = "snapshots"
        ordering = ["stream_id", "-version"]
        constraints = [
            models.UniqueConstraint(
                fields=["stream_id", "version"], name="snapshots_stream_version"
            )
        ]

    def __str__(self) -> str:
        return f"snapshot {self.stream_id} v{self.version}"


class SigningEpoch(AppendOnlyModel):
    """Where signing began: one row, written by migration 0005, immutable like the events.

    Events below ``events_from_position`` and snapshots below ``snapshots_from_id`` were
    written before the application signed anything: they form the unsigned segment,
    protected by the hash chain (and an external digest) only. Every later event must be
    covered by a signature, every later snapshot signed.
    """

    id = models.BigAutoField(primary_key=True)
    events_from_position = models.BigIntegerField()
    snapshots_from_id = models.BigIntegerField()
    # How many events lay below events_from_position: one more (a row slipped into a gap
    # of the unsigned segment) or one fewer is reported by every full verification.
    unsigned_events = models.BigIntegerField(default=0)
    created_at = models.DateTimeField()

    class Meta:
        db_table = "signing_epoch"

    def __str__(self) -> str:
        return f"signed from position {self.events_from_position}"


class VerificationRun(models.Model):
    """One run of ``verify_events`` (full or incremental): what it checked and found."""

    started_at = models.DateTimeField()
    finished_at = models.DateTimeField()
    full = models.BooleanField()
    ok = models.BooleanField()
    streams = models.BigIntegerField(default=0)
    events = models.BigIntegerField(default=0)
    snapshots = models.BigIntegerField(default=0)
    # Events an incremental run did not re-check (verified by earlier runs).
    events_not_rechecked = models.BigIntegerField(default=0)
    head_position = models.BigIntegerField(default=0)
    snapshot_id_reached = models.BigIntegerField(default=0)
    root = models.CharField(max_length=64, blank=True)
    problems = models.JSONField(default=list)

    class Meta:
        db_table = "verification_runs"
        ordering = ["-id"]

    def __str__(self) -> str:
        kind = "full" if self.full else "incremental"
        return f"{kind} verification of {self.finished_at:%Y-%m-%d %H:%M}"


class StreamVerification(models.Model):
    """How far each stream was verified, so the next run checks only what is new."""

    stream_id = models.UUIDField(primary_key=True)
    version = models.PositiveIntegerField()
    hash = models.CharField(max_length=64)
    # The first version of the append whose signature seals ``version`` (0: unsigned).
    seal_from = models.PositiveIntegerField(default=0)
    verified_at = models.DateTimeField()
    # The first problem found (kept until a full run finds the stream intact).
    problem_version = models.PositiveIntegerField(null=True, blank=True)
    problem = models.TextField(blank=True)
    # The first snapshot of the stream that failed its check, as "version N: reason".
    snapshot_problem = models.TextField(blank=True)

    class Meta:
        db_table = "stream_verifications"

    def __str__(self) -> str:
        return f"{self.stream_id} verified through v{self.version}"
