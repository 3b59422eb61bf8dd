"""How far the projections got: what a read-your-writes read waits for.

``using`` names the database to ask (default: the router's choice, which for checkpoints
and dead letters is always the primary); a read served from the read replica asks the
replica, whose copy of a checkpoint says how far *its* read models got.
"""

from __future__ import annotations

from projections.models import Checkpoint, DeadLetter


def projection_position(projection: str, *, using: str | None = None) -> int:
    """The global position the projection has applied up to (0 before its first batch)."""
    position = (
        Checkpoint.objects.using(using)
        .filter(name=projection)
        .values_list("position", flat=True)
        .first()
    )
    return position or 0


def first_parked(projection: str, up_to: int, *, using: str | None = None) -> int | None:
    """The position of the projection's first unresolved dead letter at or before
    ``up_to``, or None."""
    return (
        DeadLetter.objects.using(using)
        .filter(follower=projection, resolved_at__isnull=True, position__lte=up_to)
        .order_by("position")
        .values_list("position", flat=True)
        .first()
    )
