"""Read your writes: where a command's events are, and waiting for the read models to get there.

Every command answer carries ``X-Event-Position``, the global position of the last event it
appended (for a transfer, the later of its two accounts' events; they are one append): the
services answer it; a replayed answer reads it back. The
read-model endpoints (the account list: projection ``balances``; an account's transactions:
projection ``transactions``) take that number back as ``?min_position=`` or
``X-Min-Position`` and answer only once their projection's checkpoint has reached it: they
poll the checkpoint (a primary-key read, every 5 ms at first and then every 50 ms) for up
to ``READ_YOUR_WRITES_TIMEOUT_MS``, then give up with 503 ``projection_lagging`` and a
``Retry-After``. Every answer from a read model says how far its projection had got in
``X-Projection-Position``.

The checkpoint is read before the rows: a batch's rows and its checkpoint commit together,
so the rows answered are at least as new as the position announced (newer, if a batch
committed in between). Checkpoints only ever sit between whole appends, so a checkpoint at
or past a command's position means every event of that command is in the read model,
unless the projection parked an event up to that position as a dead letter: then the
answer is 503 ``projection_lagging`` at once, naming the parked event (waiting would not
help; an operator's ``--retry-parked`` does).

A ``min_position`` beyond the store's head is a 400 (``min_position_beyond_head``), not a
wait: positions are handed out only by commits, so a committed command's position is never
beyond the head, and a number that is must come from another store (a restored backup,
another environment) or be made up; waiting would only end in 503 after the timeout, and
the retries that invites would never succeed.

With a read replica (``DATABASE_REPLICA_URL``, config/db_routers.py) a read-model read is
answered from the replica when the replica can show what was asked: its own copy of the
projection's checkpoint is read first (so ``X-Projection-Position`` is the replica's, and
the rows, read after it from the same replica, are at least that new). A ``min_position``
the replica has not replayed yet (or behind an event the replica still shows parked) sends
the whole request to the primary, where the wait above applies: a lagging replica never
makes a client wait or fail when the primary can answer. An unreachable replica sends it to
the primary too (logged and counted).
"""

from __future__ import annotations

import math
import re
import time
import uuid
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.db import OperationalError
from rest_framework.exceptions import ValidationError

import eventstore as es
from bank import selectors
from bank.selectors import projection_progress
from config import db_routers
from projections.accounts import BalanceProjection, HistoryProjection

EVENT_POSITION = "X-Event-Position"
PROJECTION_POSITION = "X-Projection-Position"
MIN_POSITION_HEADER = "X-Min-Position"
MIN_POSITION_QUERY = "min_position"

# The projection each read-model endpoint answers from.
BALANCES = BalanceProjection.name
TRANSACTIONS = HistoryProjection.name

PROJECTION_LAGGING = "projection_lagging"
MIN_POSITION_BEYOND_HEAD = "min_position_beyond_head"

# Positions are PostgreSQL bigints. A number of up to 19 digits is read as a position even
# above that (it is then beyond the head, a 400 of its own); anything else is malformed.
MAX_POSITION = 2**63 - 1
_DIGITS = re.compile(r"0|[1-9][0-9]{0,18}")
# The same grammar for the OpenAPI document (the header may carry surrounding spaces): what
# it matches is exactly what ``requested_position`` accepts.
POSITION_PATTERN = r"^[ \t]*(0|[1-9][0-9]{0,18})[ \t]*$"

NOT_A_POSITION = (
    "must be a whole number of at most 19 decimal digits, without a sign or a leading 0"
)
SEVERAL_POSITIONS = "is given more than once, with different values; send one"
TWO_POSITIONS = (
    f"{MIN_POSITION_QUERY}={{query}} and {MIN_POSITION_HEADER}: {{header}} disagree; send one"
)
LAGGING_MESSAGE = (
    "projection {projection} reached position {reached}, not {wanted}, within {timeout_ms} ms; "
    "retry after {retry_after} s"
)
PARKED_MESSAGE = (
    "projection {projection} passed position {wanted} but parked the event at position "
    "{parked} as a dead letter: the read model does not show it until an operator fixes the "
    "cause and runs run_projections --retry-parked; read the account itself "
    "(GET /api/accounts/{{id}}/, from its events) meanwhile"
)
BEYOND_HEAD_MESSAGE = (
    "min_position {wanted} is beyond the event store's head {head}: no command of this "
    "server answered it; send the X-Event-Position of a command answered here"
)

# The polls' waits, in seconds: short at first (a follower on NOTIFY catches up in
# milliseconds), then at most 50 ms apart so that a lagging projection costs one cheap
# query per 50 ms per waiting request.
_FIRST_POLL, _LONGEST_POLL = 0.005, 0.05
# The longest Retry-After, in seconds (it is an estimate; a client may come back sooner).
_LONGEST_RETRY_AFTER = 60


class ProjectionLagging(Exception):
    """The projection did not reach the position within the timeout (503)."""

    code = PROJECTION_LAGGING

    def __init__(
        self,
        projection: str,
        *,
        reached: int,
        wanted: int,
        timeout_ms: int,
        retry_after: int,
        parked: int | None = None,
    ) -> None:
        self.projection = projection
        self.reached = reached
        self.wanted = wanted
        self.retry_after = retry_after
        message = PARKED_MESSAGE if parked is not None else LAGGING_MESSAGE
        super().__init__(
            message.format(
                projection=projection,
                reached=reached,
                wanted=wanted,
                timeout_ms=timeout_ms,
                retry_after=retry_after,
                parked=parked,
            )
        )


class MinPositionBeyondHead(Exception):
    """The position asked for was never handed out by this store (400)."""

    code = MIN_POSITION_BEYOND_HEAD

    def __init__(self, source: str, *, wanted: int, head: int) -> None:
        self.source = source  # the query parameter or the header, whichever was sent
        self.wanted = wanted
        self.head = head
        super().__init__(BEYOND_HEAD_MESSAGE.format(wanted=wanted, head=head))


# --- commands -------------------------------------------------------------------------


def event_position(*accounts: Mapping[str, Any]) -> int:
    """The global position of a command's last event, from the accounts its answer holds.

    For an answer replayed for an Idempotency-Key (a command's own answer has the position
    from the services). Each account's ``version`` is the version of the newest event the
    command appended to it; the latest of those events' positions is the command's last
    (one append).
    """
    return max(
        selectors.account_events(
            uuid.UUID(str(account["id"])), after_version=int(account["version"]) - 1, limit=1
        )[0].position
        for account in accounts
    )


# --- read models ----------------------------------------------------------------------


def requested_position(request: Any) -> tuple[str, int] | None:
    """The ``min_position`` of a read, from the query or the header: (where, position).

    Raises:
        ValidationError: not a whole number in range, or the two forms disagree (400).
    """
    queries = request.query_params.getlist(MIN_POSITION_QUERY)
    header = request.headers.get(MIN_POSITION_HEADER)
    errors: dict[str, list[str]] = {}
    given: dict[str, set[int]] = {}
    for name, values in ((MIN_POSITION_QUERY, queries), (MIN_POSITION_HEADER, [header])):
        for value in values:
            if value is None:
                continue
            text = value.strip(" \t") if name == MIN_POSITION_HEADER else value
            if not _DIGITS.fullmatch(text):
                errors[name] = [NOT_A_POSITION]
            else:
                given.setdefault(name, set()).add(int(text))
    if errors:
        raise ValidationError(errors)
    if len(given.get(MIN_POSITION_QUERY, ())) > 1:
        raise ValidationError({MIN_POSITION_QUERY: [SEVERAL_POSITIONS]})
    wanted = {name: positions.pop() for name, positions in given.items()}
    if len(wanted) == 2 and wanted[MIN_POSITION_QUERY] != wanted[MIN_POSITION_HEADER]:
        message = TWO_POSITIONS.format(
            query=wanted[MIN_POSITION_QUERY], header=wanted[MIN_POSITION_HEADER]
        )
        raise ValidationError({MIN_POSITION_QUERY: [message], MIN_POSITION_HEADER: [message]})
    for name in (MIN_POSITION_QUERY, MIN_POSITION_HEADER):
        if name in wanted:
            return name, wanted[name]
    return None


def projection_position(projection: str) -> int:
    """The global position the projection has applied up to (0 before its first batch)."""
    return projection_progress.projection_position(projection)


def reached(projection: str, asked: tuple[str, int] | None) -> int:
    """Wait until ``projection`` reached the position asked for; return its position.

    Args:
        asked: ``requested_position(request)``; None: nothing is waited for.

    Call it before reading the rows: the position returned is then never newer than what
    they show. With a read replica it also decides, once for the request, which database
    the rows come from (the module's docstring says how).

    Raises:
        MinPositionBeyondHead: a position beyond the store's head (400).
        ProjectionLagging: not reached within ``READ_YOUR_WRITES_TIMEOUT_MS`` (503).
    """
    from_replica = _replica_position(projection, asked)
    if from_replica is not None:
        return from_replica
    position = projection_position(projection)
    if asked is None:
        return position
    if position >= asked[1]:
        return _not_parked(projection, position, asked[1])
    source, wanted = asked
    head = es.head_position()
    if wanted > head:
        raise MinPositionBeyondHead(source, wanted=wanted, head=head)
    timeout_ms = settings.READ_YOUR_WRITES_TIMEOUT_MS
    # Each poll is a statement of its own in autocommit (a view opens no transaction), so it
    # sees the latest commit; inside a transaction SQLite would pin its first snapshot. The
    # projections send no notification when a checkpoint moves (the store's NOTIFY is about
    # appends), hence polling rather than LISTEN.
    started = time.monotonic()
    deadline = started + timeout_ms / 1000
    first, pause = position, _FIRST_POLL
    while (remaining := deadline - time.monotonic()) > 0:
        time.sleep(min(pause, remaining))
        pause = min(pause * 2, _LONGEST_POLL)
        position = projection_position(projection)
        if position >= wanted:
            return _not_parked(projection, position, wanted)
    raise ProjectionLagging(
        projection,
        reached=position,
        wanted=wanted,
        timeout_ms=timeout_ms,
        retry_after=retry_after(first, position, wanted, time.monotonic() - started),
    )


def _replica_position(projection: str, asked: tuple[str, int] | None) -> int | None:
    """The replica's position of ``projection`` when this request reads from the replica
    and the replica shows what was asked; else None, with the request pinned to the primary.

    Without a replica, or in a request that may not use it, None at once (no query).
    """
    if db_routers.read_alias() != db_routers.REPLICA:
        return None
    replica = db_routers.REPLICA
    try:
        position = projection_progress.projection_position(projection, using=replica)
        if asked is not None and (
            position < asked[1]
            or projection_progress.first_parked(projection, asked[1], using=replica) is not None
        ):
            db_routers.use_primary(db_routers.BEHIND)
            return None
    except OperationalError as exc:
        db_routers.replica_failed(exc)
        return None
    return position


def _not_parked(projection: str, position: int, wanted: int) -> int:
    """``position``, unless the projection parked an event at or before ``wanted``.

    A follower moves its checkpoint past the events it parks (dead letters), so a checkpoint
    at ``wanted`` does not by itself mean that every event up to it is in the read model.
    Waiting would not help (only an operator's retry does): 503 at once.

    Raises:
        ProjectionLagging: an unresolved dead letter at or before ``wanted``.
    """
    parked = projection_progress.first_parked(projection, wanted)
    if parked is None:
        return position
    raise ProjectionLagging(
        projection,
        reached=position,
        wanted=wanted,
        timeout_ms=0,
        retry_after=_LONGEST_RETRY_AFTER,
        parked=parked,
    )


def retry_after(first: int, last: int, wanted: int, waited: float) -> int:
    """Whole seconds until the projection should be there: at its pace during the wait
    when it moved, else as long as this request waited (at least 1 s)."""
    if last > first and waited > 0:
        seconds = math.ceil((wanted - last) * waited / (last - first))
    else:
        seconds = round(waited)  # the timeout, give or take the last poll's milliseconds
    return max(1, min(_LONGEST_RETRY_AFTER, seconds))


__all__ = [
    "BALANCES",
    "EVENT_POSITION",
    "MAX_POSITION",
    "MIN_POSITION_BEYOND_HEAD",
    "MIN_POSITION_HEADER",
    "MIN_POSITION_QUERY",
    "POSITION_PATTERN",
    "PROJECTION_LAGGING",
    "PROJECTION_POSITION",
    "TRANSACTIONS",
    "MinPositionBeyondHead",
    "ProjectionLagging",
    "event_position",
    "projection_position",
    "reached",
    "retry_after",
    "requested_position",
]
