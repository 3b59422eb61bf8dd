"""Running projections: batches with checkpoints, catch-up, rebuild, status.

Each batch is one transaction: lock the projection's checkpoint row, read the events after
it (whole appends only, see ``eventstore.read_all``), apply them, move the checkpoint. Two
runners of one projection therefore never apply the same batch: the second waits for the
first's checkpoint, then reads after it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.utils import timezone

import eventstore as es

from .accounts import BalanceProjection, HistoryProjection
from .base import Projection, ProjectionError
from .models import Checkpoint
from .telemetry import batch_span, publish_lag

PROJECTIONS: dict[str, Projection] = {
    p.name: p for p in (BalanceProjection(), HistoryProjection())
}


def get_projections(names: Iterable[str] | None = None) -> list[Projection]:
    """Return the named projections (all by default).

    Raises:
        ProjectionError: a name is not a projection.
    """
    if not names:
        return list(PROJECTIONS.values())
    unknown = [n for n in names if n not in PROJECTIONS]
    if unknown:
        raise ProjectionError(
            f"no projection named {', '.join(unknown)}; there are: {', '.join(PROJECTIONS)}"
        )
    return [PROJECTIONS[n] for n in names]


def _locked_checkpoint(name: str) -> Checkpoint:
    """Lock the projection's checkpoint row until the end of the current transaction."""
    return Checkpoint.objects.select_for_update().get(name=name)


def _ensure_checkpoint(name: str) -> None:
    Checkpoint.objects.get_or_create(name=name)


def run_batch(projection: Projection, *, limit: int = 1000) -> int:
    """Apply the next batch of events to one projection; return how many were read."""
    return run_batch_group([projection], limit=limit)


def run_batch_group(projections: list[Projection], *, limit: int = 1000) -> int:
    """Apply the next batch to several projections, reading the events once.

    All the checkpoints are locked and moved in the same transaction; a projection that is
    ahead of the others gets only the events after its own checkpoint (checkpoints always
    sit between whole appends, so it still gets whole appends).

    Returns:
        How many events were read (0 when every projection is caught up).

    Raises:
        ProjectionError: an event could not be applied (the batch rolled back; the error
            names the projection and the positions).
    """
    for projection in projections:
        _ensure_checkpoint(projection.name)
    with transaction.atomic():
        checkpoints = {
            c.name: c
            for c in Checkpoint.objects.select_for_update()
            .filter(name__in=[p.name for p in projections])
            .order_by("name")
        }
        start = min(c.position for c in checkpoints.values())
        events = es.read_all(after_position=start, limit=limit)
        if not events:
            return 0
        end = events[-1].position
        for projection in projections:
            checkpoint = checkpoints[projection.name]
            if checkpoint.position >= end:
                continue
            mine = (
                events
                if checkpoint.position == start
                else [e for e in events if e.position > checkpoint.position]
            )
            try:
                with batch_span(projection.name, mine):
                    projection.handle(mine)
            except ProjectionError:
                raise
            except Exception as exc:
                raise ProjectionError(
                    f"projection {projection.name} failed on the batch after position "
                    f"{checkpoint.position} (events {mine[0].position} to {end}): {exc!r}; "
                    "the checkpoint did not move"
                ) from exc
            checkpoint.position = end
            checkpoint.save(update_fields=["position", "updated_at"])
        return len(events)


def catch_up(
    names: Iterable[str] | None = None,
    *,
    limit: int = 1000,
    progress: Callable[[int], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> int:
    """Apply every pending event to the named projections (all by default), synchronously.

    Returns:
        How many events were read.
    """
    projections = get_projections(names)
    total = 0
    while not should_stop():
        count = run_batch_group(projections, limit=limit)
        if not count:
            break
        total += count
        if progress is not None:
            progress(count)
    return total


def reset(names: Iterable[str] | None = None) -> None:
    """Empty the named read models and move their checkpoints back to the beginning."""
    for projection in get_projections(names):
        _ensure_checkpoint(projection.name)
        with transaction.atomic():
            checkpoint = _locked_checkpoint(projection.name)
            projection.reset()
            checkpoint.position = 0
            checkpoint.save(update_fields=["position", "updated_at"])


@dataclass(frozen=True, slots=True)
class Status:
    name: str
    checkpoint: int
    head: int
    lag_events: int
    lag_seconds: float
    updated_at: datetime | None


RELAY_PREFIX = "relay:"


def status(names: Iterable[str] | None = None) -> list[Status]:
    """Return each projection's checkpoint and its lag behind the store's head.

    Event bus relays (checkpoints named ``relay:<stream>``) are followers too and are
    listed after the projections; they can be asked for by that name.
    The lag in time is the age of the oldest event the follower has not handled yet
    (0 when it is caught up, however quiet the store is).
    """
    names = list(names or [])
    relay_names = [n for n in names if n.startswith(RELAY_PREFIX)]
    projection_names = [n for n in names if not n.startswith(RELAY_PREFIX)]
    head = es.head_position()
    checkpoints = {c.name: c for c in Checkpoint.objects.all()}
    if names:
        followers = [p.name for p in get_projections(projection_names)] if projection_names else []
        missing = [n for n in relay_names if n not in checkpoints]
        if missing:
            raise ProjectionError(
                f"no relay checkpoint named {', '.join(missing)}; has relay_events run yet?"
            )
        followers += relay_names
    else:
        followers = [p.name for p in get_projections()]
        followers += sorted(n for n in checkpoints if n.startswith(RELAY_PREFIX))
    now = timezone.now()
    result = []
    for name in followers:
        checkpoint = checkpoints.get(name)
        position = checkpoint.position if checkpoint else 0
        pending = es.read_all(after_position=position, limit=1) if position < head else []
        lag_events = es.count_after(position) if pending else 0
        lag_seconds = (now - pending[0].recorded_at).total_seconds() if pending else 0.0
        result.append(
            Status(
                name=name,
                checkpoint=position,
                head=head,
                lag_events=lag_events,
                lag_seconds=max(lag_seconds, 0.0),
                updated_at=checkpoint.updated_at if checkpoint else None,
            )
        )
    publish_lag({row.name: row.lag_events for row in result})
    return result
