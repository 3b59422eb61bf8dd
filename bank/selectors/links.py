"""Where an audit leads from an event: the accounts it names, the command it belongs to, the
person who issued it.

- ``account_labels``: holder names (and currencies) for a page's account ids, in one query
  on the balance read model.
- ``correlated_events``: every event of one command or transfer, across streams.
- ``actor_actions``: the events a staff user or process caused, newest first, a page at a
  time.

The last two select events by their metadata (``correlation_id``, ``actor.username``)
through the store's ``read_by_metadata`` (upcast, like every read). Neither lookup has an
index (each would cost every append): each is one scan of the events table, bounded by its
LIMIT, for staff pages only.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import eventstore as es
from projections.models import AccountBalance

from .lines import EventLine, line_of

ACTIONS_PAGE_SIZE = 50
# A command appends a handful of events (a transfer two); a list this long is a script that
# reused one correlation id, and the page says the list is cut.
CORRELATION_MAX = 500


@dataclass(frozen=True, slots=True)
class AccountLabel:
    """How the admin names an account: its holder and its currency."""

    id: uuid.UUID
    holder_name: str
    currency: str


@dataclass(frozen=True, slots=True)
class Correlation:
    """The events of one command (or transfer), in the global order; ``truncated``: more
    than ``CORRELATION_MAX`` share the id and only the first are listed."""

    correlation_id: uuid.UUID
    lines: list[EventLine]
    truncated: bool


@dataclass(frozen=True, slots=True)
class ActionsPage:
    """One page of an actor's events, newest first.

    ``older``: pass it as ``before`` for the next (older) page; ``newer``: pass it as
    ``after`` for the previous (newer) page; None where there is none.
    """

    actor: str
    lines: list[EventLine]
    older: int | None
    newer: int | None


def account_labels(account_ids: Iterable[uuid.UUID | str | None]) -> dict[uuid.UUID, AccountLabel]:
    """The holder name and currency of each account, in one query (none for no ids).

    Ids that are not UUIDs are skipped; an account the projections have not reached yet is
    missing from the answer (show its id instead).
    """
    ids: set[uuid.UUID] = set()
    for value in account_ids:
        if value is None or value == "":
            continue
        try:
            ids.add(value if isinstance(value, uuid.UUID) else uuid.UUID(str(value)))
        except ValueError:
            continue
    if not ids:
        return {}
    return {
        account_id: AccountLabel(account_id, holder_name, currency)
        for account_id, holder_name, currency in AccountBalance.objects.filter(
            account_id__in=ids
        ).values_list("account_id", "holder_name", "currency")
    }


def correlated_events(correlation_id: uuid.UUID, *, limit: int = CORRELATION_MAX) -> Correlation:
    """Every event whose metadata carries this correlation id, in the global order (one
    query): both legs of a transfer, every event of one command."""
    events = es.read_by_metadata("correlation_id", str(correlation_id), limit=limit + 1)
    return Correlation(
        correlation_id, [line_of(e) for e in events[:limit]], truncated=len(events) > limit
    )


def actor_actions(
    username: str,
    *,
    before: int | None = None,
    after: int | None = None,
    page_size: int = ACTIONS_PAGE_SIZE,
) -> ActionsPage:
    """The events ``username`` caused (their metadata's actor), newest first.

    Keyset pages (no COUNT over the store, no OFFSET): the first page, or the page older
    than position ``before``, or the page newer than position ``after``. One query for the
    page (with one row more, to know whether a page follows) and one for whether a page
    precedes it.
    """

    def mine(**bounds: Any) -> list[es.RecordedEvent]:
        return es.read_by_metadata("actor.username", username, **bounds)

    if after is not None:
        events = mine(after=after, limit=page_size + 1)
        newer_exists = len(events) > page_size
        events = events[:page_size][::-1]
        older_exists = bool(events) and bool(mine(before=events[-1].position, limit=1))
    else:
        events = mine(before=before, newest_first=True, limit=page_size + 1)
        older_exists = len(events) > page_size
        events = events[:page_size]
        newer_exists = (
            before is not None and bool(events) and bool(mine(after=events[0].position, limit=1))
        )
    lines = [line_of(e) for e in events]
    return ActionsPage(
        actor=username,
        lines=lines,
        older=lines[-1].position if lines and older_exists else None,
        newer=lines[0].position if lines and newer_exists else None,
    )
