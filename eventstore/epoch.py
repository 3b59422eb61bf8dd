"""Where signing began: the unsigned segment of the store.

Events and snapshots written before the application signed anything have no seal. Migration
0005 recorded, in one row of the append-only ``signing_epoch`` table, the first global
position and the first snapshot id that must be signed, and how many events lay below. A
stream's events below that position, up to its first signed event, are covered by the
unsigned segment (``chain_check``); snapshots below that id are counted and never used by
loads (``snapshot_check``); a full pass recounts the events below (``verification``).
With no row recorded everything must be signed.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import connection


@dataclass(frozen=True, slots=True)
class Epoch:
    """Where signing began: events and snapshots below these were written unsigned."""

    events_from_position: int
    snapshots_from_id: int
    unsigned_events: int = 0
    problem: str | None = None


def signing_epoch() -> Epoch:
    """The store's signing epoch (1, 1 when none is recorded: everything must be signed)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT events_from_position, snapshots_from_id, unsigned_events FROM signing_epoch "
            "ORDER BY id"
        )
        rows = cursor.fetchall()
    if not rows:
        return Epoch(1, 1)
    problem = None
    if len(rows) > 1:
        problem = (
            f"signing_epoch holds {len(rows)} rows where migration 0005 wrote one: someone "
            "with the owner's rights added rows (the strictest is used); find out who, as "
            'for a broken chain (README, "When verify_events fails")'
        )
    first = rows[0]
    return Epoch(min(first[0], *(r[0] for r in rows)), min(r[1] for r in rows), first[2], problem)
