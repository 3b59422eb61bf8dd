"""Running projections: batches with checkpoints, catch-up, rebuild, status.

Each batch is one transaction: lock the projection's checkpoint row, read the events after
it (whole appends only, see ``eventstore.read_all``), apply them, move the checkpoint. Two
runners of one projection therefore never apply the same batch: the second waits for the
first's checkpoint, then reads after it.

A follower (``run_projections``) passes a :class:`~projections.follower.Parking` per
projection: a batch that fails is rolled back to a savepoint and bisected to the first event
that fails on its own; that event's failure is counted and the round fails (the follower
waits, then tries again) until it has failed ``attempts`` times, when it is parked and the
batch goes on without it. The later events of its stream are parked behind it (the read
models check that a stream's versions follow each other), in this batch and in every later
one, until ``retry_parked`` applies them, in position order. A synchronous ``catch_up``
(tests, ``rebuild_projections``) parks nothing new: it raises, as a rebuild must.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import (
    InterfaceError,
    InternalError,
    NotSupportedError,
    OperationalError,
    ProgrammingError,
    connection,
    transaction,
)
from django.db.models import Count
from django.utils import timezone

import eventstore as es
from bank.domain import EVENT_TYPES, STREAM_TYPE

from .accounts import BalanceProjection, HistoryProjection
from .base import Projection, ProjectionError
from .follower import (
    DEFAULT_ATTEMPTS,
    Backoff,
    Failure,
    Follower,
    Hooks,
    Parking,
    Retried,
    describe,
    error_text,
    lock_key,
)
from .models import Checkpoint, DeadLetter, UnknownEvent
from .telemetry import batch_span, publish_lag

PROJECTIONS: dict[str, Projection] = {
    p.name: p for p in (BalanceProjection(), HistoryProjection())
}


TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    OperationalError,
    InterfaceError,
    # A schema that is not the code's (followers restarted on a release whose migrations
    # have not run yet, a prepared plan made stale by a migration), an aborted transaction:
    # every event would fail alike, so none is parked for it; the round is retried.
    ProgrammingError,
    NotSupportedError,
    InternalError,
    es.StoreUnavailableError,
)
"""Errors that are the database's, not an event's: never counted against an event."""


def register(projection: Projection) -> None:
    """Add a projection to those the runner knows (a plug-in's, or a test's).

    Raises:
        ProjectionError: the name is taken, or looks like a relay's.
    """
    if projection.name in PROJECTIONS or projection.name.startswith(RELAY_PREFIX):
        raise ProjectionError(f"a follower named {projection.name} exists already")
    PROJECTIONS[projection.name] = projection


def unregister(name: str) -> None:
    """Remove a projection added with :func:`register` (its tables and checkpoint stay)."""
    PROJECTIONS.pop(name, None)


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


def run_batch_group(
    projections: list[Projection],
    *,
    limit: int = 1000,
    parking: Mapping[str, Parking] | None = None,
) -> int:
    """Apply the next batch to several projections, reading the events once.

    All the checkpoints are locked and moved in the same transaction; a projection that is
    ahead of the others gets only the events after its own checkpoint (checkpoints always
    sit between whole appends, so it still gets whole appends). Events of a stream with a
    parked event are parked behind it.

    Args:
        projections: the projections to apply the batch to.
        limit: the batch size.
        parking: per projection name, what counts failures and parks events; without one
            a failing batch rolls back and raises.

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
        _note_unknown(events)
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
            with batch_span(projection.name, mine):
                own = (parking or {}).get(projection.name) or Parking(
                    projection.name, attempts=None
                )
                _apply(projection, mine, own, after=checkpoint.position)
            checkpoint.position = end
            checkpoint.save(update_fields=["position", "updated_at"])
        return len(events)


def _apply(
    projection: Projection, events: list[es.RecordedEvent], parking: Parking, *, after: int
) -> None:
    """Apply a batch, parking the events of blocked streams, and isolating what fails.

    Without parking (``parking.attempts`` None: a plain catch-up, a rebuild's replay) the
    dead letters are not honoured either: every event is applied in order, and one that
    fails raises. A rebuild aside thereby replays the parked events into its shadows (and
    fails, leaving the live read models alone, if one still fails); only a follower holds
    a stream's events back behind its parked one.
    """
    held = parking.blocked() if parking.attempts is not None else {}
    ready = events
    if held:
        ready = []
        for event in events:
            if event.stream_id in held and event.position > held[event.stream_id]:
                parking.park_behind(event, held[event.stream_id])
            else:
                ready.append(event)
    if parking.attempts is None:
        try:
            projection.handle(ready)
        except ProjectionError:
            raise
        except Exception as exc:
            raise ProjectionError(
                f"projection {projection.name} failed on the batch after position "
                f"{after} (events {events[0].position} to {events[-1].position}): {exc!r}; "
                "the checkpoint did not move"
            ) from exc
        return
    _isolate(projection, ready, parking)


def _isolate(projection: Projection, events: list[es.RecordedEvent], parking: Parking) -> None:
    """Apply ``events`` around those that fail on their own; park those failing too often.

    Raises:
        ProjectionError: an event failed fewer times than ``parking.attempts``: the round
            rolls back, and the follower tries again after its backoff.
    """
    retried: list[Failure] = []
    pending = events
    while pending:
        found = _first_failure(projection, pending)
        if found is None:
            break
        index, error = found
        event = pending[index]
        failure = parking.failed(event, error_text(error))
        exhausted = parking.exhausted(failure)
        if exhausted:
            parking.park(failure)
        else:
            retried.append(failure)
        rest = []
        for later in pending[index + 1 :]:
            if later.stream_id != event.stream_id:
                rest.append(later)
            elif exhausted:
                parking.park_behind(later, event.position)
        pending = rest
    if retried:
        raise ProjectionError(
            "; ".join(
                f"projection {projection.name}: {describe(f.event)} failed: {f.error} "
                f"(attempt {f.attempts} of {parking.attempts}, then it is parked)"
                for f in retried
            )
            + "; the batch rolled back"
        )


def _attempt(projection: Projection, events: Sequence[es.RecordedEvent]) -> Exception | None:
    """Apply ``events`` in a savepoint; return what they raised (rolled back), or None."""
    if not events:
        return None
    try:
        with transaction.atomic():
            projection.handle(events)
    except TRANSIENT_ERRORS:
        raise
    except Exception as exc:  # noqa: BLE001 - the event's failure, counted against it
        return exc
    return None


def _first_failure(
    projection: Projection, events: list[es.RecordedEvent]
) -> tuple[int, Exception] | None:
    """Apply ``events`` up to the first one that fails on its own; return it and its error.

    Bisects: a batch that fails is halved, the first half applied when it can be, until one
    event is left. Returns None when every event applied after all (the batch failed only as
    a whole: everything is applied, one part at a time).
    """
    offset = 0
    while offset < len(events):
        if _attempt(projection, events[offset:]) is None:
            return None
        low, high = offset, len(events)  # events[:low] applied; events[low:high] fail
        while high - low > 1:
            middle = (low + high) // 2
            if _attempt(projection, events[low:middle]) is None:
                low = middle
            else:
                high = middle
        error = _attempt(projection, events[low : low + 1])
        if error is not None:
            return low, error
        offset = low + 1
    return None


def _note_unknown(events: Sequence[es.RecordedEvent]) -> None:
    """Record the account events of types this release cannot decode (the projections skip
    them; the health check reports their streams)."""
    unknown = [
        e for e in events if e.stream_type == STREAM_TYPE and e.event_type not in EVENT_TYPES
    ]
    if unknown:
        UnknownEvent.objects.bulk_create(
            [
                UnknownEvent(
                    position=e.position,
                    stream_id=e.stream_id,
                    version=e.version,
                    event_type=e.event_type,
                )
                for e in unknown
            ],
            ignore_conflicts=True,
        )


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


def follower(
    names: Iterable[str] | None = None,
    *,
    batch_size: int = 1000,
    poll_interval: float = 1.0,
    attempts: int = DEFAULT_ATTEMPTS,
    backoff: Backoff | None = None,
    once: bool = False,
    hooks: Hooks | None = None,
    on_park: Callable[[DeadLetter], None] | None = None,
) -> Follower:
    """A follower of the named projections (all by default), parking what keeps failing.

    Args:
        names: the projections to follow.
        batch_size: events per batch.
        poll_interval: the longest wait for the next append, in seconds.
        attempts: tries of an event before it is parked.
        backoff: the waits between tries (default: from ``poll_interval``).
        once: return once caught up; then a database that stays away ends it too (after
            ``attempts`` failed rounds), by raising.
        hooks: what to report to.
        on_park: called with each parked event's record.

    Raises:
        ProjectionError: a name is not a projection.
    """
    projections = get_projections(names)
    parking = {p.name: Parking(p.name, attempts=attempts, on_park=on_park) for p in projections}

    def step(held: list[str]) -> int:
        return run_batch_group(get_projections(held), limit=batch_size, parking=parking)

    return Follower(
        step,
        name=", ".join(p.name for p in projections),
        locks=[p.name for p in projections],  # one per projection: runners share the work
        poll_interval=poll_interval,
        backoff=backoff or Backoff(first=poll_interval, longest=poll_interval * 5),
        retry_on=(ProjectionError,),
        give_up_after=attempts if once else None,
        once=once,
        hooks=hooks,
    )


def retry_parked(
    names: Iterable[str] | None = None, *, progress: Callable[[int], None] | None = None
) -> dict[str, Retried]:
    """Apply the named projections' parked events again, in position order.

    Each projection's retry is one transaction holding its checkpoint, so a running
    follower waits meanwhile; an event that applies is marked resolved (and kept).

    Raises:
        ProjectionError: a name is not a projection.
    """
    result = {}
    for projection in get_projections(names):
        _ensure_checkpoint(projection.name)
        with transaction.atomic():
            _locked_checkpoint(projection.name)
            result[projection.name] = Parking(projection.name).retry(
                lambda event, p=projection: _apply_one(p, event),  # type: ignore[misc]
                transient=TRANSIENT_ERRORS,
                progress=progress,
            )
    return result


def _apply_one(projection: Projection, event: es.RecordedEvent) -> None:
    with transaction.atomic():
        projection.handle([event])


def forget(name: str) -> int:
    """Remove an abandoned follower's checkpoint and its dead letters; return how many.

    For a relay of a stream no longer used, or a projection that no longer exists.

    Raises:
        ProjectionError: ``name`` is a projection of this release or the relay of the
            configured stream (``NATS_STREAM``), has no checkpoint, or a follower of it is
            running.
    """
    if name in PROJECTIONS:
        raise ProjectionError(
            f"{name} is a projection of this release, not an abandoned one; to start it "
            f"over, run rebuild_projections {name}"
        )
    if name == f"{RELAY_PREFIX}{settings.NATS_STREAM}":
        raise ProjectionError(
            f"{name} is the relay of the configured stream (NATS_STREAM), not an abandoned "
            "one: forgetting it would make relay_events publish the whole store again"
        )
    with transaction.atomic():
        checkpoint = Checkpoint.objects.select_for_update().filter(name=name).first()
        if checkpoint is None:
            raise ProjectionError(
                f"no checkpoint named {name}; projection_status lists the followers"
            )
        if connection.vendor == "postgresql" and not _lock_is_free(name):
            raise ProjectionError(
                f"{name} is followed by a running process; stop it first, then forget it"
            )
        letters, _ = DeadLetter.objects.filter(follower=name).delete()
        checkpoint.delete()
    return letters


def _lock_is_free(name: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [lock_key(name)])
        free = bool(cursor.fetchone()[0])
        if free:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [lock_key(name)])
    return free


def reset(names: Iterable[str] | None = None) -> None:
    """Empty the named read models and move their checkpoints back to the beginning.

    Their parked events are marked resolved: the replay that follows applies them in order
    (or fails on them, as a rebuild should, and a follower parks them again).
    """
    for projection in get_projections(names):
        _ensure_checkpoint(projection.name)
        with transaction.atomic():
            checkpoint = _locked_checkpoint(projection.name)
            projection.reset()
            DeadLetter.objects.filter(follower=projection.name, resolved_at__isnull=True).update(
                resolved_at=timezone.now()
            )
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
    parked: int = 0  # events parked as dead letters, waiting for --retry-parked
    abandoned: bool = False  # a checkpoint of no projection of this release (--forget it)


RELAY_PREFIX = "relay:"


def status(names: Iterable[str] | None = None) -> list[Status]:
    """Return each follower's checkpoint, its lag behind the store's head, and what it parked.

    Event bus relays (checkpoints named ``relay:<stream>``) are followers too and are
    listed after the projections; they can be asked for by that name. Checkpoints of
    followers this release does not have come last, as abandoned.
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
        followers += sorted(n for n in checkpoints if n not in followers)
    parked = parked_counts()
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
                parked=parked.get(name, 0),
                abandoned=name not in PROJECTIONS and not name.startswith(RELAY_PREFIX),
            )
        )
    publish_lag({row.name: row.lag_events for row in result})
    return result


def parked_counts() -> dict[str, int]:
    """How many events each follower has parked (followers with none are left out)."""
    return dict(
        DeadLetter.objects.filter(resolved_at__isnull=True)
        .values("follower")
        .annotate(n=Count("position"))
        .values_list("follower", "n")
    )


def unknown_streams() -> dict[object, list[UnknownEvent]]:
    """The account streams holding events of a type this release does not know.

    The projections record such events as they skip them; a type this release knows now
    (an upgrade) no longer counts.
    """
    streams: dict[object, list[UnknownEvent]] = {}
    for event in UnknownEvent.objects.exclude(event_type__in=list(EVENT_TYPES)).order_by(
        "position"
    ):
        streams.setdefault(event.stream_id, []).append(event)
    return streams
