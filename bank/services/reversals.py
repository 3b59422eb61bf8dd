"""Reversals: undo a mistaken posting with a linked ``PostingReversed``, never by an
unrelated opposite deposit.

A deposit or a withdrawal is reversed on its account; a transfer is reversed on both
accounts at once (one multi-stream append), whichever side is named. The rules (the
domain's ``Account.reverse`` and ``reverse_transfer``): only postings, each at most once,
never a reversal; the accounts must be active; a reversal that takes money out needs the
funds (nothing goes below zero: the refusal says how much is missing).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Unpack

import eventstore as es
from bank.domain import STREAM_TYPE, balance_change, event_from_data
from bank.domain.account import Posting, reverse_transfer
from bank.domain.events import AccountEvent, TransferReceived, TransferSent

from . import unit_of_work
from .accounts import AccountState
from .context import Actor, CommandContext, Metadata
from .errors import PostingNotFound
from .repository import Loaded
from .telemetry import command_span


@dataclass(frozen=True, slots=True)
class ReversalResult:
    """What a reversal did.

    Attributes:
        accounts: the accounts after it: the one named first, then the transfer's other
            side when there is one.
        position: the global position of its last event.
    """

    accounts: list[AccountState]
    position: int | None


@dataclass(frozen=True, slots=True)
class Plan:
    """A posting found, and what reversing it takes.

    Attributes:
        account_ids: the accounts it changes (the named one first).
        amount_cents: the amount moved back (what the maker-checker threshold compares).
        event, version: the posting (decoded) and its version.
        action: runs the domain on the loaded accounts.
    """

    account_ids: list[uuid.UUID]
    amount_cents: int
    event: AccountEvent
    version: int
    action: Callable[[Sequence[Loaded]], None]


def plan(account_id: uuid.UUID, event_id: uuid.UUID, reason: str) -> Plan:
    """Find the posting and, for a transfer, its other side.

    Raises:
        PostingNotFound: no event of that id in this account's stream.
    """
    (found,) = _events([event_id], account_id)
    original = event_from_data(found.event_type, found.data)
    posting = Posting(found.event_id, found.version, original)
    amount = abs(balance_change(original))
    if not isinstance(original, TransferSent | TransferReceived):

        def reverse_one(loaded: Sequence[Loaded]) -> None:
            loaded[0].account.reverse(posting, reason=reason)

        return Plan([account_id], amount, original, found.version, reverse_one)

    other_id = original.to_account if isinstance(original, TransferSent) else original.from_account
    other_event = _other_side(found, other_id, original.transfer_id)
    other = Posting(
        other_event.event_id,
        other_event.version,
        event_from_data(other_event.event_type, other_event.data),
    )

    def reverse_both(loaded: Sequence[Loaded]) -> None:
        named, counterpart = loaded[0].account, loaded[1].account
        if isinstance(original, TransferSent):
            reverse_transfer(named, posting, counterpart, other, reason=reason)
        else:
            reverse_transfer(counterpart, other, named, posting, reason=reason)

    return Plan([account_id, other_id], amount, original, found.version, reverse_both)


def reverse_posting(
    *,
    account_id: uuid.UUID,
    event_id: uuid.UUID,
    reason: str,
    actor: Actor,
    expected_version: int | None = None,
    **metadata: Unpack[Metadata],
) -> ReversalResult:
    """Reverse one posting of an account (both sides of a transfer), once.

    Args:
        event_id: the posting's event id (an event of ``account_id``'s stream).
        reason: why (required).
        expected_version: the version ``account_id`` must be at (If-Match); no retry then.

    Raises:
        PostingNotFound: no such event in this account's stream.
        NotReversible, AlreadyReversed, AccountNotActive, InsufficientFunds, InvalidAmount,
            InvalidInput: domain refusals.
        AccountNotFound, VersionMismatch, ConcurrencyConflict: see ``unit_of_work.run``.
    """
    context = CommandContext.of(actor, **metadata)
    return run(plan(account_id, event_id, reason), context, expected_version)


def run(
    the_plan: Plan,
    context: CommandContext,
    expected_version: int | None = None,
    also: unit_of_work.Also | None = None,
) -> ReversalResult:
    """Carry out a planned reversal (the services' approvals run it with ``also``)."""
    with command_span(
        "reverse", the_plan.account_ids[0], expected_version, the_plan.amount_cents
    ) as span:
        span.set_attribute("reversed_version", the_plan.version)
        done = unit_of_work.run(
            "reverse",
            the_plan.account_ids,
            the_plan.action,
            context=context,
            expected_version=expected_version,
            also=also,
        )
        return ReversalResult(
            [AccountState.of(loaded.account, done.position) for loaded in done.accounts],
            done.position,
        )


def _events(event_ids: list[uuid.UUID], account_id: uuid.UUID) -> list[es.RecordedEvent]:
    found = [
        event
        for event in es.read_events(event_ids)
        if event.stream_id == account_id and event.stream_type == STREAM_TYPE
    ]
    if len(found) != len(event_ids):
        raise PostingNotFound(account_id, event_ids[0])
    return found


def _other_side(
    found: es.RecordedEvent, other_id: uuid.UUID, transfer_id: uuid.UUID
) -> es.RecordedEvent:
    """The transfer's event on the other account.

    Both sides are written by one append, next to each other in the global order, so the
    neighbours are read first; the other account's stream is read only if they are not it.
    """
    near = es.read_all(after_position=max(found.position - 2, 0), limit=3)
    for candidate in (*near, *es.read_stream(other_id)):
        if (
            candidate.stream_id == other_id
            and candidate.event_type
            in (
                TransferSent.event_type,
                TransferReceived.event_type,
            )
            and candidate.data.get("transfer_id") == str(transfer_id)
        ):
            return candidate
    raise PostingNotFound(other_id, transfer_id)
