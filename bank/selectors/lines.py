"""One event as the audit pages list it: what moved, who did it, which command it belongs to.

Built from a stored event (``eventstore.RecordedEvent``, upcast) or from a row of the
events table read by metadata (``links``: the store's public API reads one stream at a
time, so those rows come as stored).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import eventstore as es
from bank.domain import EVENT_TYPES, balance_change, event_from_data


@dataclass(frozen=True, slots=True)
class EventLine:
    """An event in a list of events: ``amount_cents`` is its balance change (None when it
    moves no money), ``balance_after_cents`` the balance after it where the list follows
    one account in version order (None on lists across streams)."""

    position: int
    event_id: uuid.UUID
    stream_id: uuid.UUID
    version: int
    event_type: str
    amount_cents: int | None
    balance_after_cents: int | None
    description: str
    counterparty: uuid.UUID | None
    actor: str
    occurred_at: datetime
    correlation_id: str
    trace_id: str
    command: str  # the command that appended it (metadata), e.g. "transfer"

    @property
    def moves_money(self) -> bool:
        return self.amount_cents is not None


def actor_name(metadata: dict[str, Any]) -> str:
    """The user name in an event's metadata (``actor`` is a dict; a bare string in old rows)."""
    actor = metadata.get("actor")
    return str(actor.get("username", "")) if isinstance(actor, dict) else str(actor or "")


def movement(event_type: str, data: dict[str, Any]) -> int | None:
    """The event's balance change, or None when it moves no money (or is not an account
    event this code knows)."""
    if event_type not in EVENT_TYPES:
        return None
    try:
        change = balance_change(event_from_data(event_type, data))
    except (KeyError, TypeError, ValueError):  # a payload this code cannot read: shown as is
        amount = data.get("amount_cents")
        return amount if isinstance(amount, int) and not isinstance(amount, bool) else None
    return change if change or "amount_cents" in data else None


def _counterparty(data: dict[str, Any]) -> uuid.UUID | None:
    value = data.get("to_account") or data.get("from_account")
    if not value:
        return None
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def line(
    *,
    position: int,
    event_id: uuid.UUID,
    stream_id: uuid.UUID,
    version: int,
    event_type: str,
    data: dict[str, Any],
    metadata: dict[str, Any],
    occurred_at: datetime,
    balance_after_cents: int | None = None,
) -> EventLine:
    """An ``EventLine`` from an event's columns."""
    return EventLine(
        position=position,
        event_id=event_id,
        stream_id=stream_id,
        version=version,
        event_type=event_type,
        amount_cents=movement(event_type, data),
        balance_after_cents=balance_after_cents,
        description=str(data.get("description") or data.get("reason") or ""),
        counterparty=_counterparty(data),
        actor=actor_name(metadata),
        occurred_at=occurred_at,
        correlation_id=str(metadata.get("correlation_id") or ""),
        trace_id=str(metadata.get("trace_id") or ""),
        command=str(metadata.get("command") or ""),
    )


def line_of(event: es.RecordedEvent, *, balance_after_cents: int | None = None) -> EventLine:
    """An ``EventLine`` from a stored event read through the store's API."""
    return line(
        position=event.position,
        event_id=event.event_id,
        stream_id=event.stream_id,
        version=event.version,
        event_type=event.event_type,
        data=event.data,
        metadata=event.metadata,
        occurred_at=event.occurred_at,
        balance_after_cents=balance_after_cents,
    )
