"""python manage.py rebuild_approvals [--check] [--batch-size N]

Rebuilds the maker-checker queue (the ``ApprovalRequest`` rows) from the approval streams
(stream type ``bank.approval``), read through the event store's public API: after a restore
of the events without the queue, or to check that the two agree (``--check``).

Each row is what the services write beside the stream's events: the request as
``ApprovalRequested`` holds it, the accounts and amount its command plans (``approvals.plan``,
as ``request`` computes them), the fingerprint that refuses a second identical pending
request, and the stream's status, decision and version, and the position where the append of its last event
ends (for an approval, after the command it ran). ``requested_at`` and
``decided_at`` are the deciding events' ``occurred_at``.

Concurrent writers: the whole rebuild is one transaction holding the queue's table lock (on
SQLite the write lock, taken at BEGIN), so no request or decision writes a row meanwhile; a
row newer than what the rebuild could read (its position past the last event read) is left
as its writer made it.
"""

from __future__ import annotations

import sys
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, connection, transaction

import eventstore as es
from bank.domain.approval import (
    APPROVAL_STREAM_TYPE,
    PENDING,
    Approval,
    approval_event_from_data,
)
from bank.domain.errors import DomainError
from bank.models import ApprovalRequest
from bank.progress import progress
from bank.services import approvals
from bank.services.errors import ServiceError

# The columns a rebuild writes (all but the primary key).
COLUMNS = (
    "kind",
    "account_id",
    "counterparty_id",
    "amount_cents",
    "command",
    "reason",
    "requested_by_id",
    "requested_by",
    "requested_at",
    "expires_at",
    "status",
    "decided_by",
    "decided_at",
    "decision_reason",
    "fingerprint",
    "version",
    "position",
)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a rebuild found (and, unless checking, did)."""

    streams: int
    created: list[uuid.UUID]
    updated: list[uuid.UUID]
    deleted: list[uuid.UUID]
    kept_newer: list[uuid.UUID]

    @property
    def differences(self) -> int:
        return len(self.created) + len(self.updated) + len(self.deleted)


def read_approval_streams(
    *, batch_size: int, on_batch: Any = None
) -> tuple[dict[uuid.UUID, list[es.RecordedEvent]], dict[uuid.UUID, int], int]:
    """Every approval stream's events in version order; per approved request, the last
    position of the command it ran (its events name the request in their metadata,
    ``approval.id``); and the last position read."""
    streams: dict[uuid.UUID, list[es.RecordedEvent]] = {}
    ran: dict[uuid.UUID, int] = {}
    position = 0
    while batch := es.read_all(after_position=position, limit=batch_size):
        for event in batch:
            if event.stream_type == APPROVAL_STREAM_TYPE:
                streams.setdefault(event.stream_id, []).append(event)
            elif _ran_on_approval(event):
                approval_id = uuid.UUID(str(event.metadata["approval"]["id"]))
                ran[approval_id] = max(ran.get(approval_id, 0), event.position)
        position = batch[-1].position
        if on_batch is not None:
            on_batch(len(batch))
    return streams, ran, position


def _ran_on_approval(event: es.RecordedEvent) -> bool:
    raw = event.metadata_json
    # Most events were not approved: look at the stored text before decoding it.
    if isinstance(raw, str) and '"approval"' not in raw:
        return False
    approval = event.metadata.get("approval")
    return isinstance(approval, dict) and "id" in approval


def row_of(stream_id: uuid.UUID, events: list[es.RecordedEvent], end: int) -> dict[str, Any]:
    """The queue's row for one approval stream, as the services write it.

    Raises:
        CommandError: the stream does not start with a request, or its command cannot be
            planned any more.
    """
    if events[0].event_type != "ApprovalRequested" or events[0].version != 1:
        raise CommandError(
            f"approval stream {stream_id} starts with {events[0].event_type} at version "
            f"{events[0].version}, not a request: check it with `manage.py verify_events`"
        )
    approval = Approval.from_events(
        stream_id, (approval_event_from_data(e.event_type, e.data) for e in events)
    )
    try:
        planned = approvals.plan(approval.kind, approval.command)
    except (DomainError, ServiceError) as exc:
        raise CommandError(
            f"approval {stream_id}: its {approval.kind} command cannot be planned ({exc}); "
            "the event store lacks what it names: check it with `manage.py verify_events`"
        ) from exc
    decided = approval.status != PENDING
    decided_at: datetime | None = events[-1].occurred_at if decided else None
    assert approval.expires_at is not None  # a request sets it
    return {
        "kind": approval.kind,
        "account_id": planned.account_ids[0],
        "counterparty_id": planned.account_ids[1] if len(planned.account_ids) > 1 else None,
        "amount_cents": planned.amount_cents,
        "command": approval.command,
        "reason": approval.reason,
        "requested_by_id": approval.requested_by.get("id"),
        "requested_by": str(approval.requested_by.get("username", ""))[:150],
        "requested_at": events[0].occurred_at,
        "expires_at": approval.expires_at,
        "status": approval.status,
        "decided_by": str(approval.decided_by.get("username", ""))[:150]
        if approval.decided_by
        else ("system" if decided else ""),
        "decided_at": decided_at,
        "decision_reason": approval.decision_reason,
        "fingerprint": approvals.fingerprint(approval.kind, approval.command),
        "version": approval.version,
        "position": end,
    }


def _lock_queue() -> None:
    """Keep requests and decisions from writing the queue until the rebuild commits.

    SQLite's transactions take the write lock at BEGIN (``transaction_mode`` IMMEDIATE in
    the settings); PostgreSQL needs the table's lock (SHARE ROW EXCLUSIVE: readers go on,
    writers wait, and a second rebuild waits too).
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                f"LOCK TABLE {ApprovalRequest._meta.db_table} IN SHARE ROW EXCLUSIVE MODE"
            )


def rebuild_queue(*, check: bool = False, batch_size: int = 5000, on_batch: Any = None) -> Outcome:
    """Bring the queue's rows to what the approval streams say (``check``: only compare)."""
    with transaction.atomic():
        _lock_queue()
        streams, ran, last = read_approval_streams(batch_size=batch_size, on_batch=on_batch)
        existing = {row.pk: row for row in ApprovalRequest.objects.all()}
        created, updated, deleted, kept = [], [], [], []
        writes: dict[uuid.UUID, dict[str, Any]] = {}
        for stream_id, events in streams.items():
            # An approval's append holds the command's events too: the queue records the
            # position where that whole append ends, as the services do.
            end = max(events[-1].position, ran.get(stream_id, 0))
            wanted = row_of(stream_id, events, end)
            row = existing.pop(stream_id, None)
            if row is None:
                created.append(stream_id)
                writes[stream_id] = wanted
            elif row.position is not None and row.position > last:
                kept.append(stream_id)  # written after what this rebuild could read
            elif any(getattr(row, name) != value for name, value in wanted.items()):
                updated.append(stream_id)
                writes[stream_id] = wanted
        for row in existing.values():
            if row.position is not None and row.position > last:
                kept.append(row.pk)
            else:
                deleted.append(row.pk)  # no stream: the queue lists what never happened
        if not check:
            _write(writes, created, deleted)
    return Outcome(len(streams), created, updated, deleted, kept)


def _write(
    writes: dict[uuid.UUID, dict[str, Any]], created: list[uuid.UUID], deleted: list[uuid.UUID]
) -> None:
    """Delete, then write the rows that stop being pending, then the pending ones: the
    partial unique index (one pending request per command) holds after every statement,
    whatever wrong rows the queue held."""
    ApprovalRequest.objects.filter(pk__in=deleted).delete()
    new = set(created)
    for stream_id, wanted in sorted(writes.items(), key=lambda item: item[1]["status"] == PENDING):
        if stream_id in new:
            ApprovalRequest.objects.create(id=stream_id, **wanted)
        else:
            ApprovalRequest.objects.filter(pk=stream_id).update(**wanted)


class Command(BaseCommand):
    help = "Rebuild the approval queue (ApprovalRequest rows) from the bank.approval streams."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--check",
            action="store_true",
            help="compare only; exit non-zero naming the rows that differ from the streams",
        )
        parser.add_argument(
            "--batch-size", type=int, default=5000, help="events read per batch (5000)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1")
        check = options["check"]
        try:
            with progress(
                total=es.count_after(0),
                desc="reading the approval streams",
                # The terminal itself for tqdm's bar; else the command's stderr.
                file=sys.stderr if self.stderr.isatty() else self.stderr,
                verbosity=options["verbosity"],
            ) as bar:
                outcome = rebuild_queue(
                    check=check, batch_size=options["batch_size"], on_batch=bar.update
                )
        except (DatabaseError, es.StoreUnavailableError) as exc:
            raise CommandError(
                f"the database failed while rebuilding the approval queue ({exc}); nothing "
                "was changed (one transaction): run rebuild_approvals again once it is back"
            ) from exc
        counts = (
            f"{len(outcome.created)} missing, {len(outcome.updated)} different, "
            f"{len(outcome.deleted)} without a stream"
        )
        if check:
            if outcome.differences:
                named = [*outcome.created, *outcome.updated, *outcome.deleted][:10]
                raise CommandError(
                    f"the approval queue differs from {outcome.streams} approval stream(s): "
                    f"{counts} (e.g. {', '.join(map(str, named))}); run rebuild_approvals "
                    "without --check to rebuild it"
                )
            if options["verbosity"] >= 1:
                self.stdout.write(
                    self.style.SUCCESS(
                        f"the approval queue matches its {outcome.streams} stream(s)"
                    )
                )
            return
        if options["verbosity"] >= 1:
            self.stdout.write(
                self.style.SUCCESS(
                    f"rebuilt the approval queue from {outcome.streams} stream(s): {counts} "
                    f"put right; {len(outcome.kept_newer)} written meanwhile left as they are"
                )
            )
